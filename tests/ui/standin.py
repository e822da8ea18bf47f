"""A stand-in for the API server the web timeline talks to, for developing and testing the page alone.

It serves, under any ``prefix`` (the page must work under a proxy's), the page itself
(:func:`add_ui_routes`) and the answers the page asks the API server for: the Executions and Snapshots
(``/apis/stratarouter.io/v1alpha1``) and the Executions' Events (``/api/v1``), shaped as the API server
answers them, and the view API's endpoints (``/apis/view.stratarouter.io/v1alpha1``) by the view API's
own handlers (:mod:`stratarouter_runtime.operator.view.reads`) over a store made up here (:class:`RunStore`).
The runs (:func:`recovered_twice`, :func:`straight_run`) carry the messages the operator writes on its
Events, and their states are worked out from the step when asked (a run of 10,000 checkpoints holds no
10,000 states).

It checks no identity: who may read what is the API server's and the view API's middleware's job,
tested with them (tests/operator/test_view_rbac.py; tests/ui/test_timeline_cluster.py opens the page
through the real API server).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from stratarouter_runtime.operator.api.limits import Slots
from stratarouter_runtime.operator.view import reads
from stratarouter_runtime.operator.view.status import state_error_response, status_response
from stratarouter_runtime.operator.view.ui import UI_PATH, add_ui_routes
from stratarouter_runtime.state import errors, models

CRD = "/apis/stratarouter.io/v1alpha1"
VIEW = "/apis/view.stratarouter.io/v1alpha1"

Obj = dict[str, Any]


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class Checkpoint:
    step: int
    attempt: int
    at: datetime


@dataclass
class Run:
    """One Execution as the API server and the store would show it."""

    namespace: str
    name: str
    created: datetime
    phase: str = "Running"
    checkpoints: list[Checkpoint] = field(default_factory=list)
    events: list[Obj] = field(default_factory=list)
    snapshots: list[Obj] = field(default_factory=list)
    attempt: int = 1
    restarts: int = 0
    recovery: Obj | None = None

    def add_steps(self, count: int, every: timedelta = timedelta(seconds=1)) -> None:
        """``count`` more checkpoints of the current attempt, ``every`` apart."""
        last = self.checkpoints[-1] if self.checkpoints else Checkpoint(0, self.attempt, self.created)
        at = max(last.at, self.events_end())
        for i in range(1, count + 1):
            self.checkpoints.append(Checkpoint(last.step + i, self.attempt, at + every * i))

    def events_end(self) -> datetime:
        if not self.events:
            return self.created
        return max(datetime.fromisoformat(e["lastTimestamp"].replace("Z", "+00:00")) for e in self.events)

    def event(self, reason: str, message: str, at: datetime, type_: str = "Normal") -> None:
        self.events.append(
            {
                "metadata": {"name": f"{self.name}.{len(self.events)}", "namespace": self.namespace},
                "involvedObject": {"kind": "Execution", "name": self.name, "namespace": self.namespace},
                "reason": reason,
                "message": message,
                "type": type_,
                "firstTimestamp": stamp(at),
                "lastTimestamp": stamp(at),
            }
        )

    def fail(self, message: str, reason: str, exit_code: int | None, backoff: float) -> None:
        """The current attempt failed (as the operator's Recovering Event says), then was replaced."""
        failed_at = self.checkpoints[-1].at + timedelta(seconds=2)
        step = self.checkpoints[-1].step
        nxt = self.attempt + 1
        self.event(
            "Recovering", f"{message}; attempt {nxt} in {backoff:g}s, from step {step}", failed_at, "Warning"
        )
        replaced_at = failed_at + timedelta(seconds=backoff)
        pod = f"{self.name}-{nxt}"
        self.event(
            "Recovered",
            f"attempt {nxt} ({pod}) resumes from step {step} after a {backoff:g}s backoff",
            replaced_at,
        )
        self.recovery = {
            "reason": reason,
            "exitCode": exit_code,
            "failedPod": f"{self.name}-{self.attempt}",
            "failedAttempt": self.attempt,
            "failedAt": stamp(failed_at),
            "backoffSeconds": backoff,
            "replacedAt": stamp(replaced_at),
            "resumeStep": step,
        }
        self.attempt = nxt
        self.restarts += 1

    def snapshot(self, name: str, step: int) -> None:
        at = next(cp.at for cp in self.checkpoints if cp.step == step) + timedelta(milliseconds=500)
        self.snapshots.append(
            {
                "metadata": {"name": name, "namespace": self.namespace, "creationTimestamp": stamp(at)},
                "spec": {"executionName": self.name, "step": step},
                "status": {"phase": "Ready", "step": step, "createdAt": stamp(at)},
            }
        )

    # -- as the API server answers ------------------------------------------------------------------
    def resource(self) -> Obj:
        last = self.checkpoints[-1] if self.checkpoints else None
        status: Obj = {
            "phase": self.phase,
            "attempt": self.attempt,
            "restarts": self.restarts,
            "podName": f"{self.name}-{self.attempt}",
            "startTime": stamp(self.created),
        }
        if last is not None:
            status["lastCheckpoint"] = {"step": last.step, "time": stamp(last.at)}
        if self.recovery:
            status["recovery"] = self.recovery
        if self.phase == "Succeeded" and last is not None:
            status["completionTime"] = stamp(last.at + timedelta(seconds=1))
        return {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": "Execution",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "creationTimestamp": stamp(self.created),
            },
            "spec": {"template": {}, "checkpoint": {"interval": 1}},
            "status": status,
        }

    def state(self, step: int) -> Obj:
        """The state a worker would have saved at ``step``: made up, but the same each time."""
        cp = self.checkpoint(step)
        assert cp is not None
        return {
            "step": step,
            "attempt": cp.attempt,
            "total": step * (step + 1) // 2,
            "phase": "warmup" if step < 50 else "train",
            "recent": list(range(max(1, step - 4), step + 1)),
        }

    def checkpoint(self, step: int) -> Checkpoint | None:
        first = self.checkpoints[0].step if self.checkpoints else 0
        cp = self.checkpoints[step - first] if 0 <= step - first < len(self.checkpoints) else None
        return cp if cp is not None and cp.step == step else None

    @property
    def execution_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def stored(self, cp: Checkpoint) -> models.Checkpoint:
        """The checkpoint as the store returns it."""
        state = self.state(cp.step)
        return models.Checkpoint.model_construct(
            execution_id=self.execution_id,
            step=cp.step,
            state_data=state,
            timestamp=cp.at,
            attempt=cp.attempt,
            size_bytes=len(json.dumps(state, separators=(",", ":"))),
        )

    def record(self) -> models.Execution:
        """The run's record as the store keeps it."""
        last = self.checkpoints[-1] if self.checkpoints else None
        return models.Execution(
            execution_id=self.execution_id,
            status=models.ExecutionStatus.COMPLETED
            if self.phase == "Succeeded"
            else models.ExecutionStatus.RUNNING,
            current_step=last.step if last else None,
            last_checkpoint_step=last.step if last else None,
            attempt=self.attempt,
            created_at=self.created,
            updated_at=last.at if last else self.created,
        )


