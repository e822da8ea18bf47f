"""The chaos suite's invariant checks (no I/O): fed with synthetic timelines, each one that breaks an
invariant must be reported, and the clean version of the same story must not be."""

from __future__ import annotations

from stratarouter_dev.chaos import invariants as inv
from stratarouter_dev.chaos.faults import (
    OPERATOR_KILL,
    PG_FAST,
    PG_IMMEDIATE,
    FaultPlan,
    schedule,
)
from stratarouter_dev.chaos.metrics import samples
from stratarouter_dev.chaos.records import (
    Ack,
    AuditRecord,
    PodEvent,
    Resume,
    StoredCheckpoint,
    digest,
    pod_attempt,
    state_of,
    workload_state,
)
from stratarouter_dev.chaos.run import ChaosConfig

EX = "chaos-0001"


def ack(step: int, attempt: int = 1, *, sent_at: float = 100.0, zombie: bool = False) -> Ack:
    sha = digest(state_of(EX, step, attempt))
    return Ack(EX, attempt, f"uid-{attempt}", step, sha, sent_at, sent_at + 0.01, zombie)


def stored(step: int, attempt: int = 1) -> StoredCheckpoint:
    return StoredCheckpoint(step, attempt, digest(state_of(EX, step, attempt)))


def audited(seq: int, step: int, attempt: int = 1) -> AuditRecord:
    return AuditRecord(seq, "checkpoint", step, attempt, digest(state_of(EX, step, attempt)))


def started(seq: int, attempt: int) -> AuditRecord:
    return AuditRecord(seq, "started", None, attempt, None)


def pod(
    rv: int, kind: str, attempt: int, phase: str = "Running", *, at: float = 0.0, uid: str = ""
) -> PodEvent:
    return PodEvent(rv, at or float(rv), kind, f"{EX}-a{attempt}", uid or f"uid-{attempt}", phase, False)


# -- records -------------------------------------------------------------------------------------------


def test_the_state_names_its_writer_so_another_attempt_writes_other_bytes() -> None:
    assert digest(state_of(EX, 3, 1)) == digest(state_of(EX, 3, 1))
    assert digest(state_of(EX, 3, 1)) != digest(state_of(EX, 3, 2))
    sizes = {len(state_of(EX, step, 1)["filler"]) for step in range(60)}
    assert min(sizes) < 1000
    assert max(sizes) > 4096


def test_pod_names_give_execution_and_attempt() -> None:
    assert pod_attempt("chaos-0001-a12") == ("chaos-0001", 12)
    assert pod_attempt("some-other-pod") is None


# -- every Execution ends Succeeded ------------------------------------------------------------------------


def test_an_execution_not_succeeded_in_the_api_or_not_completed_in_the_store_is_reported() -> None:
    names = ["a", "b", "c"]
    phases = {"a": "Succeeded", "b": "Running", "c": "Succeeded"}
    store = {"a": "completed", "b": "running", "c": "running"}
    found = inv.check_succeeded(names, phases, store)
    assert [v.execution for v in found] == ["b", "c"]
    assert inv.check_succeeded(["a"], phases, store) == []
    assert inv.check_succeeded(["missing"], phases, store)[0].detail == "phase None, store status None"


# -- never two live pods -----------------------------------------------------------------------------------


def test_a_replacement_created_after_the_old_pod_failed_is_fine() -> None:
    events = [
        pod(1, "ADDED", 1),
        pod(2, "MODIFIED", 1, "Failed"),
        pod(3, "ADDED", 2),
        pod(4, "DELETED", 1, "Failed"),
    ]
    assert inv.check_one_live_pod(events) == []


def test_a_replacement_created_while_the_old_pod_runs_is_reported_once() -> None:
    events = [pod(1, "ADDED", 1), pod(2, "ADDED", 2), pod(3, "MODIFIED", 2), pod(4, "MODIFIED", 1, "Failed")]
    found = inv.check_one_live_pod(events)
    assert len(found) == 1
    assert found[0].invariant == inv.DUPLICATE_PODS
    assert "resourceVersion 2" in found[0].detail


def test_a_pod_being_deleted_still_counts_as_live_until_it_is_gone() -> None:
    deleting = PodEvent(2, 2.0, "MODIFIED", f"{EX}-a1", "uid-1", "Running", True)
    events = [pod(1, "ADDED", 1), deleting, pod(3, "ADDED", 2)]
    assert len(inv.check_one_live_pod(events)) == 1
    gone = [pod(1, "ADDED", 1), deleting, pod(3, "DELETED", 1), pod(4, "ADDED", 2)]
    assert inv.check_one_live_pod(gone) == []


def test_the_timeline_is_read_in_resource_version_order_not_arrival_order() -> None:
    # delivered out of order (e.g. a relist): by resourceVersion the old pod failed first
    events = [pod(3, "ADDED", 2), pod(1, "ADDED", 1), pod(2, "MODIFIED", 1, "Failed")]
    assert inv.check_one_live_pod(events) == []


