"""``fork``: a new Execution that starts from another's checkpoint or Snapshot, as a resource write.

The new Execution is created (``create`` on executions.stratarouter.io) with a copy of the source's
``spec.template`` and ``spec.startFrom`` set; the operator forks the stored run when it starts it. The
source is only read (``get``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from stratarouter_runtime.plugin.exits import USAGE, PluginError
from stratarouter_runtime.plugin.kubectl import Ctx


def manifest(
    source: dict[str, Any], new_name: str, step: int | None, snapshot: str | None, image: str | None
) -> dict[str, Any]:
    """The new Execution: the source's template (``image`` replaces its first container's image), and
    ``startFrom`` the source at ``step`` (default: its newest checkpoint) or ``snapshot``."""
    meta = source["metadata"]
    template = copy.deepcopy((source.get("spec") or {}).get("template") or {})
    if image is not None:
        containers = (template.get("spec") or {}).get("containers") or []
        if not containers:
            raise PluginError(USAGE, f'execution "{meta["name"]}" has no container to set --image on')
        containers[0]["image"] = image
    start_from: dict[str, Any] = {"snapshot": snapshot} if snapshot else {"execution": meta["name"]}
    if step is not None:
        start_from["step"] = step
    return {
        "apiVersion": source.get("apiVersion", "stratarouter.io/v1alpha1"),
        "kind": "Execution",
        "metadata": {"name": new_name, "namespace": meta["namespace"]},
        "spec": {"template": template, "startFrom": start_from},
    }


def fork(
    ctx: Ctx, name: str, new_name: str, step: int | None, snapshot: str | None, image: str | None
) -> None:
    """Create ``new_name`` forked from ``name`` (at ``step`` or from ``snapshot``)."""
    if step is not None and snapshot is not None:
        raise PluginError(USAGE, "fork takes --step or --snapshot, not both")
    body = manifest(ctx.execution(name), new_name, step, snapshot, image)
    args = ["create", "-f", "-", *(["-o", ctx.output] if ctx.output != "table" else [])]
    out = ctx.kubectl.run(args, input=json.dumps(body), what=f"creating execution {ctx.namespace}/{new_name}")
    print(out, end="")
