"""Running the user's ``kubectl``: the global options passed on, failures turned into exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stratarouter_runtime.plugin.exits import (
    FAILED,
    FORBIDDEN,
    NO_KUBECTL,
    NOT_FOUND,
    UNAVAILABLE,
    PluginError,
)

_FROM_SERVER = re.compile(r"[Ee]rror from server \((\w+)\)")  # kubectl logs says "error from server"
NOT_SERVED = "the server could not find the requested resource"
"""What the API server says for a path no API serves: here, the view API not registered."""
UNABLE = "the server is currently unable to handle the request"
"""What the API server says when an APIService's backend does not answer."""

CODES = {
    "NotFound": NOT_FOUND,
    "Forbidden": FORBIDDEN,
    "Unauthorized": FORBIDDEN,
    "ServiceUnavailable": UNAVAILABLE,
}


def exit_code_of(stderr: str) -> int:
    """The exit code a failed kubectl call stands for, from what it printed."""
    if UNABLE in stderr:
        return UNAVAILABLE
    found = _FROM_SERVER.search(stderr)
    if found:
        return CODES.get(found.group(1), FAILED)
    if "You must be logged in to the server" in stderr:
        return FORBIDDEN
    return FAILED


@dataclass(frozen=True)
class Kubectl:
    """The user's kubectl with the plugin's global options (``--context``, ``--kubeconfig``)."""

    context: str | None = None
    kubeconfig: str | None = None
    executable: str = "kubectl"

    def argv(self, args: Sequence[str]) -> list[str]:
        found = shutil.which(self.executable)
        if found is None:
            raise PluginError(
                NO_KUBECTL, f"{self.executable!r} is not on PATH: kubectl strata runs your kubectl"
            )
        cmd = [found]
        if self.kubeconfig:
            cmd.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            cmd.append(f"--context={self.context}")
        return [*cmd, *args]

    def run(self, args: Sequence[str], *, input: str | None = None, what: str = "") -> str:
        """kubectl's stdout; a :class:`PluginError` with its message and exit code when it fails."""
        done = subprocess.run(self.argv(args), input=input, capture_output=True, text=True)
        if done.returncode != 0:
            raise self.failure(done.stderr, what)
        return done.stdout

    def failure(self, stderr: str, what: str = "") -> PluginError:
        message = stderr.strip() or "kubectl failed without a message"
        code = exit_code_of(message)
        if what:
            message = f"{what}: {message}"
        return PluginError(code, message)

    def json(self, args: Sequence[str], *, what: str = "") -> Any:
        return json.loads(self.run([*args, "-o", "json"], what=what))

    def raw(self, path: str, *, what: str = "") -> Any:
        """``kubectl get --raw PATH`` (a view API path), parsed; a missing view API is UNAVAILABLE."""
        done = subprocess.run(self.argv(["get", "--raw", path]), capture_output=True, text=True)
        if done.returncode != 0:
            error = self.failure(done.stderr, what)
            if NOT_SERVED in done.stderr:
                error = PluginError(
                    UNAVAILABLE,
                    f"{error.message}\nhint: the view API is not registered on this cluster (`kubectl get "
                    "apiservice v1alpha1.view.stratarouter.io`; the chart's view.enabled)",
                )
            elif error.code == UNAVAILABLE:
                error = PluginError(
                    UNAVAILABLE,
                    f"{error.message}\nhint: the view API (the operator) is not answering: `kubectl get "
                    "apiservice v1alpha1.view.stratarouter.io` says why",
                )
            raise error
        return json.loads(done.stdout)

    def namespace(self, given: str | None) -> str:
        """``-n``, else the current context's namespace, else ``default`` (as kubectl itself does)."""
        if given:
            return given
        out = self.run(
            ["config", "view", "--minify", "-o", "jsonpath={..namespace}"], what="reading kubeconfig"
        )
        return out.strip() or "default"


EXECUTIONS = "executions.stratarouter.io"
SNAPSHOTS = "snapshots.stratarouter.io"


@dataclass(frozen=True)
class Ctx:
    """What every command works with: kubectl, the namespace, the output format."""

    kubectl: Kubectl
    namespace: str
    output: str = "table"

    def execution(self, name: str) -> dict[str, Any]:
        """The Execution as the API server has it (the user needs ``get`` on it)."""
        try:
            found: dict[str, Any] = self.kubectl.json(["get", EXECUTIONS, name, "-n", self.namespace])
        except PluginError as exc:
            if exc.code == NOT_FOUND:
                raise PluginError(
                    NOT_FOUND, f'execution "{name}" not found in namespace "{self.namespace}"'
                ) from None
            raise
        return found
