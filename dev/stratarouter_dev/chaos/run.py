"""One chaos run from start to verdict: infrastructure, Executions, workers, faults, checks, summary."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratarouter_dev.chaos import invariants as inv
from stratarouter_dev.chaos.faults import KINDS, FaultPlan, Injected, Injector, schedule
from stratarouter_dev.chaos.metrics import samples
from stratarouter_dev.chaos.podwatch import PodTimeline
from stratarouter_dev.chaos.records import (
    AuditRecord,
    StoredCheckpoint,
    Violation,
    digest,
    workload_state,
)
from stratarouter_dev.chaos.workers import Journal, WorkerPlan, Workers
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.operator_process import OperatorProcess, operator_environment
from stratarouter_dev.tcpproxy import TcpProxy
from stratarouter_runtime.operator.resources.base import API_VERSION, GROUP_PATH, KIND_EXECUTION

TEMPLATE = {"spec": {"containers": [{"name": "work", "image": "example.invalid/work:1"}]}}
DRAIN_SECONDS = 240.0
"""After the last wave's expected end (faults included): how long every Execution has to succeed."""


@dataclass(frozen=True)
class ChaosConfig:
    """What to run: Executions (in waves), their steps and pace, the share that crash, the faults."""

    executions: int = 200
    waves: int = 4
    wave_gap: float = 45.0
    steps: int = 60
    interval: float = 2.0
    crash_share: float = 0.15
    faults: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 1
    log_dir: Path | None = None
    real_node_executions: int = 0
    """Executions of ``examples/workload.py`` in real containers on the real node (its own SDK and token)."""
    real_node_steps: int = 60
    real_node_step_seconds: float = 1.0

    @property
    def expected_seconds(self) -> float:
        """About how long the last wave runs undisturbed (the faults' downtime comes on top)."""
        return (self.waves - 1) * self.wave_gap + self.steps * self.interval

    def plans(self) -> list[WorkerPlan]:
        rng = random.Random(self.seed)
        crashing = set(rng.sample(range(self.executions), round(self.executions * self.crash_share)))
        return [
            WorkerPlan(
                f"chaos-{i:04d}", self.steps, rng.randrange(2, self.steps - 2) if i in crashing else None
            )
            for i in range(self.executions)
        ]

    def real_names(self) -> list[str]:
        return [f"chaos-real-{i}" for i in range(self.real_node_executions)]