def test_the_same_name_with_a_new_uid_is_another_pod() -> None:
    events = [pod(1, "ADDED", 2, uid="x"), pod(2, "ADDED", 2, uid="y")]
    assert len(inv.check_one_live_pod(events)) == 1


# -- acknowledged checkpoints are kept, byte for byte ------------------------------------------------


def test_acked_checkpoints_present_with_their_hash_pass() -> None:
    acks = [ack(0), ack(1), ack(1)]  # a retried write acknowledged twice
    history = {EX: {0: stored(0), 1: stored(1)}}
    audit = {EX: [audited(1, 0), audited(2, 1)]}
    assert inv.check_acked_kept(acks, history, audit) == []


def test_a_missing_acked_checkpoint_is_lost() -> None:
    found = inv.check_acked_kept([ack(0), ack(1)], {EX: {0: stored(0)}}, {EX: [audited(1, 0), audited(2, 1)]})
    assert [v.invariant for v in found] == [inv.LOST]
    assert "step 1 (attempt 1) is missing" in found[0].detail


def test_an_acked_checkpoint_overwritten_by_another_attempt_is_lost() -> None:
    history = {EX: {4: stored(4, attempt=2)}}
    audit = {EX: [audited(1, 4, attempt=1), audited(2, 4, attempt=2)]}
    found = inv.check_acked_kept([ack(4, attempt=1)], history, audit)
    assert len(found) == 1
    assert "is not the acknowledged" in found[0].detail


def test_a_checkpoint_whose_audit_row_is_missing_or_differs_is_reported() -> None:
    history = {EX: {0: stored(0)}}
    assert len(inv.check_acked_kept([ack(0)], history, {EX: []})) == 1
    wrong = AuditRecord(1, "checkpoint", 0, 1, "0" * 64)
    assert len(inv.check_acked_kept([ack(0)], history, {EX: [wrong]})) == 1


def test_the_example_workloads_states_are_computed_as_it_computes_them() -> None:
    state: dict[str, object] = {"total": 0, "done": []}
    for step in range(1, 25):  # examples/workload.py's do_step
        state = {"total": state["total"] + step, "done": [*state["done"], step][-10:]}  # type: ignore[operator,misc]
        assert workload_state(step) == state


def test_a_real_node_workloads_history_must_hold_exactly_its_steps_with_their_states() -> None:
    def row(step: int, state: object) -> StoredCheckpoint:
        return StoredCheckpoint(step, 1, digest(state))

    good = {k: row(k, workload_state(k)) for k in range(1, 4)}
    audit = [AuditRecord(k, "checkpoint", k, 1, digest(workload_state(k))) for k in range(1, 4)]
    assert inv.check_workload_history(EX, 3, good, audit, workload_state) == []
    missing = {k: v for k, v in good.items() if k != 2}
    assert len(inv.check_workload_history(EX, 3, missing, audit, workload_state)) == 1
    wrong = {**good, 3: row(3, {"total": 0, "done": []})}
    assert len(inv.check_workload_history(EX, 3, wrong, audit, workload_state)) == 1
    assert len(inv.check_workload_history(EX, 3, good, audit[:2], workload_state)) == 1
    extra = {**good, 9: row(9, workload_state(9))}
    assert "never wrote: [9]" in inv.check_workload_history(EX, 3, extra, audit, workload_state)[0].detail
    # not finished (None): any prefix 1..m is fine, a gap below its newest step is not
    assert inv.check_workload_history(EX, None, good, audit, workload_state) == []
    assert len(inv.check_workload_history(EX, None, missing, audit, workload_state)) == 1


# -- no write acknowledged after its attempt was fenced -----------------------------------------------------


def test_a_zombie_write_sent_before_the_replacement_existed_may_be_acked() -> None:
    events = [
        pod(1, "ADDED", 1, at=10.0),
        pod(2, "MODIFIED", 1, "Failed", at=11.0),
        pod(3, "ADDED", 2, at=12.0),
    ]
    acks = [ack(5, sent_at=11.5, zombie=True), ack(6, attempt=2, sent_at=13.0)]
    audit = {EX: [started(1, 1), audited(2, 5), started(3, 2), audited(4, 6, attempt=2)]}
    assert inv.check_no_stale_ack(acks, events, audit) == []


def test_a_write_sent_after_the_replacement_pod_appeared_and_acked_is_stale() -> None:
    events = [pod(1, "ADDED", 1, at=10.0), pod(3, "ADDED", 2, at=12.0)]
    found = inv.check_no_stale_ack([ack(6, sent_at=12.5, zombie=True)], events, {})
    assert [v.invariant for v in found] == [inv.STALE]
    assert "0.500s after" in found[0].detail