def recovered_twice(namespace: str, name: str, steps: int = 300) -> Run:
    """A run that was OOM-killed, then evicted, and goes on in its third attempt; one snapshot."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=steps + 40)
    run = Run(namespace, name, start)
    run.event("Started", f"attempt 1 ({name}-1) starts from the start", start)
    run.add_steps(steps * 2 // 5)
    run.snapshot("before-oom", steps // 4)
    run.fail(
        f"pod {name}-1 was OOM-killed (exit code 137): a container overran its memory limit",
        "OOMKilled",
        137,
        10,
    )
    run.add_steps(steps * 2 // 5)
    run.fail(f"pod {name}-2 was evicted: The node was low on memory.", "Evicted", None, 20)
    run.add_steps(steps - len(run.checkpoints))
    return run


def straight_run(namespace: str, name: str, steps: int, phase: str = "Succeeded") -> Run:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    run = Run(namespace, name, start, phase=phase)
    run.add_steps(steps)
    return run


class RunStore:
    """The reads the view API's handlers make of a StateManager, answered from the stand-in's runs."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    def run(self, execution_id: str) -> Run | None:
        return self.standin.runs.get(tuple(execution_id.split("/", 1)))  # type: ignore[arg-type]

    async def get_execution(self, execution_id: str) -> models.Execution | None:
        with self.standin.lock:
            run = self.run(execution_id)
            return run.record() if run else None

    async def get_history(
        self, execution_id: str, after_step: int | None = None, limit: int = 100
    ) -> list[models.Checkpoint]:
        with self.standin.lock:
            run = self.run(execution_id)
            if run is None:
                return []
            after = -1 if after_step is None else after_step
            first = run.checkpoints[0].step if run.checkpoints else 0
            start = max(0, after + 1 - first)  # steps are consecutive here
            return [run.stored(cp) for cp in run.checkpoints[start : start + limit]]

    async def get_checkpoint(self, execution_id: str, step: int) -> models.Checkpoint:
        with self.standin.lock:
            run = self.run(execution_id)
            cp = run.checkpoint(step) if run else None
            if run is None or cp is None:
                raise errors.CheckpointNotFound(execution_id, step)
            return run.stored(cp)

    async def get_latest_checkpoint(self, execution_id: str) -> models.Checkpoint | None:
        with self.standin.lock:
            run = self.run(execution_id)
            return run.stored(run.checkpoints[-1]) if run and run.checkpoints else None

    async def get_audit(self, execution_id: str, after_seq: int | None = None, limit: int = 100) -> list[Any]:
        return []


