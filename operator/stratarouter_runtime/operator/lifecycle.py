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
* status is patched after the pod exists, never before, so a pod is never "lost" by the status;
* a pass patches status at most once (:class:`~stratarouter_runtime.operator.record.PassRecord`), after
  what it did. A recovery's intent is recorded by one pass and the replacement made by the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stratarouter_runtime.operator import forks, metrics
from stratarouter_runtime.operator.context import CheckpointMirror, Lifecycle
from stratarouter_runtime.operator.outcomes import GiveUp, PodState, classify_pod, decide
from stratarouter_runtime.operator.pods import (
    InvalidTemplateError,
    archived_execution_id,
    build_pod,
    pod_name,
    pod_selector,
)
from stratarouter_runtime.operator.record import PassRecord
from stratarouter_runtime.operator.resources.conditions import (
    ConditionType,
    Reason,
    now_utc,
)
from stratarouter_runtime.operator.resources.execution import (
    TERMINAL_PHASES,
    ExecutionSpec,
    Phase,
    RecoveryStatus,
    RestoredFrom,
)
from stratarouter_runtime.state.errors import StateError

if TYPE_CHECKING:
    from stratarouter_runtime.state.models import Execution

log = logging.getLogger(__name__)

POD_GONE_WAIT_SECONDS = 5.0
"""How long one pass waits for old pods to disappear before it yields and comes back."""
RETRY_SOON_SECONDS = 1.0
SNAPSHOT_WAIT_SECONDS = 10.0


class ForeignPodError(RuntimeError):
    """The attempt's pod name is held by a pod the operator did not create and could not remove yet."""


def attempt_of(execution: str, pod: str) -> int | None:
    """The attempt of an operator-made pod's name (``<execution>-a<n>``); None for any other name."""
    prefix = f"{execution}-a"
    digits = pod[len(prefix) :] if pod.startswith(prefix) else ""
    if not (digits.isascii() and digits.isdigit()) or digits.startswith("0"):
        return None
    return int(digits)


