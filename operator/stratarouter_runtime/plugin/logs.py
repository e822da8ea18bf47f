"""``logs NAME [--attempt N]``: the container logs of one attempt's pod (``<name>-a<N>``)."""

from __future__ import annotations

import subprocess

from stratarouter_runtime.plugin.exits import NOT_FOUND, PluginError
from stratarouter_runtime.plugin.kubectl import Ctx


def pod_name(execution: str, attempt: int) -> str:
    return f"{execution}-a{attempt}"


def logs(ctx: Ctx, name: str, attempt: int | None, *, follow: bool, tail: int | None,
         container: str | None, previous: bool) -> int:  # fmt: skip
    """Stream ``kubectl logs`` of that attempt's pod (default: the current attempt); its exit code."""
    execution = ctx.execution(name)
    current = int((execution.get("status") or {}).get("attempt") or 0)
    chosen = attempt if attempt is not None else current
    if chosen < 1:
        raise PluginError(NOT_FOUND, f'execution "{name}" has no attempt yet (no pod was made)')
    pod = pod_name(name, chosen)
    args = ["logs", pod, "-n", ctx.namespace]
    args += ["-c", container] if container else ["--all-containers"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args.append(f"--tail={tail}")
    if previous:
        args.append("--previous")
    done = subprocess.run(ctx.kubectl.argv(args), stderr=subprocess.PIPE, text=True)  # stdout streams through
    if done.returncode != 0:
        error = ctx.kubectl.failure(done.stderr, f"logs of attempt {chosen} (pod {ctx.namespace}/{pod})")
        if error.code == NOT_FOUND:
            raise PluginError(
                NOT_FOUND,
                f'pod "{pod}" of attempt {chosen} not found in namespace "{ctx.namespace}" (the current '
                f"attempt is {current}; a replaced pod is deleted unless spec.recovery.keepFailedPods "
                "keeps it)",
            )
        raise error
    return 0
