"""Names and paths of the view API, shared by the server and the ``kubectl strata`` plugin."""

from __future__ import annotations

from urllib.parse import quote

GROUP = "view.stratarouter.io"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
API_PATH = f"/apis/{GROUP}/{VERSION}"
APISERVICE_NAME = f"{VERSION}.{GROUP}"

UI_PATH = f"{API_PATH}/ui/"
"""The web timeline (through ``kubectl proxy``: ``http://127.0.0.1:PORT`` + this)."""

#: The subresources of an Execution the view API serves, each a GET.
SUBRESOURCES = ("history", "state", "diff", "audit", "status")

DEFAULT_PAGE = 100
"""Items in a history/audit page when ``limit`` is not given."""
MAX_PAGE = 1000
"""Most items in one history/audit page, whatever ``limit`` says."""


def execution_path(namespace: str, name: str, subresource: str) -> str:
    """``/apis/view.stratarouter.io/v1alpha1/namespaces/NS/executions/NAME/SUB``."""
    return (
        f"{API_PATH}/namespaces/{quote(namespace, safe='')}/executions/{quote(name, safe='')}/{subresource}"
    )