def api_message(exc: ApiException) -> str:
    """The API server's own message for a rejected request."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)[:1000]
    return f"{exc.status} {exc.reason}"


class Pass(PassRecord):
    """One reconcile pass of one Execution with a valid spec: act, then record it all in one patch.

    The pass changes :attr:`status` as it acts and :meth:`flush` sends what changed at its end. Where
    status must be durable before the next action (a failure seen before its replacement is made, a
    suspend before the pod is stopped), the pass ends there and says when to come back (0: at once).
    """

    def __init__(
        self, lc: Lifecycle, obj: dict[str, Any], spec: ExecutionSpec, mirror: CheckpointMirror | None = None
    ) -> None:
        super().__init__(lc, obj, mirror)
        self.spec = spec

    async def sync_checkpoint(self, stored: Execution | None) -> None:
        """Set ``lastCheckpoint`` to the store's last checkpoint when status shows another step. A
        replacement resumes from the store, and status must not say otherwise while the checkpoint API's
        coalesced patch is still on its way. Nothing changes when status already agrees (or the store
        has no checkpoint)."""
        step = None if stored is None else stored.last_checkpoint_step
        shown = self.status.last_checkpoint
        if step is None or (shown is not None and shown.step == step):
            return
        try:
            latest = await self.store.get_latest_checkpoint(self.id)
        except StateError as exc:
            log.debug("store get_latest_checkpoint(%s): %s", self.id, exc)
            return
        if latest is not None:
            self.rewrite_checkpoint(latest)

    # -- the pass -----------------------------------------------------------------------------
    async def run(self) -> float | None:
        """Move the Execution one step; returns seconds until the next pass is due (None: on events)."""
        try:
            due = await self.step()
        except ForeignPodError:
            await self.flush()  # the Running condition and the message say which pod holds the name
            raise
        await self.flush()  # also when nothing else changed: observedGeneration says the spec was seen
        return due

    async def step(self) -> float | None:
        status = self.status
        if status.attempt == 0:
            await self.archive_earlier_run()
        else:
            forks.check_unchanged(self)

        desired = self.spec.restore_from.snapshot if self.spec.restore_from else None
        if desired != (status.restore_from_observed or None):
            if desired is None:
                status.restore_from_observed = None
            else:
                return await self.restore(desired)

        if status.phase in TERMINAL_PHASES:
            return None
        if self.spec.suspend:
            return await self.suspend()
        if status.attempt == 0:
            return await self.start_attempt(1, resume_step=None, reason=Reason.POD_PENDING)
        if status.phase == Phase.SUSPENDED:
            return await self.resume()
        recovery = status.recovery
        if status.phase == Phase.RECOVERING and recovery and recovery.failed_attempt == status.attempt:
            return await self.replace(recovery)
        return await self.observe()

    async def observe(self) -> float | None:
        """Follow the current attempt's pod."""
        status = self.status
        name = pod_name(self.name, status.attempt)
        pod = await self.kube.get_pod(self.namespace, name)
        if pod is not None and not status.pod_uid and status.pod_name == name:
            # an Execution from before status.podUID: record the pod its status already names
            status.pod_uid = (pod.get("metadata") or {}).get("uid")
        if pod is not None and not self.ours(pod):
            uid = (pod.get("metadata") or {}).get("uid")
            self.event(
                Reason.FOREIGN_POD,
                f"pod {name} (uid {uid}) is not the pod the operator created for attempt {status.attempt} "
                f"(uid {status.pod_uid}): that pod is gone",
                "Warning",
            )
            pod = None  # the operator's pod was deleted; whatever holds its name now is not the attempt
        state = await self.classify(name, pod)
        if state.kind == "pending":
            if status.phase not in (Phase.PENDING, Phase.RECOVERING):
                self.cond(ConditionType.RUNNING, "False", Reason.POD_PENDING, f"pod {name} is pending")
                status.phase, status.pod_name = Phase.PENDING, name
            return None
        if state.kind == "running":
            if status.phase != Phase.RUNNING:
                self.running(name)
            return None
        if state.kind == "succeeded":
            await self.succeed(name)
            return None
        return await self.on_failure(state, name)

    def running(self, name: str) -> None:
        """The attempt's pod runs: phase Running (after a recovery, the message says from where)."""
        status = self.status
        self.cond(ConditionType.RUNNING, "True", Reason.POD_RUNNING, f"pod {name} is running")
        message = None
        if status.phase == Phase.RECOVERING:
            self.cond(
                ConditionType.RECOVERING, "False", Reason.RECOVERED, f"attempt {status.attempt} is running"
            )
            since = "the start" if status.resume_step is None else f"step {status.resume_step}"
            message = f"recovered: attempt {status.attempt} resumed from {since}"
        status.phase, status.reason, status.message = Phase.RUNNING, Reason.POD_RUNNING, message
        status.pod_name = name

    async def classify(self, name: str, pod: dict[str, Any] | None) -> PodState:
        """classify_pod plus the node check: a pod whose node is gone is lost, whatever it says."""
        node = ((pod or {}).get("spec") or {}).get("nodeName") or self.lc.view.node_of(self.namespace, name)
        node_gone = False
        if node and (pod is None or node in self.lc.view.gone_nodes):
            node_gone = not await self.kube.node_exists(node)
        return classify_pod(pod, node_gone=node_gone)

    # -- success -------------------------------------------------------------------------------
    async def succeed(self, name: str) -> None:
        status = self.status
        try:
            await self.store.complete(self.id, attempt=status.attempt)
        except StateError as exc:  # already completed through the API, or never started in the store
            log.debug("store complete(%s): %s", self.id, exc)
        self.cond(ConditionType.COMPLETE, "True", Reason.SUCCEEDED, f"pod {name} exited 0")
        self.cond(ConditionType.RUNNING, "False", Reason.FINISHED, "the workload finished")
        if status.phase == Phase.RECOVERING:
            self.cond(ConditionType.RECOVERING, "False", Reason.FINISHED, "the workload finished")
        status.phase, status.reason = Phase.SUCCEEDED, Reason.SUCCEEDED
        status.message, status.completion_time = f"pod {name} exited 0", now_utc()

    # -- recovery ------------------------------------------------------------------------------
    async def on_failure(self, state: PodState, name: str) -> float | None:
        """The current attempt failed: record the failure and its backoff (the replacement is made by the
        pass due when the backoff is over, so the failure is in status first), or give up."""
        status = self.status
        decision = decide(self.spec.recovery, status.restarts, state)
        if isinstance(decision, GiveUp):
            await self.give_up(decision.reason, decision.message)
            return None
        backoff = decision.backoff_seconds
        # What the replacement will resume from, as far as the store knows now (final once replace()
        # fenced this attempt off): the message and lastCheckpoint say so while the backoff runs.
        stored = await self.store.get_execution(self.id)
        step = None if stored is None else stored.resume_step
        since = "from the start" if step is None else f"from step {step}"
        message = f"{state.message}; attempt {status.attempt + 1} in {backoff:g}s, {since}"
        reason = str(state.reason)
        self.cond(ConditionType.RUNNING, "False", reason, state.message)
        self.cond(ConditionType.RECOVERING, "True", reason, message)
        await self.sync_checkpoint(stored)
        status.phase, status.reason, status.message = Phase.RECOVERING, reason, message
        status.recovery = RecoveryStatus(
            reason=reason,
            exit_code=state.exit_code,
            failed_pod=name,
            failed_attempt=status.attempt,
            failed_at=now_utc(),
            backoff_seconds=backoff,
        )
        self.event("Recovering", message, "Warning")
        return backoff

    async def replace(self, recovery: RecoveryStatus) -> float | None:
        """After the backoff, with the old pods gone: attempt n+1 after the last durable write."""
        status = self.status
        failed_at = recovery.failed_at or now_utc()
        backoff = recovery.backoff_seconds or 0.0
        remaining = backoff - (datetime.now(UTC) - failed_at).total_seconds()
        if remaining > 0:
            return remaining
        next_attempt = status.attempt + 1
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
        metrics.RECOVERIES_TOTAL.labels(reason=recovery.reason).inc()
        metrics.RECOVERY_SECONDS.observe(max(0.0, (replaced_at - failed_at).total_seconds()))
        step_text = "from the start" if resume_step is None else f"from step {resume_step}"
        message = f"attempt {next_attempt} ({name}) resumes {step_text}"
        recovery.replaced_at, recovery.resume_step = replaced_at, resume_step
        self.cond(ConditionType.RECOVERING, "True", recovery.reason, message)
        await self.sync_checkpoint(stored)
        status.attempt, status.restarts, status.message = next_attempt, status.restarts + 1, message
        status.pod_name, status.pod_uid, status.resume_step = name, uid, resume_step
        self.event("Recovered", f"{message} after a {recovery.backoff_seconds}s backoff")
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
        return self.spec.checkpoint.retention or self.lc.settings.default_checkpoint_retention

    async def start_attempt(
        self, attempt: int, *, resume_step: int | None, reason: Reason, message: str = ""
    ) -> float | None:
        """Create attempt ``attempt`` (first start, resume, restore) once every other pod is gone."""
        if not await self.clear_pods(keep=pod_name(self.name, attempt)):
            return RETRY_SOON_SECONDS
        fork = attempt == 1 and self.spec.start_from is not None
        if fork:  # the first start of a fork: the store starts the run from the source's state
            try:
                stored = await forks.start(self, attempt)
            except forks.ForkNotStarted as not_yet:
                return not_yet.due
        else:
            stored = await self.store.start_execution(
                self.id, attempt=attempt, labels=self.labels(), checkpoint_retention=self.retention()
            )
        if resume_step is None and (attempt > 1 or fork):
            resume_step = stored.resume_step
        created = await self.create_pod(attempt, resume_step)
        if created is None:
            return None
        name, uid = created
        if attempt > 1 or fork:
            await self.sync_checkpoint(stored)
        self.pending(name, uid, attempt, resume_step, reason=reason, message=message or f"pod {name} created")
        return None

    def pending(
        self, name: str, uid: str, attempt: int, resume_step: int | None, *, reason: Reason, message: str
    ) -> None:
        """Attempt ``attempt``'s pod ``name`` (uid ``uid``) exists: phase Pending, status names the pod."""
        status = self.status
        self.cond(ConditionType.RUNNING, "False", Reason.POD_PENDING, f"pod {name} is pending")
        status.phase, status.reason, status.message = Phase.PENDING, reason, message
        status.attempt, status.pod_name, status.pod_uid, status.resume_step = attempt, name, uid, resume_step
        status.start_time = status.start_time or now_utc()

    def ours(self, pod: dict[str, Any]) -> bool:
        """Whether ``pod`` is the one the operator created for the current attempt (``status.podUID``)."""
        uid = (pod.get("metadata") or {}).get("uid")
        return bool(uid) and uid == self.status.pod_uid

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
                on_corrupt=self.spec.recovery.on_corrupt,
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
        recorded = self.status.pod_uid or "none"
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
        self.status.message = message
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

        The first pass records Suspended and comes back at once to delete the pod gracefully (its own
        ``terminationGracePeriodSeconds``): the kubelet sends SIGTERM and waits, so a workload that handles
        it (``StateManager.handle_signals``) writes a last checkpoint and exits. Until the pod is gone it
        stays ``status.podName``, the pod the checkpoint API accepts writes from; the attempt is not
        bumped (nothing fences it) before the resume.
        """
        status = self.status
        name = pod_name(self.name, status.attempt) if status.attempt else None
        if status.phase != Phase.SUSPENDED:
            pod = await self.kube.get_pod(self.namespace, name) if name else None
            if pod is not None and not self.ours(pod):
                pod = None  # not the pod the operator made for this attempt: its outcome is not ours
            if pod is not None and classify_pod(pod).kind == "succeeded":
                await self.succeed(pod["metadata"]["name"])
                return None
            self.cond(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, "spec.suspend is true")
            self.cond(ConditionType.RUNNING, "False", Reason.SUSPENDED, "spec.suspend is true")
            status.phase, status.reason = Phase.SUSPENDED, Reason.SUSPENDED
            if pod is None:
                status.message, status.pod_name, status.pod_uid = "suspended; state kept", None, None
            else:
                status.message, status.pod_name = f"suspending: pod {name} is stopping; state kept", name
            self.event("Suspended", f"pod {name} stopping; state kept" if pod is not None else "state kept")
            return 0.0
        if not await self.clear_pods(keep=None):
            return RETRY_SOON_SECONDS
        if status.pod_name:
            status.message, status.pod_name, status.pod_uid = "suspended; state kept", None, None
        return None

    async def resume(self) -> float | None:
        """Unsuspended: a new attempt after the last durable write."""
        self.cond(ConditionType.SUSPENDED, "False", Reason.RESUMED, "spec.suspend is false")
        attempt = self.status.attempt + 1
        due = await self.start_attempt(attempt, resume_step=None, reason=Reason.RESUMED, message="resumed")
        if self.status.attempt == attempt:
            self.event("Resumed", f"attempt {attempt} resumes from step {self.status.resume_step}")
        return due

    async def restore(self, snapshot: str) -> float | None:
        """spec.restoreFrom changed: stop the attempt, restore the snapshot, restart from its step."""
        status = self.status
        found = await self.store.get_snapshot(self.id, snapshot)
        if found is None:
            message = f"snapshot {snapshot!r} of {self.id} is not in the store (yet)"
            self.cond(ConditionType.RESTORED, "False", Reason.SNAPSHOT_NOT_FOUND, message)
            status.message = message
            return SNAPSHOT_WAIT_SECONDS
        if not await self.clear_pods(keep=None):
            return RETRY_SOON_SECONDS
        attempt = status.attempt + 1
        await self.store.start_execution(
            self.id, attempt=attempt, labels=self.labels(), checkpoint_retention=self.retention()
        )
        checkpoint = await self.store.restore_snapshot(self.id, snapshot, attempt=attempt)
        message = f"restored snapshot {snapshot} (step {checkpoint.step})"
        self.cond(ConditionType.RESTORED, "True", Reason.SNAPSHOT_RESTORED, message)
        for type_ in (ConditionType.COMPLETE, ConditionType.FAILED):
            if self.has_condition(type_):
                self.cond(type_, "False", Reason.SNAPSHOT_RESTORED, message)
        restored = RestoredFrom(snapshot=snapshot, step=checkpoint.step, time=now_utc())
        self.event("Restored", message)
        if self.spec.suspend:
            self.cond(ConditionType.SUSPENDED, "True", Reason.SUSPENDED, "spec.suspend is true")
            status.phase, status.attempt, status.pod_name, status.pod_uid = (
                Phase.SUSPENDED,
                attempt,
                None,
                None,
            )
        else:
            created = await self.create_pod(attempt, checkpoint.step)
            if created is None:
                return None
            name, uid = created
            self.pending(
                name, uid, attempt, checkpoint.step, reason=Reason.SNAPSHOT_RESTORED, message=message
            )
        # The store's last checkpoint is now the snapshot's step (history after it was dropped): status
        # says so at once, instead of the rewound step until the next checkpoint's patch.
        self.rewrite_checkpoint(checkpoint)
        status.reason, status.message, status.completion_time = Reason.SNAPSHOT_RESTORED, message, None
        status.restored_from, status.restore_from_observed = restored, snapshot
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
    try:
        spec = ExecutionSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        await PassRecord(lc, obj, mirror).refuse(exc)
        return None
    return await Pass(lc, obj, spec, mirror).run()
