"""``status``, ``history``, ``show`` and ``diff``: reads through the view API, as the user."""

from __future__ import annotations

import json
import sys
from typing import Any

from stratarouter_runtime.operator.view.paths import MAX_PAGE, execution_path
from stratarouter_runtime.plugin import output
from stratarouter_runtime.plugin.exits import PluginError
from stratarouter_runtime.plugin.kubectl import Ctx

STRIP = ("kind", "apiVersion", "metadata")


def _view(ctx: Ctx, name: str, sub: str, query: str = "") -> Any:
    path = execution_path(ctx.namespace, name, sub) + (f"?{query}" if query else "")
    return ctx.kubectl.raw(path, what=f"reading {sub} of execution {ctx.namespace}/{name}")


def _pages(ctx: Ctx, name: str, sub: str) -> list[dict[str, Any]]:
    """Every item of a paged list (history, audit), a page of up to 1000 at a time."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = f"limit={MAX_PAGE}" + (f"&continue={token}" if token else "")
        page = _view(ctx, name, sub, query)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items


def status(ctx: Ctx, name: str) -> None:
    """The live step and attempt, from the store (not the Execution's coalesced status)."""
    store = _view(ctx, name, "status")
    execution = ctx.execution(name)
    phase = (execution.get("status") or {}).get("phase")
    record = {k: v for k, v in store.items() if k not in STRIP}
    if ctx.output != "table":
        output.emit({"name": name, "namespace": ctx.namespace, "phase": phase, "store": record}, ctx.output)
        return
    output.table(
        ["name", "phase", "store", "step", "checkpoint", "attempt", "updated", "error"],
        [[name, phase, store.get("status"), store.get("currentStep"), store.get("lastCheckpointStep"),
          store.get("attempt"), output.short_time(store.get("updatedAt")), store.get("error")]],
    )  # fmt: skip


def _events(ctx: Ctx, name: str) -> tuple[list[dict[str, Any]], str | None]:
    """The Execution's Events, oldest first; (``[]``, why) when they cannot be read."""
    selector = f"involvedObject.kind=Execution,involvedObject.name={name}"
    try:
        found = ctx.kubectl.json(["get", "events", "-n", ctx.namespace, f"--field-selector={selector}"])
    except PluginError as exc:
        return [], exc.message
    events = list(found.get("items") or [])
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return events, None


def history(ctx: Ctx, name: str) -> None:
    """Checkpoints, attempts and the failures between them with their causes."""
    checkpoints = _pages(ctx, name, "history")
    audit = _pages(ctx, name, "audit")
    execution = ctx.execution(name)
    status = execution.get("status") or {}
    events, events_error = _events(ctx, name)
    lifecycle = [e for e in audit if e.get("kind") != "checkpoint"]
    if ctx.output != "table":
        output.emit(
            {
                "name": name,
                "namespace": ctx.namespace,
                "phase": status.get("phase"),
                "attempt": status.get("attempt"),
                "checkpoints": checkpoints,
                "lifecycle": lifecycle,
                "lastFailure": status.get("recovery"),
                "events": [
                    {"time": e.get("lastTimestamp") or e.get("eventTime"), "type": e.get("type"),
                     "reason": e.get("reason"), "message": e.get("message"), "count": e.get("count")}
                    for e in events
                ],
            },
            ctx.output,
        )  # fmt: skip
        return
    rows: list[tuple[str, list[Any]]] = []
    for cp in checkpoints:
        rows.append(
            (cp["timestamp"], [cp["step"], cp["attempt"], output.size(cp["sizeBytes"]), "checkpoint", ""])
        )
    for item in lifecycle:
        detail = ", ".join(f"{k}={v}" for k, v in (item.get("detail") or {}).items())
        rows.append((item["at"], [item.get("step"), item.get("attempt"), "", item["kind"], detail]))
    for e in events:
        at = e.get("lastTimestamp") or e.get("eventTime") or ""
        what = f"{e.get('type', 'Normal')} {e.get('reason', '')}".strip()
        rows.append((at, ["", "", "", "event", f"{what}: {e.get('message', '')}"]))
    rows.sort(key=lambda r: output.sort_key(r[0]))
    output.table(["time", "step", "attempt", "size", "what", "detail"],
                 [[output.short_time(at), *row] for at, row in rows])  # fmt: skip
    recovery = status.get("recovery")
    if recovery:
        cause = recovery.get("reason") or "unknown"
        if recovery.get("exitCode") is not None:
            cause += f" (exit code {recovery['exitCode']})"
        print(
            f"\nlast failure: attempt {recovery.get('failedAttempt')} (pod {recovery.get('failedPod')}) "
            f"{cause} at {output.short_time(recovery.get('failedAt'))}; replaced at "
            f"{output.short_time(recovery.get('replacedAt'))}, resumed after step "
            f"{recovery.get('resumeStep')}"
        )
    print(f"\n{len(checkpoints)} checkpoint(s); attempt {status.get('attempt')}, phase {status.get('phase')}")
    if events_error:
        print(f"warning: the Execution's Events were not read: {events_error}", file=sys.stderr)


def show(ctx: Ctx, name: str, step: int | None) -> None:
    """One checkpoint's state as JSON (``-o json|yaml``: with its step, attempt, size and time)."""
    found = _view(ctx, name, "state", f"step={step}" if step is not None else "")
    if ctx.output == "table":
        sys.stdout.write(json.dumps(found.get("state"), indent=2, ensure_ascii=False) + "\n")
        return
    output.emit({k: v for k, v in found.items() if k not in ("kind", "apiVersion")}, ctx.output)


def diff(ctx: Ctx, name: str, a: int, b: int) -> None:
    """The JSON Patch from step ``a``'s state to step ``b``'s."""
    found = _view(ctx, name, "diff", f"from={a}&to={b}")
    if ctx.output != "table":
        output.emit({k: v for k, v in found.items() if k not in ("kind", "apiVersion")}, ctx.output)
        return
    ops = found.get("operations") or []
    output.table(
        ["op", "path", "value"],
        [[op["op"], op["path"] or "/", json.dumps(op["value"]) if "value" in op else ""] for op in ops],
    )
    print(
        f"\n{len(ops)} change(s) from step {a} to step {b}"
        + (" (truncated)" if found.get("truncated") else "")
    )