@dataclass
class ChaosResult:
    """The verdict and the numbers of the summary."""

    executions: int
    succeeded: int
    real_node: int
    real_node_restarts: int
    real_node_writes: int
    faults: list[Injected]
    crashes: int
    acks: int
    zombie_acks: int
    refusals: Counter[str]
    retries: Counter[str]
    violations: list[Violation]
    checks: dict[str, int]
    metrics_line: str
    watch_line: str
    seconds: float
    log_dir: Path

    @property
    def ok(self) -> bool:
        return not self.violations

    def fault_counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.faults)

    def summary(self) -> str:
        by_kind = self.fault_counts()
        faults = ", ".join(f"{kind} x{by_kind[kind]}" for kind in KINDS if by_kind[kind])
        stale = sum(1 for v in self.violations if v.invariant == inv.STALE)
        lost = sum(1 for v in self.violations if v.invariant == inv.LOST)
        duplicated = sum(1 for v in self.violations if v.invariant == inv.DUPLICATE_PODS)
        refusals = ", ".join(f"{k} {n}" for k, n in sorted(self.refusals.items())) or "none"
        lines = [
            f"Chaos summary ({self.seconds / 60:.1f} min, kwok nodes, real control plane and PostgreSQL)",
            f"  Executions run: {self.executions} (Succeeded: {self.succeeded}), {self.real_node} of them on "
            f"the real node (examples/workload.py in containers; restarts: {self.real_node_restarts})",
            f"  faults injected: {len(self.faults)} ({faults}); plus {self.crashes} pod crashes (exit 137) "
            "whose process wrote on as a zombie",
            f"  checkpoints acknowledged: {self.acks} to the kwok workers (to zombies before their fence: "
            f"{self.zombie_acks}), and {self.real_node_writes} written by the real-node workloads (audit "
            f"rows); writes refused: {refusals}",
            f"  lost: {lost}, duplicated pods: {duplicated}, stale writes accepted: {stale}",
            "  retried by the workers: "
            + (", ".join(f"{k} {n}" for k, n in self.retries.most_common(8)) or "nothing"),
            "  invariants: " + ", ".join(f"{name} {n} violation(s)" for name, n in self.checks.items()),
            f"  metrics: {self.metrics_line}",
            f"  pod watch: {self.watch_line}",
            f"  verdict: {'PASS' if self.ok else 'FAIL'}; logs (workers' journal, operator): {self.log_dir}",
        ]
        by_invariant: dict[str, list[Violation]] = {}
        for violation in self.violations:
            by_invariant.setdefault(violation.invariant, []).append(violation)
        for found in by_invariant.values():  # the first few of each kind
            lines += [f"  ! {violation}" for violation in found[:5]]
            if len(found) > 5:
                lines.append(f"  ! ... and {len(found) - 5} more [{found[0].invariant}]")
        return "\n".join(lines)


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def execution_body(name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """An Execution (on kwok by default); no retention, so every checkpoint is kept and can be checked."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_EXECUTION,
        "metadata": {"name": name},
        "spec": {"template": template or TEMPLATE, "recovery": {"backoffSeconds": 0, "maxRestarts": 10}},
    }


def real_node_template(steps: int, step_seconds: float) -> dict[str, Any]:
    """The example workload in a real container on the real node, counting ``steps`` steps."""
    from stratarouter_dev import images
    from stratarouter_dev.node import pod_placement

    env = {"STEPS": str(steps), "STEP_SECONDS": str(step_seconds)}
    container = {
        "name": "workload",
        "image": images.WORKLOAD,
        "imagePullPolicy": "Never",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"limits": {"memory": "128Mi"}},
    }
    spec = {**pod_placement(), "restartPolicy": "Never", "terminationGracePeriodSeconds": 5}
    return {"spec": {**spec, "containers": [container]}}


def create_execution(
    api: KubeApi, namespace: str, name: str, deadline: float, template: dict[str, Any] | None = None
) -> None:
    """POST it, retried while the API server is away (a restart may be under way)."""
    body = execution_body(name, template)
    while True:
        try:
            api.request("POST", f"{GROUP_PATH}/namespaces/{namespace}/executions", body)
            return
        except KubeApiError as exc:
            if exc.status == 409:
                return
            if exc.status < 500 or time.time() > deadline:
                raise
        except OSError:
            if time.time() > deadline:
                raise
        time.sleep(0.5)


def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Start everything, run the Executions under the faults, check the invariants; always clean up."""
    from stratarouter_dev.demo import NAMESPACE, Demo

    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="strata-chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    demo = Demo()
    proxy: TcpProxy | None = None
    operator: OperatorProcess | None = None
    timeline: PodTimeline | None = None
    injector: Injector | None = None
    journal = Journal(log_dir / "workers.jsonl")
    try:
        demo.start_infrastructure(real_node=config.real_node_executions > 0)
        demo.apply_crds()
        proxy = TcpProxy("127.0.0.1", demo.postgres.port).start()
        proxied = demo.postgres.dsn.replace(f":{demo.postgres.port}/", f":{proxy.port}/")
        say(f"The operator's store DSN points at the cuttable proxy: {proxied}")
        env = operator_environment(
            demo.cluster.kubeconfig, proxied, api_host=demo.api_host, STRATA_HANDLER_BACKOFF_SECONDS="0.5"
        )
        operator = OperatorProcess(env, NAMESPACE, log_dir / "operator.log", verbose=False)
        operator.start()
        timeline = PodTimeline(demo.api, NAMESPACE)
        timeline.start_and_wait()
        plan = dataclasses.replace(config.faults, end=min(config.faults.end, config.expected_seconds * 0.9))
        faults = schedule(plan, config.seed)
        injector = Injector(faults, plan, operator, demo.cluster, demo.postgres, proxy, config.seed)
        say(
            f"{config.executions} Executions in {config.waves} waves, {config.steps} checkpoints each every "
            f"{config.interval:g}s; {len(faults)} faults between {plan.start:.0f}s and {plan.end:.0f}s"
        )
        deadline = time.time() + config.expected_seconds + DRAIN_SECONDS
        phases = asyncio.run(
            drive(config, demo.api, operator.api_url, NAMESPACE, journal, injector, deadline)
        )
        injector.finished.wait(timeout=max(0.0, deadline - time.time()) + 600)
        if injector.error is not None:
            raise RuntimeError(f"a fault could not be injected: {injector.error!r}") from injector.error
        time.sleep(2.0)  # the last pod events
        timeline.close()
        say("Checking the invariants: the store's history and audit trail, the pod watch, the journal")
        restarts = sum(
            int(demo.execution(n).get("status", {}).get("restarts") or 0) for n in config.real_names()
        )
        history, audit, statuses = asyncio.run(read_store(demo.postgres.dsn, NAMESPACE, list(phases)))
        metrics = operator.metrics()
        return verdict(config, phases, statuses, history, audit, journal, timeline, injector, operator,
                       metrics, time.monotonic() - began, log_dir, restarts)  # fmt: skip
    finally:
        # Each step on its own: one that fails must not leave the cluster or PostgreSQL running.
        steps = [journal.close]
        if timeline is not None:
            steps.append(timeline.close)
        if operator is not None:
            steps.append(operator.stop)
        if proxy is not None:
            steps.append(proxy.stop)
        steps.append(demo.close)
        if injector is not None:
            steps.append(injector.release.set)
        for step in steps:
            try:
                step()
            except Exception as exc:  # reported; the next step still runs
                print(f"cleanup: {step.__qualname__} failed: {exc!r}", flush=True)


async def drive(
    config: ChaosConfig,
    api: KubeApi,
    api_url: str,
    namespace: str,
    journal: Journal,
    injector: Injector,
    deadline: float,
) -> dict[str, str | None]:
    """Create the waves and run every worker; the faults start with the first wave."""
    plans = config.plans()
    per_wave = -(-len(plans) // config.waves)
    results: dict[str, str | None] = {}

    def extension() -> float:
        return sum(f.seconds for f in injector.done)

    async with Workers(
        api, api_url, namespace, journal, interval=config.interval, deadline=deadline, extension=extension
    ) as workers:
        tasks: list[asyncio.Task[None]] = []

        async def one(plan: WorkerPlan) -> None:
            results[plan.name] = await workers.run(plan)

        async def real(name: str) -> None:
            template = real_node_template(config.real_node_steps, config.real_node_step_seconds)
            await workers.kube(create_execution, api, namespace, name, deadline, template)
            results[name] = await workers.wait_finished(name)

        injector.start()
        for wave in range(config.waves):
            target = injector.started + wave * config.wave_gap
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            if injector.error is not None:
                break
            batch = plans[wave * per_wave : (wave + 1) * per_wave]
            for plan in batch:
                await workers.kube(create_execution, api, namespace, plan.name, deadline)
                tasks.append(asyncio.create_task(one(plan)))
            if wave == 0:
                tasks += [asyncio.create_task(real(name)) for name in config.real_names()]
            say(f"wave {wave + 1}: {len(batch)} Executions created")
        pending = set(tasks)
        while pending:  # a fault that could not be injected ends the run now, not at the deadline
            _, pending = await asyncio.wait(pending, timeout=1.0)
            if injector.error is not None:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
    return results


async def read_store(
    dsn: str, namespace: str, names: list[str]
) -> tuple[dict[str, dict[int, StoredCheckpoint]], dict[str, list[AuditRecord]], dict[str, str | None]]:
    """Every Execution's history (sha256 recomputed from the stored state), audit trail and status,
    read directly from PostgreSQL (not through the proxy)."""
    from stratarouter_runtime.state import StateManager

    history: dict[str, dict[int, StoredCheckpoint]] = {}
    audit: dict[str, list[AuditRecord]] = {}
    statuses: dict[str, str | None] = {}
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        for name in names:
            execution_id = f"{namespace}/{name}"
            record = await store.get_execution(execution_id)
            statuses[name] = None if record is None else record.status.value
            if record is None:
                continue
            history[name] = {
                cp.step: StoredCheckpoint(cp.step, cp.attempt, digest(cp.state_data))
                for cp in await store.get_history(execution_id)
            }
            rows: list[AuditRecord] = []
            after: int | None = None
            while page := await store.get_audit(execution_id, after_seq=after, limit=1000):
                rows += [
                    AuditRecord(e.seq, e.kind, e.step, e.attempt, e.hash, e.at.timestamp()) for e in page
                ]
                after = page[-1].seq
            audit[name] = rows
    return history, audit, statuses


def verdict(
    config: ChaosConfig,
    phases: dict[str, str | None],
    statuses: dict[str, str | None],
    history: dict[str, dict[int, StoredCheckpoint]],
    audit: dict[str, list[AuditRecord]],
    journal: Journal,
    timeline: PodTimeline,
    injector: Injector,
    operator: OperatorProcess,
    metrics: str,
    seconds: float,
    log_dir: Path,
    real_node_restarts: int = 0,
) -> ChaosResult:
    """Run every invariant check and put the summary together."""
    real = config.real_names()
    names = [p.name for p in config.plans()] + real
    gauge = {labels.get("phase", ""): value for labels, value in samples(metrics, "stratarouter_executions")}
    api_ok = sum(
        value
        for labels, value in samples(metrics, "stratarouter_api_requests_total")
        if labels.get("route") == "/v1/checkpoint" and labels.get("code") == "200"
    )
    # The workers' 200s since the last start, plus the real-node workloads' (their 200s are only in their
    # own processes; each is one checkpoint row of the audit trail written since then).
    since = sum(1 for a in journal.acks if a.sent_at >= operator.started_at)
    since += sum(
        1 for n in real for r in audit.get(n, []) if r.kind == "checkpoint" and r.at >= operator.started_at
    )
    workload = [
        v
        for n in real
        for v in inv.check_workload_history(
            n,
            config.real_node_steps if phases.get(n) == "Succeeded" else None,
            history.get(n, {}),
            audit.get(n, []),
            workload_state,
        )
    ]
    store_counts = Counter(s for s in statuses.values() if s is not None)
    checks = {
        inv.SUCCEEDED: inv.check_succeeded(names, phases, statuses),
        inv.DUPLICATE_PODS: inv.check_one_live_pod(timeline.events),
        inv.LOST: inv.check_acked_kept(journal.acks, history, audit) + workload,
        inv.STALE: inv.check_no_stale_ack(journal.acks, timeline.events, audit),
        inv.RESUMED: inv.check_resumes(journal.resumes, journal.acks),
        inv.METRICS: inv.check_metrics(len(names), gauge, store_counts, api_ok, since),
        inv.INTERNAL: inv.check_no_internal_error(journal.internal_errors),
    }
    violations = [v for found in checks.values() for v in found]
    metrics_line = (
        f'operator generation {operator.generation}: stratarouter_executions{{phase="Succeeded"}} '
        f"{gauge.get('Succeeded', 0):g} vs store completed {store_counts.get('completed', 0)}; checkpoint "
        f"200s counted by it {api_ok:g} vs received by the workers for writes sent since it started {since}"
    )
    watch_line = (
        f"{len(timeline.events)} events, {timeline.reconnects} reconnects, {timeline.gaps} relists after a "
        "compacted resourceVersion"
    )
    return ChaosResult(
        executions=len(names),
        succeeded=sum(1 for n in names if phases.get(n) == "Succeeded"),
        real_node=len(real),
        real_node_writes=sum(1 for n in real for r in audit.get(n, []) if r.kind == "checkpoint"),
        real_node_restarts=real_node_restarts,
        faults=injector.done,
        crashes=journal.crashes,
        acks=len(journal.acks),
        zombie_acks=sum(1 for a in journal.acks if a.zombie),
        refusals=Counter(f"{r.status} {r.error}" for r in journal.refusals),
        retries=journal.retries,
        violations=violations,
        checks={name: len(found) for name, found in checks.items()},
        metrics_line=metrics_line,
        watch_line=watch_line,
        seconds=seconds,
        log_dir=log_dir,
    )


def discard_logs(result: ChaosResult) -> None:
    """Remove a passing run's logs (a failing run keeps them for the post-mortem)."""
    if result.ok:
        shutil.rmtree(result.log_dir, ignore_errors=True)