def test_a_checkpoint_of_an_older_attempt_after_a_newer_one_started_in_the_audit_is_stale() -> None:
    audit = {EX: [started(1, 1), audited(2, 5), started(3, 2), audited(4, 6, attempt=1)]}
    found = inv.check_no_stale_ack([], [], audit)
    assert len(found) == 1
    assert "audit seq 4" in found[0].detail


# -- a new attempt resumes from the last acknowledged checkpoint ---------------------------------------------


def resume(
    attempt: int, env: int | None, loaded: int | None, sha: str | None, *, first: bool = True
) -> Resume:
    return Resume(EX, attempt, f"uid-{attempt}", env, loaded, sha, first, 50.0)


def test_resuming_at_the_last_acked_step_with_its_state_passes() -> None:
    acks = [ack(0), ack(1), ack(2)]
    assert inv.check_resumes([resume(1, None, None, None), resume(2, 2, 2, acks[2].sha256)], acks) == []


def test_resuming_before_the_last_acked_step_loses_progress() -> None:
    acks = [ack(0), ack(1), ack(2)]
    found = inv.check_resumes([resume(2, 1, 1, acks[1].sha256)], acks)
    assert {v.invariant for v in found} == {inv.RESUMED}
    assert len(found) == 2  # both the env and the loaded state are behind step 2


def test_loading_another_state_than_the_one_acknowledged_is_reported() -> None:
    acks = [ack(0), ack(1)]
    found = inv.check_resumes([resume(2, 1, 1, digest({"other": True}))], acks)
    assert len(found) == 1
    assert "not the one that was acknowledged" in found[0].detail


def test_resume_step_and_loaded_step_must_agree_on_the_first_take_over_only() -> None:
    acks = [ack(0), ack(1)]
    found = inv.check_resumes([resume(2, 1, 3, None)], acks)
    assert len(found) == 1
    assert "STRATA_RESUME_STEP 1" in found[0].detail
    assert inv.check_resumes([resume(2, 1, 3, None, first=False)], acks) == []


# -- metrics agree with the store -------------------------------------------------------------------


def test_metrics_that_agree_pass_and_any_disagreement_is_reported() -> None:
    assert inv.check_metrics(3, {"Succeeded": 3.0, "Running": 0.0}, {"completed": 3}, 40.0, 40) == []
    assert len(inv.check_metrics(3, {"Succeeded": 2.0, "Running": 1.0}, {"completed": 3}, 40.0, 40)) == 1
    assert len(inv.check_metrics(3, {"Succeeded": 3.0}, {"completed": 2, "running": 1}, 40.0, 40)) == 1
    assert len(inv.check_metrics(3, {"Succeeded": 3.0}, {"completed": 3}, 41.0, 40)) == 1


def test_any_500_answer_is_reported() -> None:
    assert inv.check_no_internal_error([]) == []
    found = inv.check_no_internal_error(
        ["GET /v1/state: InternalError", "POST /v1/checkpoint: InternalError"]
    )
    assert len(found) == 1
    assert "2 answers 500" in found[0].detail


def test_prometheus_samples_are_parsed_with_their_labels() -> None:
    text = (
        "# HELP stratarouter_executions Executions\n"
        'stratarouter_executions{phase="Succeeded"} 200.0\n'
        'stratarouter_api_requests_total{code="200",route="/v1/checkpoint"} 1234.0\n'
        'stratarouter_api_requests_created{code="200",route="/v1/checkpoint"} 1.7e9\n'
    )
    assert samples(text, "stratarouter_executions") == [({"phase": "Succeeded"}, 200.0)]
    assert samples(text, "stratarouter_api_requests_total") == [
        ({"code": "200", "route": "/v1/checkpoint"}, 1234.0)
    ]


# -- the plan of a run ------------------------------------------------------------------------------------


def test_the_schedule_is_seeded_inside_its_window_and_restarts_postgres_fast_before_immediate() -> None:
    plan = FaultPlan(operator_kills=20, start=10.0, end=200.0)
    faults = schedule(plan, seed=7)
    assert faults == schedule(plan, seed=7)
    assert faults != schedule(plan, seed=8)
    assert all(10.0 <= f.at <= 200.0 for f in faults)
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    assert sum(f.kind == OPERATOR_KILL for f in faults) == 20
    kinds = [f.kind for f in faults if f.kind in (PG_FAST, PG_IMMEDIATE)]
    assert kinds == [PG_FAST, PG_IMMEDIATE]


def test_the_config_plans_crashes_for_its_share_of_executions_inside_their_steps() -> None:
    plans = ChaosConfig(executions=40, steps=30, crash_share=0.25, seed=3).plans()
    crashing = [p for p in plans if p.crash_at is not None]
    assert len(plans) == 40
    assert len({p.name for p in plans}) == 40
    assert len(crashing) == 10
    assert all(2 <= (p.crash_at or 0) < 28 for p in crashing)