class StandIn:
    """The stand-in's runs and its aiohttp application, served under ``prefix``."""

    def __init__(self, runs: list[Run], prefix: str = "") -> None:
        self.runs = {(r.namespace, r.name): r for r in runs}
        self.prefix = prefix
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def find(self, request: web.Request) -> Run:
        run = self.runs.get((request.match_info["ns"], request.match_info["name"]))
        if run is None:
            raise web.HTTPNotFound(
                text='{"kind":"Status","code":404,"message":"not found"}', content_type="application/json"
            )
        return run

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.log_requests, self.view_errors])
        app[reads.STORE_KEY] = RunStore(self)
        app[reads.SLOTS_KEY] = Slots(4)
        add_ui_routes(app, self.prefix + UI_PATH)
        p = self.prefix
        routes = [
            (f"{p}{CRD}/executions", self.list_executions),
            (f"{p}{CRD}/namespaces/{{ns}}/executions", self.list_executions),
            (f"{p}{CRD}/namespaces/{{ns}}/executions/{{name}}", self.get_execution),
            (f"{p}{CRD}/namespaces/{{ns}}/snapshots", self.list_snapshots),
            (f"{p}/api/v1/namespaces/{{ns}}/events", self.list_events),
            (f"{p}{VIEW}/namespaces/{{namespace}}/executions/{{name}}/{{sub}}", self.view),
        ]
        for path, handler in routes:
            app.router.add_get(path, handler)
        return app

    @web.middleware
    async def log_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def view_errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The view API's errors as its middleware answers them (``Status`` objects)."""
        try:
            response: web.StreamResponse = await handler(request)
        except reads.BadRequest as exc:
            return status_response(400, str(exc))
        except errors.StateError as exc:
            return state_error_response(exc, name=request.match_info.get("name", ""))
        return response

    async def view(self, request: web.Request) -> web.StreamResponse:
        route = reads.ROUTES.get(request.match_info["sub"])
        if route is None:
            return status_response(404, "no such subresource")
        return await route(request)

    async def list_executions(self, request: web.Request) -> web.Response:
        ns = request.match_info.get("ns")
        with self.lock:
            items = [r.resource() for r in self.runs.values() if ns is None or r.namespace == ns]
        return web.json_response({"kind": "ExecutionList", "metadata": {}, "items": items})

    async def get_execution(self, request: web.Request) -> web.Response:
        with self.lock:
            return web.json_response(self.find(request).resource())

    async def list_snapshots(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        with self.lock:
            items = [s for r in self.runs.values() if r.namespace == ns for s in r.snapshots]
        return web.json_response({"kind": "SnapshotList", "metadata": {}, "items": items})

    async def list_events(self, request: web.Request) -> web.Response:
        selector = dict(
            part.split("=", 1) for part in request.query.get("fieldSelector", "").split(",") if part
        )
        name = selector.get("involvedObject.name")
        with self.lock:
            run = self.runs.get((request.match_info["ns"], name or ""))
            items = list(run.events) if run else []
        return web.json_response({"kind": "EventList", "metadata": {}, "items": items})


@dataclass
class Served:
    standin: StandIn
    url: str
    """The page's URL (``http://127.0.0.1:PORT{prefix}/apis/view.stratarouter.io/v1alpha1/ui/``)."""
    loop: asyncio.AbstractEventLoop

    def change(self, name: str, what: Any) -> None:
        """Apply ``what(run)`` to the run ``name`` (in any namespace), under the server's lock."""
        with self.standin.lock:
            for (_, n), run in self.standin.runs.items():
                if n == name:
                    what(run)


def serve(standin: StandIn) -> Iterator[Served]:
    """Serve ``standin`` on a free loopback port in a thread of its own until the generator is closed."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(standin.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["port"] = runner.addresses[0][1]
        holder["runner"] = runner
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(timeout=10)
    ready.wait(10)
    try:
        yield Served(standin, f"http://127.0.0.1:{holder['port']}{standin.prefix}{UI_PATH}/", loop)
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
