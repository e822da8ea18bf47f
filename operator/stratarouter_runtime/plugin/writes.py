"""``snapshot``, ``restore``, ``suspend``, ``resume``: ordinary resource writes, refused by RBAC like any.

No view API call: a Snapshot is created (``create`` on snapshots.stratarouter.io), the Execution's spec
is patched (``patch`` on executions.stratarouter.io), and the operator acts on them as on any change.
"""

from __future__ import annotations

import json
import time

from stratarouter_runtime.plugin.exits import FAILED, FORBIDDEN, NOT_FOUND, PluginError
from stratarouter_runtime.plugin.kubectl import EXECUTIONS, SNAPSHOTS, Ctx


def snapshot_name(execution: str, step: int | None, now: float | None = None) -> str:
    """``<execution>-s<step|latest>-<UTC time>``, cut to a valid object name."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    tail = f"-s{step if step is not None else 'latest'}-{stamp}"
    return execution[: 253 - len(tail)] + tail


def _format_args(ctx: Ctx) -> list[str]:
    return ["-o", ctx.output] if ctx.output != "table" else []


def snapshot(ctx: Ctx, name: str, step: int | None, snapshot: str | None, wait: float | None) -> None:
    """Create a Snapshot of ``name`` (at ``step``, default the latest checkpoint)."""
    ctx.execution(name)  # a missing Execution is named as such (exit 3), not as a refused Snapshot
    snap = snapshot or snapshot_name(name, step)
    spec: dict[str, object] = {"executionName": name}
    if step is not None:
        spec["step"] = step
    manifest = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Snapshot",
        "metadata": {"name": snap, "namespace": ctx.namespace},
        "spec": spec,
    }
    out = ctx.kubectl.run(["create", "-f", "-", *_format_args(ctx)], input=json.dumps(manifest),
                          what=f"creating snapshot {ctx.namespace}/{snap}")  # fmt: skip
    print(out, end="")
    if wait:
        wait_ready(ctx, snap, wait)


def wait_ready(ctx: Ctx, snap: str, seconds: float) -> None:
    """Poll the Snapshot (``get`` only: no list/watch right needed) until Ready; Failed is an error."""
    deadline = time.monotonic() + seconds
    while True:
        found = ctx.kubectl.json(
            ["get", SNAPSHOTS, snap, "-n", ctx.namespace], what=f"reading snapshot {snap}"
        )
        status = found.get("status") or {}
        if status.get("phase") == "Ready":
            return
        if status.get("phase") == "Failed":
            raise PluginError(FAILED, f"snapshot {snap} failed: {status.get('message') or status}")
        if time.monotonic() > deadline:
            raise PluginError(
                FAILED,
                f"snapshot {snap} not Ready after {seconds:g}s: {status.get('message') or 'no status yet'}",
            )
        time.sleep(0.5)


def _patch(ctx: Ctx, name: str, spec: dict[str, object], what: str) -> None:
    ctx.execution(name)
    out = ctx.kubectl.run(
        ["patch", EXECUTIONS, name, "-n", ctx.namespace, "--type=merge", "-p", json.dumps({"spec": spec}),
         *_format_args(ctx)],
        what=f"{what} execution {ctx.namespace}/{name}",
    )  # fmt: skip
    print(out, end="")


def restore(ctx: Ctx, name: str, snapshot: str) -> None:
    """Set ``spec.restoreFrom.snapshot``: the operator restores it and restarts the run from it.

    The Snapshot is looked at first, to name a missing one (or one of another Execution) plainly; a user
    who may not read Snapshots skips that look, and the patch decides (the operator checks it too)."""
    try:
        found = ctx.kubectl.json(["get", SNAPSHOTS, snapshot, "-n", ctx.namespace])
    except PluginError as exc:
        if exc.code == NOT_FOUND:
            raise PluginError(
                NOT_FOUND, f'snapshot "{snapshot}" not found in namespace "{ctx.namespace}"'
            ) from None
        if exc.code != FORBIDDEN:
            raise
        found = None
    of = ((found or {}).get("spec") or {}).get("executionName", name)
    if of != name:
        raise PluginError(NOT_FOUND, f'snapshot "{snapshot}" is of execution "{of}", not "{name}"')
    _patch(ctx, name, {"restoreFrom": {"snapshot": snapshot}}, "restoring")


def suspend(ctx: Ctx, name: str, value: bool) -> None:
    """``spec.suspend``: true deletes the pod and keeps the state; false resumes."""
    _patch(ctx, name, {"suspend": value}, "suspending" if value else "resuming")
