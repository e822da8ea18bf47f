"""The chaos run's invariants, as pure functions over what was recorded (see :mod:`.records`).

Each returns the list of :class:`~.records.Violation` it found; an empty list means it held. They
are unit-tested with synthetic timelines that break each one (``tests/unit/test_chaos_invariants.py``),
so a check that cannot fail would be noticed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stratarouter_dev.chaos.records import (
    Ack,
    AuditRecord,
    PodEvent,
    Resume,
    StoredCheckpoint,
    Violation,
    digest,
    pod_attempt,
)

SUCCEEDED = "ends-succeeded"
DUPLICATE_PODS = "one-live-pod"
LOST = "acked-checkpoint-kept"
STALE = "no-stale-write-acked"
RESUMED = "resume-from-last-ack"
METRICS = "metrics-agree"
INTERNAL = "no-internal-error"


def check_succeeded(
    executions: Iterable[str], phases: Mapping[str, str | None], store_status: Mapping[str, str | None]
) -> list[Violation]:
    """Every Execution ends ``Succeeded`` in the API server and ``completed`` in the store."""
    found = []
    for name in executions:
        phase, stored = phases.get(name), store_status.get(name)
        if phase != "Succeeded" or stored != "completed":
            found.append(Violation(SUCCEEDED, name, f"phase {phase}, store status {stored}"))
    return found


def check_one_live_pod(events: Sequence[PodEvent]) -> list[Violation]:
    """Never two live pods of one Execution at any instant of the watch's timeline (resourceVersion order).

    Each overlapping pair is reported once, at the first event where both were live.
    """
    live: dict[str, dict[str, PodEvent]] = defaultdict(dict)
    reported: set[tuple[str, str, str]] = set()
    found = []
    for event in sorted(events, key=lambda e: e.rv):
        owner = pod_attempt(event.name)
        if owner is None:
            continue
        execution = owner[0]
        pods = live[execution]
        key = f"{event.name}/{event.uid}"
        if event.live:
            pods[key] = event
        else:
            pods.pop(key, None)
        if len(pods) > 1:
            names = sorted(pods)
            for other in names:
                if other == key:
                    continue
                low, high = sorted((key, other))
                pair = (execution, low, high)
                if event.live and pair not in reported:
                    reported.add(pair)
                    found.append(
                        Violation(
                            DUPLICATE_PODS,
                            execution,
                            f"{pair[1]} and {pair[2]} live at once (resourceVersion {event.rv})",
                        )
                    )
    return found


def check_acked_kept(
    acks: Iterable[Ack],
    history: Mapping[str, Mapping[int, StoredCheckpoint]],
    audit: Mapping[str, Sequence[AuditRecord]],
) -> list[Violation]:
    """Every acknowledged checkpoint is in the store, byte for byte: the history row of its step holds the
    sha256 the worker computed of what it sent (the state names its attempt, so a step rewritten by
    another attempt differs), and the audit trail has a checkpoint row with that step, attempt and hash."""
    found = []
    audited: dict[str, set[tuple[int | None, int | None, str | None]]] = {
        name: {(r.step, r.attempt, r.hash) for r in rows if r.kind == "checkpoint"}
        for name, rows in audit.items()
    }
    seen: set[tuple[str, int, str]] = set()
    for ack in acks:
        if (ack.execution, ack.step, ack.sha256) in seen:
            continue
        seen.add((ack.execution, ack.step, ack.sha256))
        stored = history.get(ack.execution, {}).get(ack.step)
        if stored is None:
            found.append(
                Violation(LOST, ack.execution, f"step {ack.step} (attempt {ack.attempt}) is missing")
            )
        elif stored.sha256 != ack.sha256:
            found.append(
                Violation(
                    LOST,
                    ack.execution,
                    f"step {ack.step}: stored sha256 {stored.sha256[:12]} (attempt {stored.attempt}) is not "
                    f"the acknowledged {ack.sha256[:12]} (attempt {ack.attempt})",
                )
            )
        if (ack.step, ack.attempt, ack.sha256) not in audited.get(ack.execution, set()):
            found.append(
                Violation(
                    LOST,
                    ack.execution,
                    f"step {ack.step}: no audit row for attempt {ack.attempt} with sha256 {ack.sha256[:12]}",
                )
            )
    return found


def check_workload_history(
    name: str,
    steps: int | None,
    history: Mapping[int, StoredCheckpoint],
    audit: Sequence[AuditRecord],
    expected: Callable[[int], Any],
) -> list[Violation]:
    """For a workload in a real container, whose acknowledgements only its process saw: it moves to step
    k+1 only once step k was acknowledged, so its history must be steps 1..m without a gap (m = ``steps``
    once it finished; None: it has not, any m), each in the history and the audit trail with the sha256
    of ``expected(k)`` (its state is a function of the step alone)."""
    found = []
    last = steps if steps is not None else max(history, default=0)
    audited = {(r.step, r.hash) for r in audit if r.kind == "checkpoint"}
    for step in range(1, last + 1):
        sha = digest(expected(step))
        stored = history.get(step)
        if stored is None:
            found.append(Violation(LOST, name, f"step {step} is missing"))
        elif stored.sha256 != sha:
            found.append(
                Violation(LOST, name, f"step {step}: stored sha256 {stored.sha256[:12]} is not {sha[:12]}")
            )
        if (step, sha) not in audited:
            found.append(Violation(LOST, name, f"step {step}: no audit row with sha256 {sha[:12]}"))
    extra = sorted(set(history) - set(range(1, last + 1)))
    if extra:
        found.append(Violation(LOST, name, f"steps the workload never wrote: {extra[:10]}"))
    return found


def check_no_stale_ack(
    acks: Iterable[Ack], events: Sequence[PodEvent], audit: Mapping[str, Sequence[AuditRecord]]
) -> list[Violation]:
    """No write is acknowledged after its attempt was fenced.

    Two sources: (1) the workers' logs against the pod watch: the operator fences attempt n in the
    store before it creates attempt n+1's pod, so a write *sent* after any later attempt's pod was seen
    must be refused; (2) the store's own audit order: no checkpoint row of attempt n after the
    ``started`` row of a later attempt (both are taken under the execution row's lock, so ``seq``
    follows the order they happened in).
    """
    found = []
    newer_seen: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for event in events:
        owner = pod_attempt(event.name)
        if owner is not None and event.type == "ADDED":
            newer_seen[owner[0]].append((owner[1], event.at))
    for ack in acks:
        fenced_at = min((at for attempt, at in newer_seen.get(ack.execution, []) if attempt > ack.attempt),
                        default=None)  # fmt: skip
        if fenced_at is not None and ack.sent_at > fenced_at:
            found.append(
                Violation(
                    STALE,
                    ack.execution,
                    f"step {ack.step} of attempt {ack.attempt} sent {ack.sent_at - fenced_at:.3f}s after a "
                    "later attempt's pod appeared, and acknowledged",
                )
            )
    for name, rows in audit.items():
        started = 0
        for row in sorted(rows, key=lambda r: r.seq):
            if row.kind == "started" and row.attempt is not None:
                started = max(started, row.attempt)
            elif row.kind == "checkpoint" and row.attempt is not None and row.attempt < started:
                found.append(
                    Violation(
                        STALE,
                        name,
                        f"audit seq {row.seq}: checkpoint of step {row.step} by attempt {row.attempt} "
                        f"after attempt {started} started",
                    )
                )
    return found


def check_resumes(resumes: Iterable[Resume], acks: Sequence[Ack]) -> list[Violation]:
    """A new attempt resumes from the last acknowledged checkpoint: no acknowledged step of an older
    attempt lies past ``STRATA_RESUME_STEP`` or past the state it loads, and on an attempt's first take-over
    the loaded state is the one of that step, as it was acknowledged."""
    found = []
    by_execution: dict[str, list[Ack]] = defaultdict(list)
    for ack in acks:
        by_execution[ack.execution].append(ack)
    for resume in resumes:
        mine = by_execution.get(resume.execution, [])
        older = [a.step for a in mine if a.attempt < resume.attempt]
        last = max(older, default=None)
        for label, step in (
            ("STRATA_RESUME_STEP", resume.resume_step),
            ("the loaded state", resume.loaded_step),
        ):
            if last is not None and (step is None or step < last):
                found.append(
                    Violation(
                        RESUMED,
                        resume.execution,
                        f"attempt {resume.attempt}: {label} is step {step}, but step {last} was acknowledged",
                    )
                )
        if not resume.first_for_attempt:
            continue
        if resume.resume_step != resume.loaded_step:
            found.append(
                Violation(
                    RESUMED,
                    resume.execution,
                    f"attempt {resume.attempt}: STRATA_RESUME_STEP {resume.resume_step} but the loaded state "
                    f"is of step {resume.loaded_step}",
                )
            )
        shas = {a.sha256 for a in mine if a.step == resume.loaded_step}
        if shas and resume.loaded_sha256 not in shas:
            found.append(
                Violation(
                    RESUMED,
                    resume.execution,
                    f"attempt {resume.attempt}: the loaded state of step {resume.loaded_step} is not the one "
                    "that was acknowledged",
                )
            )
    return found


def check_no_internal_error(answers: Sequence[str]) -> list[Violation]:
    """The checkpoint API never answers 500: whatever is away (the operator's store, the API server) is a
    503 the SDK retries; a 500 is a bug, and the SDK gives up on it."""
    if not answers:
        return []
    return [Violation(INTERNAL, "*", f"{len(answers)} answers 500, e.g. {answers[0]}")]


def check_metrics(
    expected: int,
    gauge: Mapping[str, float],
    store_counts: Mapping[str, int],
    api_ok: float,
    acks_since_start: int,
) -> list[Violation]:
    """The last operator process's metrics agree with the store and with the workers.

    * ``stratarouter_executions{phase}`` is rebuilt from the API server on every start, so it must show
      every Execution Succeeded, as many as the store has ``completed`` (and nothing in another phase);
    * ``stratarouter_api_requests_total{route="/v1/checkpoint",code="200"}`` counts since that process
      started: it must equal the 200s the workers received for writes they sent after it started.
    """
    found = []
    succeeded = gauge.get("Succeeded", 0.0)
    others = {phase: v for phase, v in gauge.items() if phase != "Succeeded" and v}
    completed = store_counts.get("completed", 0)
    if succeeded != expected or completed != expected or others:
        found.append(
            Violation(
                METRICS,
                "*",
                f"gauge Succeeded {succeeded:g} (others {others}), store completed {completed}, "
                f"Executions {expected}",
            )
        )
    if api_ok != acks_since_start:
        found.append(
            Violation(
                METRICS,
                "*",
                f"the operator counted {api_ok:g} checkpoint 200s since it started; the workers got "
                f"{acks_since_start}",
            )
        )
    return found
