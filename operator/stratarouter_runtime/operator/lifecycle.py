"""The Execution state machine: one idempotent pass from what the API server and the store say.

Called only from the Execution's own reconcile loop (handlers/executions.py), so passes of one Execution
never overlap. Every step is safe to repeat after a crash at any point:

* pods have deterministic names (``<name>-a<n>``), so re-creating one returns 409; the existing pod is
  used only if its uid is the one ``status.podUID`` recorded, else it is deleted and made anew (see
  :meth:`Pass.create_pod`: a name, labels and an owner reference are no proof of who made a pod);
* a new attempt is created only after every other pod of the Execution is gone or has terminated (never
  two live attempts), and only after ``store.start_execution(attempt=n)`` fenced the older attempts'
  writes. Terminated means phase Failed or Succeeded as the kubelet reported it, never for a pod whose
  node is gone; the newest ``recovery.keepFailedPods`` terminated pods are kept for their logs (see
  :meth:`Pass.clear_pods`), every other old pod is deleted;
* a recovery's intent (failure seen, when, backoff) is in ``status.recovery`` before the replacement is
  made, so a restarted operator continues the wait instead of starting it over or counting twice;
* status is patched after the pod exists, never before, so a pod is never "lost" by the status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stratarouter_runtime.operator import metrics
from stratarouter_runtime.operator.events import EventType, post_event
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.outcomes import GiveUp, PodState, classify_pod, decide
from stratarouter_runtime.operator.pods import (
    InvalidTemplateError,
    archived_execution_id,
    build_pod,
    execution_id,
    pod_name,
    pod_selector,
)
from stratarouter_runtime.operator.resources.conditions import (
    ConditionStatus,
    ConditionType,
    Reason,
    format_time,
    now_utc,
    set_condition,
)
from stratarouter_runtime.operator.resources.execution import TERMINAL_PHASES, ExecutionSpec
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.operator.tracking import ClusterView
from stratarouter_runtime.state.errors import StateError

if TYPE_CHECKING:
    from stratarouter_runtime.state import StateManager
    from stratarouter_runtime.state.models import Checkpoint, Execution

log = logging.getLogger(__name__)

POD_GONE_WAIT_SECONDS = 5.0
"""How long one pass waits for old pods to disappear before it yields and comes back."""
RETRY_SOON_SECONDS = 1.0
SNAPSHOT_WAIT_SECONDS = 10.0


class CheckpointMirror(Protocol):
    """The checkpoint API's mirror of ``status.lastCheckpoint`` (``api.status.StatusCoalescer``)."""

    def rewound(self, namespace: str, name: str, attempt: int) -> None:
        """The operator wrote ``lastCheckpoint`` from the store for ``attempt``: drop what an older
        attempt left pending, and send the whole ``lastCheckpoint`` next time."""


class ForeignPodError(RuntimeError):
    """The attempt's pod name is held by a pod the operator did not create and could not remove yet."""


@dataclasses.dataclass
class Lifecycle:
    """Everything a reconcile pass needs; one per operator process, on ``memo.lifecycle``."""

    kube: Kube
    store: StateManager
    settings: OperatorSettings
    view: ClusterView = dataclasses.field(default_factory=ClusterView)
    phases: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    background: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)

    def track_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Keep the executions-by-phase gauge right (None = the Execution is gone)."""
        key = (namespace, name)
        old = self.phases.pop(key, None)
        if phase:
            self.phases[key] = phase
        for value in {old, phase} - {None}:
            assert value is not None
            metrics.EXECUTIONS_BY_PHASE.labels(phase=value).set(
                sum(1 for p in self.phases.values() if p == value)
            )

    def spawn(self, coro: Any) -> None:
        """Run a best-effort coroutine (an Event) without holding up the pass."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def attempt_of(execution: str, pod: str) -> int | None:
    """The attempt of an operator-made pod's name (``<execution>-a<n>``); None for any other name."""
    prefix = f"{execution}-a"
    digits = pod[len(prefix) :] if pod.startswith(prefix) else ""
    if not (digits.isascii() and digits.isdigit()) or digits.startswith("0"):
        return None
    return int(digits)


