"""The pods' processes of a chaos run: one asyncio task per Execution on kwok, playing its workload.

A worker does what a real workload with the SDK does, over the real checkpoint API with a real bound
token: it finds its Execution's current pod (``status.podName``/``podUID``), asks the API server for a
token bound to that pod (as the kubelet would project it), loads its state (``GET /v1/state``), and
checkpoints one step per ``interval`` from there. Connection errors and 5xx are retried (the operator
or PostgreSQL may be down); 401/403/409 mean this pod is no longer the one that may write, and the
worker looks for the current pod again. At the last step it calls ``POST /v1/complete`` and then plays
the kubelet: the pod's container exits 0 (:func:`~stratarouter_dev.pods.succeed_pod`).

Some workers crash on purpose (``crash_at``): their pod is marked Failed (exit 137) while a *zombie*
keeps writing with the old token for a while, as a process cut off from its node would. Its writes
must be refused once the operator fenced its attempt.

Everything a worker saw goes to a :class:`Journal` (its own log, as JSON lines too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import aiohttp
import orjson

from stratarouter_dev.chaos.records import Ack, Refusal, Resume, as_json, digest, state_of
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.pods import fail_pod, is_running, request_pod_token, succeed_pod
from stratarouter_runtime.operator.resources.base import GROUP_PATH

NOT_CURRENT_GRACE = 15.0
"""How long a 403 NotCurrentPod is retried: the API's view of the current pod follows a watch, so it may
lag the status a worker just read (the SDK retries it for 10 s)."""
ZOMBIE_SECONDS = 12.0
RETRY_MIN, RETRY_MAX = 0.2, 1.0

Outcome = Literal["ok", "refused", "late"]


@dataclass(frozen=True)
class WorkerPlan:
    """One Execution's workload: ``steps`` checkpoints (0 .. steps-1); ``crash_at``: at that step of the
    first attempt its pod fails (exit 137) and a zombie writer lives on."""

    name: str
    steps: int
    crash_at: int | None = None


@dataclass
class Journal:
    """The workers' own log: acknowledged writes, refusals, take-overs, and counts of everything else."""

    path: Path | None = None
    acks: list[Ack] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    internal_errors: list[str] = field(default_factory=list)
    """``500 InternalError`` answers (a bug in the API, which answers unavailability with 503)."""
    notes: list[str] = field(default_factory=list)
    _out: IO[str] | None = None

    def __post_init__(self) -> None:
        if self.path is not None:
            self._out = self.path.open("a")

    def add(self, record: Ack | Refusal | Resume) -> None:
        if isinstance(record, Ack):
            self.acks.append(record)
        elif isinstance(record, Refusal):
            self.refusals.append(record)
        else:
            self.resumes.append(record)
        if self._out is not None:
            self._out.write(json.dumps(as_json(record)) + "\n")

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self._out is not None:
            self._out.write(json.dumps({"kind": "Note", "at": time.time(), "text": text}) + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@dataclass
class Pod:
    """The pod a worker drives: its name, uid, attempt, ``STRATA_RESUME_STEP`` and bound token."""

    name: str
    uid: str
    attempt: int
    resume_step: int | None
    token: str


class Workers:
    """Runs the workers of one chaos run against ``api_url`` (the operator's checkpoint API)."""

    def __init__(
        self,
        api: KubeApi,
        api_url: str,
        namespace: str,
        journal: Journal,
        *,
        interval: float,
        deadline: float,
        extension: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.api = api
        self.api_url = api_url
        self.namespace = namespace
        self.journal = journal
        self.interval = interval
        self._deadline = deadline
        self._extension = extension
        self.session: aiohttp.ClientSession | None = None
        self._kube = ThreadPoolExecutor(max_workers=16, thread_name_prefix="chaos-kube")
        self.zombies: set[asyncio.Task[None]] = set()

    @property
    def deadline(self) -> float:
        """When the workers give up: the planned end, moved on by the time faults kept things down (on a
        loaded machine a restarted operator may take far longer to be back than planned)."""
        return self._deadline + self._extension()

    async def __aenter__(self) -> Workers:
        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.zombies:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.zombies, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        self._kube.shutdown(wait=False, cancel_futures=True)

    # -- one Execution -----------------------------------------------------------------------------

    async def run(self, plan: WorkerPlan) -> str | None:
        """Drive ``plan`` until its Execution has finished; returns its last phase (None: never seen)."""
        await asyncio.sleep(random.random() * self.interval)  # spread the writers over the interval
        taken: set[int] = set()
        finished: set[str] = set()
        crashed = False
        phase: str | None = None
        while time.time() < self.deadline:
            phase, pod = await self.current_pod(plan.name, skip=finished)
            if phase in ("Succeeded", "Failed"):
                return phase
            if pod is None:
                await asyncio.sleep(0.5)
                continue
            first = pod.attempt not in taken
            taken.add(pod.attempt)
            loaded = await self.take_over(plan.name, pod, first)
            if loaded == "refused":
                await asyncio.sleep(0.5)
                continue
            step = 0 if loaded is None else loaded + 1
            crash = plan.crash_at if not crashed and pod.attempt == 1 else None
            outcome, step = await self.checkpoint_from(plan.name, pod, step, plan.steps, crash_at=crash)
            if outcome != "ok":
                await asyncio.sleep(0.5)
                continue
            if crash is not None and step == crash:
                crashed = True
                await self.crash(plan.name, pod, step)
                continue
            if await self.finish(plan.name, pod):
                finished.add(pod.uid)
        return phase

    async def wait_finished(self, name: str) -> str | None:
        """For an Execution whose pods run for real: its phase once it has finished (or at the deadline)."""
        phase: str | None = None
        while time.time() < self.deadline:
            try:
                path = f"{GROUP_PATH}/namespaces/{self.namespace}/executions/{name}"
                phase = ((await self.kube(self.api.get, path)).get("status") or {}).get("phase")
            except (KubeApiError, OSError, ValueError) as exc:
                self.journal.retries[f"kube: {type(exc).__name__}"] += 1
            if phase in ("Succeeded", "Failed"):
                return phase
            await asyncio.sleep(2.0)
        return phase

    async def current_pod(self, name: str, *, skip: set[str]) -> tuple[str | None, Pod | None]:
        """The Execution's phase and, when status names a pod that kwok runs, that pod with a fresh token."""
        try:
            execution = await self.kube(
                self.api.get, f"{GROUP_PATH}/namespaces/{self.namespace}/executions/{name}"
            )
            status = execution.get("status") or {}
            phase, pod_name, uid = status.get("phase"), status.get("podName"), status.get("podUID")
            if phase in ("Succeeded", "Failed") or not pod_name or not uid or uid in skip:
                return phase, None
            pod = await self.kube(self.api.get, f"/api/v1/namespaces/{self.namespace}/pods/{pod_name}")
            if pod["metadata"]["uid"] != uid or not is_running(pod):
                return phase, None
            token = await self.kube(request_pod_token, self.api, pod)
        except (KubeApiError, OSError, ValueError) as exc:
            self.journal.retries[f"kube: {type(exc).__name__}"] += 1
            return None, None
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}
        resume = env.get("STRATA_RESUME_STEP") or None
        attempt = int(env.get("STRATA_ATTEMPT") or 0)
        return phase, Pod(pod_name, uid, attempt, None if resume is None else int(resume), token)

    async def take_over(self, name: str, pod: Pod, first: bool) -> int | Literal["refused"] | None:
        """``GET /v1/state`` as the new process would: the step to continue after (None: from the start)."""
        while time.time() < self.deadline:
            answer = await self.call("GET", "/v1/state", pod.token, None)
            if answer is None:
                continue
            status, body = answer
            if status == 404:
                loaded_step, sha = None, None
            elif status == 200:
                loaded_step, sha = int(body["step"]), digest(body["state"])
            elif status == 403 and body.get("error") == "NotCurrentPod":
                await asyncio.sleep(0.5)
                continue
            else:
                self.journal.note(f"{name} {pod.name}: GET /v1/state answered {status} {body.get('error')}")
                return "refused"
            self.journal.add(
                Resume(name, pod.attempt, pod.uid, pod.resume_step, loaded_step, sha, first, time.time())
            )
            return loaded_step
        return "refused"

    async def checkpoint_from(
        self, name: str, pod: Pod, step: int, steps: int, *, crash_at: int | None, zombie: bool = False
    ) -> tuple[Outcome, int]:
        """Checkpoint ``step`` .. ``steps - 1`` (stopping before ``crash_at``); the outcome and next step."""
        while step < steps:
            if step == crash_at:
                return "ok", step
            outcome = await self.write(name, pod, step, zombie=zombie)
            if outcome != "ok":
                return outcome, step
            step += 1
            await asyncio.sleep(self.interval)
        return "ok", step

    async def write(
        self, name: str, pod: Pod, step: int, *, zombie: bool, until: float | None = None
    ) -> Outcome:
        """One checkpoint, retried until acknowledged or refused (or past ``until``/the deadline)."""
        state = state_of(name, step, pod.attempt)
        sha = digest(state)
        body = orjson.dumps({"step": step, "state": state})
        not_current_since: float | None = None
        while time.time() < min(until or self.deadline, self.deadline):
            sent_at = time.time()
            answer = await self.call("POST", "/v1/checkpoint", pod.token, body)
            if answer is None:
                continue
            status, reply = answer
            if status == 200:
                self.journal.add(Ack(name, pod.attempt, pod.uid, step, sha, sent_at, time.time(), zombie))
                return "ok"
            error = str(reply.get("error", ""))
            if status == 403 and error == "NotCurrentPod" and not zombie:
                not_current_since = not_current_since or sent_at
                if time.time() - not_current_since < NOT_CURRENT_GRACE:
                    await asyncio.sleep(0.5)
                    continue
            self.journal.add(Refusal(name, pod.attempt, pod.uid, step, status, error, sent_at, zombie))
            return "refused"
        return "late"

    async def call(
        self, method: str, path: str, token: str, body: bytes | None
    ) -> tuple[int, dict[str, Any]] | None:
        """One request; None (after a short pause) on what a client retries: no connection, 5xx."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            async with self.session.request(method, self.api_url + path, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.journal.retries[f"{path}: {type(exc).__name__}"] += 1
            await asyncio.sleep(random.uniform(RETRY_MIN, RETRY_MAX))
            return None
        if status >= 500:
            self.journal.retries[f"{path}: {status}"] += 1
            if status == 500:
                self.journal.internal_errors.append(f"{method} {path}: {raw[:200].decode(errors='replace')}")
            await asyncio.sleep(random.uniform(RETRY_MIN, RETRY_MAX))
            return None
        try:
            decoded = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            decoded = {"error": raw[:200].decode(errors="replace")}
        return status, decoded if isinstance(decoded, dict) else {}

    async def crash(self, name: str, pod: Pod, step: int) -> None:
        """The pod's container dies (exit 137) but its process lives on as a zombie that keeps writing."""
        task = asyncio.get_running_loop().create_task(self.zombie(name, pod, step))
        self.zombies.add(task)
        task.add_done_callback(self.zombies.discard)
        self.journal.crashes += 1
        while time.time() < self.deadline:
            try:
                await self.kube(fail_pod, self.api, self.namespace, pod.name, 137, reason="OOMKilled")
                return
            except (KubeApiError, OSError, TimeoutError) as exc:
                self.journal.retries[f"fail_pod: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)

    async def zombie(self, name: str, pod: Pod, step: int) -> None:
        """Write on with the failed pod's token for ZOMBIE_SECONDS or until refused."""
        until = time.time() + ZOMBIE_SECONDS
        while time.time() < until:
            outcome = await self.write(name, pod, step, zombie=True, until=until)
            if outcome != "ok":
                return
            step += 1
            await asyncio.sleep(self.interval)

    async def finish(self, name: str, pod: Pod) -> bool:
        """``POST /v1/complete``, then the container exits 0; False if this pod may no longer finish."""
        while time.time() < self.deadline:
            answer = await self.call("POST", "/v1/complete", pod.token, b"{}")
            if answer is None:
                continue
            status, reply = answer
            if status == 200:
                break
            self.journal.note(f"{name} {pod.name}: POST /v1/complete answered {status} {reply.get('error')}")
            return False
        while time.time() < self.deadline:
            try:
                await self.kube(succeed_pod, self.api, self.namespace, pod.name)
                return True
            except (KubeApiError, OSError, TimeoutError) as exc:
                self.journal.retries[f"succeed_pod: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)
        return False

    async def kube(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A blocking API-server call in the workers' own thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kube, lambda: fn(*args, **kwargs))