def checkpoint_status(checkpoint: Checkpoint) -> dict[str, Any]:
    """``status.lastCheckpoint`` of a stored checkpoint (the coalescer's shape: time to the second)."""
    return {
        "step": checkpoint.step,
        "time": format_time(checkpoint.timestamp.replace(microsecond=0)),
        "sizeBytes": checkpoint.size_bytes,
    }


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def readable(exc: ValidationError) -> str:
    """A pydantic error as one line naming the spec fields."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{where}: {err['msg']}")
    return "; ".join(parts)


def api_message(exc: ApiException) -> str:
    """The API server's own message for a rejected request."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)[:1000]
    return f"{exc.status} {exc.reason}"


class Pass:
    """One reconcile pass of one Execution."""

    def __init__(self, lc: Lifecycle, obj: dict[str, Any], mirror: CheckpointMirror | None = None) -> None:
        self.lc = lc
        self.mirror = mirror
        self.kube = lc.kube
        self.store = lc.store
        self.obj = obj
        meta = obj["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.generation: int | None = meta.get("generation")
        self.id = execution_id(self.namespace, self.name)
        self.status: dict[str, Any] = dict(obj.get("status") or {})
        self.conditions: list[dict[str, Any]] = list(self.status.get("conditions") or [])
        self.spec: ExecutionSpec | None = None

    # -- status -------------------------------------------------------------------------------
    def cond(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions, type_, status, reason, message, generation=self.generation
        )

    async def patch(self, **fields: Any) -> None:
        """Merge-patch status fields (camelCase; None deletes) plus conditions and observedGeneration."""
        body = {**fields, "conditions": self.conditions, "observedGeneration": self.generation}
        before = self.status.get("phase")
        self.obj = await self.kube.patch_execution_status(self.namespace, self.name, body)
        self.status = dict(self.obj.get("status") or {})
        metrics.note_phase(before, self.status)  # stratarouter_executions_finished_total
        self.conditions = list(self.status.get("conditions") or [])
        self.lc.track_phase(self.namespace, self.name, self.status.get("phase"))
        if "lastCheckpoint" in fields and self.mirror is not None:
            self.mirror.rewound(self.namespace, self.name, self.attempt)

    async def stored_checkpoint(self, stored: Execution | None) -> dict[str, Any]:
        """``lastCheckpoint`` for a status patch: the store's last checkpoint, when status shows another
        step. A replacement resumes from the store, and status must not say otherwise while the
        checkpoint API's coalesced patch is still on its way. Empty when status already agrees (or the
        store has no checkpoint)."""
        step = None if stored is None else stored.last_checkpoint_step
        if step is None or (self.status.get("lastCheckpoint") or {}).get("step") == step:
            return {}
        try:
            latest = await self.store.get_latest_checkpoint(self.id)
        except StateError as exc:
            log.debug("store get_latest_checkpoint(%s): %s", self.id, exc)
            return {}
        return {} if latest is None else {"lastCheckpoint": checkpoint_status(latest)}

    def event(self, reason: str, message: str, type_: EventType = "Normal") -> None:
        self.lc.spawn(post_event(self.kube, self.obj, reason, message, type_))

    @property
    def attempt(self) -> int:
        return int(self.status.get("attempt") or 0)

    @property
    def restarts(self) -> int:
        return int(self.status.get("restarts") or 0)

    # -- the pass -----------------------------------------------------------------------------
    async def run(self) -> float | None:
        """Move the Execution one step; returns seconds until the next pass is due (None: on events)."""
        due = await self.step()
        if self.generation is not None and self.status.get("observedGeneration") != self.generation:
            await self.patch()  # the spec change was seen, even if it changed nothing
        return due

    async def step(self) -> float | None:
        self.lc.track_phase(self.namespace, self.name, self.status.get("phase"))
        try:
            spec = ExecutionSpec.model_validate(self.obj.get("spec") or {})
        except ValidationError as exc:
            if self.status.get("phase") != "Failed":
                await self.give_up(Reason.INVALID_SPEC, f"invalid spec: {readable(exc)}")
            return None
        self.spec = spec
        phase = self.status.get("phase")
        if self.attempt == 0:
            await self.archive_earlier_run()

        desired = spec.restore_from.snapshot if spec.restore_from else None
        if desired != (self.status.get("restoreFromObserved") or None):
            if desired is None:
                await self.patch(restoreFromObserved=None)
            else:
                return await self.restore(desired)

        if phase in TERMINAL_PHASES:
            return None
        if spec.suspend:
            return await self.suspend()
        if self.attempt == 0:
            return await self.start_attempt(1, resume_step=None, reason=Reason.POD_PENDING)
        if phase == "Suspended":
            return await self.resume()
        recovery = self.status.get("recovery") or {}
        if phase == "Recovering" and recovery.get("failedAttempt") == self.attempt:
            return await self.replace()
        return await self.observe()

    async def observe(self) -> float | None:
        """Follow the current attempt's pod."""
        name = pod_name(self.name, self.attempt)
        pod = await self.kube.get_pod(self.namespace, name)
        if pod is not None and not self.status.get("podUID") and self.status.get("podName") == name:
            # an Execution from before status.podUID: record the pod its status already names
            await self.patch(podUID=(pod.get("metadata") or {}).get("uid"))
        if pod is not None and not self.ours(pod):
            uid = (pod.get("metadata") or {}).get("uid")
            self.event(
                Reason.FOREIGN_POD,
                f"pod {name} (uid {uid}) is not the pod the operator created for attempt {self.attempt} "
                f"(uid {self.status.get('podUID')}): that pod is gone",
                "Warning",
            )
            pod = None  # the operator's pod was deleted; whatever holds its name now is not the attempt
        state = await self.classify(name, pod)
        phase = self.status.get("phase")
        if state.kind == "pending":
            if phase not in ("Pending", "Recovering"):
                self.cond(ConditionType.RUNNING, "False", Reason.POD_PENDING, f"pod {name} is pending")
                await self.patch(phase="Pending", podName=name)
            return None
        if state.kind == "running":
            if phase != "Running":
                self.cond(ConditionType.RUNNING, "True", Reason.POD_RUNNING, f"pod {name} is running")
                if phase == "Recovering":
                    self.cond(
                        ConditionType.RECOVERING,
                        "False",
                        Reason.RECOVERED,
                        f"attempt {self.attempt} is running",
                    )
                message = None
                if phase == "Recovering":
                    step = self.status.get("resumeStep")
                    since = "the start" if step is None else f"step {step}"
                    message = f"recovered: attempt {self.attempt} resumed from {since}"
                await self.patch(phase="Running", reason=Reason.POD_RUNNING, message=message, podName=name)
            return None
        if state.kind == "succeeded":
            await self.succeed(name)
            return None
        return await self.on_failure(state, name)

    async def classify(self, name: str, pod: dict[str, Any] | None) -> PodState:
        """classify_pod plus the node check: a pod whose node is gone is lost, whatever it says."""
        node = ((pod or {}).get("spec") or {}).get("nodeName") or self.lc.view.node_of(self.namespace, name)
        node_gone = False
        if node and (pod is None or node in self.lc.view.gone_nodes):
            node_gone = not await self.kube.node_exists(node)
        return classify_pod(pod, node_gone=node_gone)

    # -- success and terminal failure ----------------------------------------------------------
    async def succeed(self, name: str) -> None:
        try:
            await self.store.complete(self.id, attempt=self.attempt)
        except StateError as exc:  # already completed through the API, or never started in the store
            log.debug("store complete(%s): %s", self.id, exc)
        self.cond(ConditionType.COMPLETE, "True", Reason.SUCCEEDED, f"pod {name} exited 0")
        self.cond(ConditionType.RUNNING, "False", Reason.FINISHED, "the workload finished")
        if self.status.get("phase") == "Recovering":
            self.cond(ConditionType.RECOVERING, "False", Reason.FINISHED, "the workload finished")
        await self.patch(
            phase="Succeeded",
            reason=Reason.SUCCEEDED,
            message=f"pod {name} exited 0",
            completionTime=format_time(now_utc()),
        )

    async def give_up(self, reason: Reason, message: str) -> None:
        """Terminal failure: Failed with ``reason``; the store records it too."""
        self.cond(ConditionType.FAILED, "True", reason, message)
        self.cond(ConditionType.RUNNING, "False", Reason.FINISHED, "the execution failed")
        if any(c.get("type") == ConditionType.RECOVERING for c in self.conditions):
            self.cond(ConditionType.RECOVERING, "False", reason, message)
        await self.patch(
            phase="Failed", reason=reason, message=message, completionTime=format_time(now_utc())
        )
        try:
            await self.store.fail(self.id, f"{reason}: {message}", attempt=self.attempt or None)
        except StateError as exc:  # never started in the store (invalid spec), or already final
            log.debug("store fail(%s): %s", self.id, exc)
        self.event(reason, message, "Warning")

    # -- recovery ------------------------------------------------------------------------------
    async def on_failure(self, state: PodState, name: str) -> float | None:
        """The current attempt failed: record the failure and its backoff, or give up."""
        assert self.spec is not None
        decision = decide(self.spec.recovery, self.restarts, state)
        if isinstance(decision, GiveUp):
            await self.give_up(decision.reason, decision.message)
            return None
        now = now_utc()
        backoff = decision.backoff_seconds
        # What the replacement will resume from, as far as the store knows now (final once replace()
        # fenced this attempt off): the message and lastCheckpoint say so while the backoff runs.
        stored = await self.store.get_execution(self.id)
        step = None if stored is None else stored.resume_step
        since = "from the start" if step is None else f"from step {step}"
        message = f"{state.message}; attempt {self.attempt + 1} in {backoff:g}s, {since}"
        self.cond(ConditionType.RUNNING, "False", str(state.reason), state.message)
        self.cond(ConditionType.RECOVERING, "True", str(state.reason), message)
        await self.patch(
            **await self.stored_checkpoint(stored),
            phase="Recovering",
            reason=str(state.reason),
            message=message,
            recovery={
                "reason": str(state.reason),
                "exitCode": state.exit_code,
                "failedPod": name,
                "failedAttempt": self.attempt,
                "failedAt": now.isoformat().replace("+00:00", "Z"),
                "backoffSeconds": backoff,
                "replacedAt": None,
                "resumeStep": None,
            },
        )
        self.event("Recovering", message, "Warning")
        return await self.replace()

    async def replace(self) -> float | None:
        """After the backoff, with the old pods gone: attempt n+1 after the last durable write."""
        assert self.spec is not None
        recovery = dict(self.status.get("recovery") or {})
        failed_at = parse_time(recovery.get("failedAt")) or now_utc()
        backoff = float(recovery.get("backoffSeconds") or 0)
        remaining = backoff - (datetime.now(UTC) - failed_at).total_seconds()
        if remaining > 0:
            return remaining
        next_attempt = self.attempt + 1
        if not await self.clear_pods(keep=pod_name(self.name, next_attempt)):
            return RETRY_SOON_SECONDS
        stored = await self.store.start_execution(
            self.id, attempt=next_attempt, labels=self.labels(), checkpoint_retention=self.retention()
        )
        resume_step = stored.resume_step
        created = await self.create_pod(next_attempt, resume_step)
        if created is None:
            return None
        name, uid = created
        replaced_at = datetime.now(UTC)
        reason = str(recovery.get("reason") or Reason.POD_DELETED)
        metrics.RECOVERIES_TOTAL.labels(reason=reason).inc()
        metrics.RECOVERY_SECONDS.observe(max(0.0, (replaced_at - failed_at).total_seconds()))
        step_text = "from the start" if resume_step is None else f"from step {resume_step}"
        message = f"attempt {next_attempt} ({name}) resumes {step_text}"
        recovery.update(replacedAt=replaced_at.isoformat().replace("+00:00", "Z"), resumeStep=resume_step)
        self.cond(ConditionType.RECOVERING, "True", reason, message)
        await self.patch(
            **await self.stored_checkpoint(stored),
            phase="Recovering",
            attempt=next_attempt,
            restarts=self.restarts + 1,
            podName=name,
            podUID=uid,
            resumeStep=resume_step,
            message=message,
            recovery=recovery,
        )
        self.event("Recovered", f"{message} after a {recovery.get('backoffSeconds', 0)}s backoff")
        return None

    # -- start, suspend, resume, restore -------------------------------------------------------
    def labels(self) -> dict[str, str]:
        """The stored run's labels; ``uid`` says which Execution of this name the run belongs to."""
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}

    async def archive_earlier_run(self) -> None:
        """Before this Execution's first start: a run stored under its id by an earlier Execution of the
        same name (whose deletion the operator never handled, e.g. its finalizer was removed by hand) is
        archived under that Execution's uid, never inherited: no state, history, retention or attempt
        of it reaches the new run."""
        stored = await self.store.get_execution(self.id)
        if stored is None or stored.labels.get("uid") == self.uid:
            return
        earlier = stored.labels.get("uid") or f"created-{stored.created_at:%Y%m%dT%H%M%S.%fZ}"
        archive = archived_execution_id(self.namespace, self.name, earlier)
        await self.store.rename_execution(self.id, archive)
        self.event("EarlierRunArchived", f"a run stored by an earlier Execution {self.id} is now {archive}")

    def retention(self) -> int | None:
        assert self.spec is not None
        return self.spec.checkpoint.retention or self.lc.settings.default_checkpoint_retention

    async def start_attempt(
        self, attempt: int, *, resume_step: int | None, reason: Reason, message: str = ""
    ) -> float | None:
        """Create attempt ``attempt`` (first start, resume, restore) once every other pod is gone."""
        if not await self.clear_pods(keep=pod_name(self.name, attempt)):
            return RETRY_SOON_SECONDS
        stored = await self.store.start_execution(
            self.id, attempt=attempt, labels=self.labels(), checkpoint_retention=self.retention()
        )
        if resume_step is None and attempt > 1:
            resume_step = stored.resume_step
        created = await self.create_pod(attempt, resume_step)
        if created is None:
            return None
        name, uid = created
        self.cond(ConditionType.RUNNING, "False", Reason.POD_PENDING, f"pod {name} is pending")
        fields: dict[str, Any] = {
            "phase": "Pending",
            "reason": reason,
            "message": message or f"pod {name} created",
            "attempt": attempt,
            "podName": name,
            "podUID": uid,
            "resumeStep": resume_step,
        }
        if not self.status.get("startTime"):
            fields["startTime"] = format_time(now_utc())
        await self.patch(**await self.stored_checkpoint(stored if attempt > 1 else None), **fields)
        return None

    def ours(self, pod: dict[str, Any]) -> bool:
        """Whether ``pod`` is the one the operator created for the current attempt (``status.podUID``)."""
        uid = (pod.get("metadata") or {}).get("uid")
        return bool(uid) and uid == self.status.get("podUID")

    async def create_pod(self, attempt: int, resume_step: int | None) -> tuple[str, str] | None:
        """Create the attempt's pod: ``(name, uid)``; an unusable template ends the execution (None).

        The name is deterministic, so the create can find a pod of that name already there. Anyone allowed
        to create pods can make one with the attempt's name, the operator's labels and a correct owner
        reference, so none of those say who made it; only a uid the operator recorded in
        ``status.podUID`` does. An existing pod with any other uid is never used: it gets a Warning Event
        ``ForeignPod``, the ``Running`` condition and ``status.message`` say so, and, when its owner
        reference names this Execution, it is deleted at once (grace 0, only that uid, which also voids
        its bound tokens) before the operator creates its own. That is the safest choice: adopting it
        would run the attempt in a pod someone else wrote, and it claims to be this Execution's (it
        would be garbage-collected with it anyway). The same happens to a pod the operator itself
        created just before a crash kept it from recording the uid: its writes were never accepted
        (status did not name it), so replacing it loses nothing. A pod that does not name this
        Execution as its owner is somebody else's and is left alone. Whenever the name stays taken (such
        a pod, finalizers, or the pod created again), the pass fails with :class:`ForeignPodError` and
        is retried with backoff.
        """
        assert self.spec is not None
        settings = self.lc.settings
        try:
            pod = build_pod(
                namespace=self.namespace,
                name=self.name,
                uid=self.uid,
                template=(self.obj.get("spec") or {}).get("template") or {},
                attempt=attempt,
                resume_step=resume_step,
                api_url=settings.api_url_for_pods,
                checkpoint_interval=self.spec.checkpoint.interval,
                compression=self.spec.checkpoint.compression,
                token_seconds=settings.pod_token_seconds,
            )
            created, fresh = await self.kube.create_pod(self.namespace, pod)
            if not fresh and not self.ours(created):
                await self.remove_foreign(created, attempt)
                created, fresh = await self.kube.create_pod(self.namespace, pod)
                if not fresh:
                    raise ForeignPodError(f"pod {pod['metadata']['name']} was created again by someone else")
        except InvalidTemplateError as exc:
            await self.give_up(Reason.INVALID_TEMPLATE, str(exc))
            return None
        except ApiException as exc:
            if exc.status in (400, 422):
                await self.give_up(Reason.INVALID_TEMPLATE, f"the pod was rejected: {api_message(exc)}")
                return None
            raise
        meta = created["metadata"]
        return str(meta["name"]), str(meta["uid"])

    async def remove_foreign(self, pod: dict[str, Any], attempt: int) -> None:
        """Delete a pod holding attempt ``attempt``'s name that the operator did not make (see create_pod)."""
        meta = pod.get("metadata") or {}
        name, uid = str(meta.get("name")), str(meta.get("uid") or "")
        recorded = self.status.get("podUID") or "none"
        message = (
            f"pod {name} (uid {uid}) already existed and was not created by the operator for attempt "
            f"{attempt} (recorded pod uid: {recorded}); it was deleted and the operator creates its own"
        )
        owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if self.uid not in owners:
            message = f"pod {name} (uid {uid}) holds attempt {attempt}'s name and is not this Execution's"
        log.warning("%s: %s", self.id, message)
        self.event(Reason.FOREIGN_POD, message, "Warning")
        self.cond(ConditionType.RUNNING, "False", Reason.FOREIGN_POD, message)
        await self.patch(message=message)
        if self.uid not in owners:
            raise ForeignPodError(message)
        try:
            await self.kube.delete_pod(self.namespace, name, grace_seconds=0, uid=uid or None)
        except ApiException as exc:
            if exc.status != 409:  # 409: not that uid any more; the create below tells what holds the name
                raise
        left = await self.kube.wait_pods_gone(self.namespace, [name], seconds=POD_GONE_WAIT_SECONDS)
        if left:
            raise ForeignPodError(f"pod {name} (uid {uid}) is not the operator's and is still being deleted")

    async def clear_pods(self, *, keep: str | None) -> bool:
        """Before a new attempt (or while suspended): no other pod of this Execution may be live.

        A pod whose containers have all exited (phase Failed or Succeeded, see :meth:`terminated`) is
        not live. The newest ``recovery.keepFailedPods`` such pods of this Execution's earlier attempts
        are kept, so their logs stay readable; older ones are deleted (grace 0, nothing left to stop)
        and not waited for. Every other pod (running, pending, on a lost node, not one of this
        Execution's attempts) is deleted and waited for until it is gone or has terminated. ``keep``: the
        pod of the attempt about to be created, left alone (:meth:`create_pod` decides about it). True
        when no pod but ``keep`` is live.
        """
        assert self.spec is not None
        pods = await self.kube.list_pods(self.namespace, pod_selector(self.name))
        others = [pod for pod in pods if pod["metadata"]["name"] != keep]
        lost = await self.lost_nodes(others)
        finished = [pod for pod in others if self.terminated(pod, lost)]
        newest = self.keepable(finished)[: self.spec.recovery.keep_failed_pods]
        kept = {pod["metadata"]["name"] for pod in newest}
        done_names = {pod["metadata"]["name"] for pod in finished}
        waiting = []
        for pod in others:
            meta = pod.get("metadata") or {}
            name = meta["name"]
            if name in kept:
                continue
            done = name in done_names
            if not done:
                waiting.append(name)
            if done and meta.get("deletionTimestamp"):
                continue  # not live, and already going
            phase = (pod.get("status") or {}).get("phase")
            node = (pod.get("spec") or {}).get("nodeName")
            # Finished containers and lost nodes have nothing left to stop: remove the object at once.
            grace = 0 if phase in ("Succeeded", "Failed") or node in lost else None
            if grace is not None or not meta.get("deletionTimestamp"):
                await self.kube.delete_pod(self.namespace, name, grace_seconds=grace)
        if not waiting:
            return True
        left = await self.wait_terminated(waiting, lost)
        if left:
            log.info("%s: waiting for old pod(s) %s to terminate", self.id, ", ".join(left))
        return not left

    async def lost_nodes(self, pods: list[dict[str, Any]]) -> set[str]:
        """The nodes of ``pods`` that are gone (seen deleted, or no longer in the API server)."""
        nodes = {str(node) for pod in pods if (node := (pod.get("spec") or {}).get("nodeName"))}
        gone = nodes & self.lc.view.gone_nodes
        for node in sorted(nodes - gone):
            if not await self.kube.node_exists(node):
                gone.add(node)
        return gone

    @staticmethod
    def terminated(pod: dict[str, Any], lost: set[str]) -> bool:
        """Whether ``pod``'s containers have all exited, as its kubelet reported: not live any more.

        Phase Failed or Succeeded is final and set by the kubelet once every container stopped, but not
        when the pod's node is gone or the pod was failed for its node (NodeLost, DeletionByPodGC,
        DeletionByTaintManager): then nobody saw the containers stop, and they may still run on a node
        cut off from the API server.
        """
        status = pod.get("status") or {}
        if status.get("phase") not in ("Succeeded", "Failed"):
            return False
        node = (pod.get("spec") or {}).get("nodeName")
        return not (node and node in lost) and classify_pod(pod).reason != Reason.NODE_LOST

    def keepable(self, finished: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The terminated pods worth keeping, newest attempt first: this Execution's own attempts'
        pods (by name and owner reference), not being deleted."""
        attempts = []
        for pod in finished:
            meta = pod.get("metadata") or {}
            owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
            attempt = attempt_of(self.name, str(meta.get("name")))
            if attempt is not None and self.uid in owners and not meta.get("deletionTimestamp"):
                attempts.append((attempt, pod))
        attempts.sort(key=lambda item: item[0], reverse=True)
        return [pod for _, pod in attempts]

    async def wait_terminated(self, names: list[str], lost: set[str]) -> list[str]:
        """Poll until each named pod is gone or has terminated; the names still live after a while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + POD_GONE_WAIT_SECONDS
        delay = 0.05
        remaining = list(names)
        while remaining:
            still = []
            for name in remaining:
                pod = await self.kube.get_pod(self.namespace, name)
                if pod is not None and not self.terminated(pod, lost):
                    still.append(name)
            remaining = still
            if not remaining or loop.time() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return remaining

    async def suspend(self) -> float | None:
        """Keep the state, stop the pod. A pod that already finished is honoured first.

        The pod is deleted gracefully (its own ``terminationGracePeriodSeconds``): the kubelet sends
        SIGTERM and waits, so a workload that handles it (``StateManager.handle_signals``) writes a
        last checkpoint and exits. Until the pod is gone it stays ``status.podName``, the pod the
        checkpoint API accepts writes from; the attempt is not bumped (nothing fences it) before the
        resume.
        """
        name = pod_name(self.name, self.attempt) if self.attempt else None
        if self.status.get("phase") != "Suspended":
            pod = await self.kube.get_pod(self.namespace, name) if name else None
            if pod is not None and not self.ours(pod):
                pod = None  # not the pod the operator made for this attempt: its outcome is not ours
            if pod is not None and classify_pod(pod).kind == "succeeded":
                await self.succeed(pod["metadata"]["name"])
                return None
            self.cond(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, "spec.suspend is true")
            self.cond(ConditionType.RUNNING, "False", Reason.SUSPENDED, "spec.suspend is true")
            stopping = f"suspending: pod {name} is stopping; state kept" if pod is not None else None
            await self.patch(
                phase="Suspended",
                reason=Reason.SUSPENDED,
                message=stopping or "suspended; state kept",
                podName=name if pod is not None else None,
                podUID=self.status.get("podUID") if pod is not None else None,
            )
            self.event("Suspended", f"pod {name} stopping; state kept" if pod is not None else "state kept")
        if not await self.clear_pods(keep=None):
            return RETRY_SOON_SECONDS
        if self.status.get("podName"):
            await self.patch(message="suspended; state kept", podName=None, podUID=None)
        return None

    async def resume(self) -> float | None:
        """Unsuspended: a new attempt after the last durable write."""
        self.cond(ConditionType.SUSPENDED, "False", Reason.RESUMED, "spec.suspend is false")
        attempt = self.attempt + 1
        due = await self.start_attempt(attempt, resume_step=None, reason=Reason.RESUMED, message="resumed")
        if self.attempt == attempt:
            step = self.status.get("resumeStep")
            self.event("Resumed", f"attempt {attempt} resumes from step {step}")
        return due

    async def restore(self, snapshot: str) -> float | None:
        """spec.restoreFrom changed: stop the attempt, restore the snapshot, restart from its step."""
        assert self.spec is not None
        found = await self.store.get_snapshot(self.id, snapshot)
        if found is None:
            message = f"snapshot {snapshot!r} of {self.id} is not in the store (yet)"
            self.cond(ConditionType.RESTORED, "False", "SnapshotNotFound", message)
            await self.patch(message=message)
            return SNAPSHOT_WAIT_SECONDS
        if not await self.clear_pods(keep=None):
            return RETRY_SOON_SECONDS
        attempt = self.attempt + 1
        await self.store.start_execution(
            self.id, attempt=attempt, labels=self.labels(), checkpoint_retention=self.retention()
        )
        checkpoint = await self.store.restore_snapshot(self.id, snapshot, attempt=attempt)
        now = format_time(now_utc())
        message = f"restored snapshot {snapshot} (step {checkpoint.step})"
        self.cond(ConditionType.RESTORED, "True", Reason.SNAPSHOT_RESTORED, message)
        for type_ in (ConditionType.COMPLETE, ConditionType.FAILED):
            if any(c.get("type") == type_ for c in self.conditions):
                self.cond(type_, "False", Reason.SNAPSHOT_RESTORED, message)
        restored = {"snapshot": snapshot, "step": checkpoint.step, "time": now}
        # The store's last checkpoint is now the snapshot's step (history after it was dropped): status
        # says so at once, instead of the rewound step until the next checkpoint's patch.
        last = checkpoint_status(checkpoint)
        self.event("Restored", message)
        if self.spec.suspend:
            self.cond(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, "spec.suspend is true")
            await self.patch(
                phase="Suspended",
                reason=Reason.SNAPSHOT_RESTORED,
                message=message,
                attempt=attempt,
                podName=None,
                podUID=None,
                lastCheckpoint=last,
                restoredFrom=restored,
                restoreFromObserved=snapshot,
                completionTime=None,
            )
            return None
        created = await self.create_pod(attempt, checkpoint.step)
        if created is None:
            return None
        name, uid = created
        self.cond(ConditionType.RUNNING, "False", Reason.POD_PENDING, f"pod {name} is pending")
        await self.patch(
            phase="Pending",
            reason=Reason.SNAPSHOT_RESTORED,
            message=message,
            attempt=attempt,
            podName=name,
            podUID=uid,
            resumeStep=checkpoint.step,
            lastCheckpoint=last,
            restoredFrom=restored,
            restoreFromObserved=snapshot,
            completionTime=None,
            startTime=self.status.get("startTime") or now,
        )
        return None


async def reconcile(
    lc: Lifecycle, namespace: str, name: str, *, mirror: CheckpointMirror | None = None
) -> float | None:
    """One pass for ``namespace/name``; seconds until the next pass is due, or None (wait for events).

    ``mirror``: this process's ``status.lastCheckpoint`` coalescer, told whenever the pass wrote that
    field itself (a restore, a recovery), so it never sends a partial patch based on stale knowledge.
    """
    obj = await lc.kube.get_execution(namespace, name)
    if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return await Pass(lc, obj, mirror).run()
