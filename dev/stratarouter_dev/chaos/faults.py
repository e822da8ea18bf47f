"""The faults of a chaos run: when each is injected (a seeded schedule) and how.

Kinds: the operator SIGKILLed (and started again, as its Deployment would), PostgreSQL restarted with
``pg_ctl restart -m fast`` and ``-m immediate`` (crash recovery), kube-apiserver restarted, and the
operator cut off from PostgreSQL for a while through the loopback proxy its DSN points at. The
schedule is pure, so a seed replays the same run's timing.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from stratarouter_dev.operator_process import OperatorProcess
from stratarouter_dev.tcpproxy import CutMode, TcpProxy

OPERATOR_KILL = "operator SIGKILL"
PG_FAST = "PostgreSQL restart -m fast"
PG_IMMEDIATE = "PostgreSQL restart -m immediate"
APISERVER = "kube-apiserver restart"
PG_CUT = "operator cut off from PostgreSQL"
KINDS = (OPERATOR_KILL, PG_FAST, PG_IMMEDIATE, APISERVER, PG_CUT)
APISERVER_READY_SECONDS = 180.0
"""How long a restarted kube-apiserver may take to be ready: on 2 cores shared with other test runs it
took more than a minute once (its post-start hooks wait on etcd)."""


@dataclass(frozen=True)
class FaultPlan:
    """How many faults of each kind, over which part of the run (seconds after its start)."""

    operator_kills: int = 20
    postgres_fast: int = 1
    postgres_immediate: int = 1
    apiserver_restarts: int = 2
    cuts: int = 1
    cut_seconds: float = 10.0
    cut_mode: CutMode = "blackhole"
    start: float = 10.0
    end: float = 300.0


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str


def schedule(plan: FaultPlan, seed: int) -> list[Fault]:
    """Random moments in ``[start, end]``, sorted; PostgreSQL's fast restarts come before its immediate
    ones (the issue's order: fast, then immediate)."""
    rng = random.Random(seed)

    def moments(count: int) -> list[float]:
        return sorted(rng.uniform(plan.start, plan.end) for _ in range(count))

    faults = [Fault(at, OPERATOR_KILL) for at in moments(plan.operator_kills)]
    restarts = moments(plan.postgres_fast + plan.postgres_immediate)
    faults += [Fault(at, PG_FAST) for at in restarts[: plan.postgres_fast]]
    faults += [Fault(at, PG_IMMEDIATE) for at in restarts[plan.postgres_fast :]]
    faults += [Fault(at, APISERVER) for at in moments(plan.apiserver_restarts)]
    faults += [Fault(at, PG_CUT) for at in moments(plan.cuts)]
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Injected:
    """One fault as it happened: when (seconds into the run), how long it took, and what it did."""

    kind: str
    at: float
    seconds: float
    detail: str = ""


class Injector(threading.Thread):
    """Injects a schedule's faults at their moments, one after the other, in a thread of its own."""

    def __init__(
        self,
        faults: list[Fault],
        plan: FaultPlan,
        operator: OperatorProcess,
        cluster: Any,
        postgres: Any,
        proxy: TcpProxy,
        seed: int,
    ) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.faults, self.plan, self.operator = faults, plan, operator
        self.cluster, self.postgres, self.proxy = cluster, postgres, proxy
        self.started = time.monotonic()
        self.done: list[Injected] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.release = threading.Event()
        self._rng = random.Random(seed)

    def start(self) -> None:
        """Start the clock of the schedule now."""
        self.started = time.monotonic()
        super().start()

    def run(self) -> None:
        try:
            for fault in self.faults:
                wait = self.started + fault.at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                began = time.monotonic()
                detail = self.inject(fault.kind)
                at = began - self.started
                self.done.append(Injected(fault.kind, at, time.monotonic() - began, detail))
                print(f"    {at:6.1f}s  {fault.kind}: {detail}", flush=True)
        except BaseException as exc:  # reported by the run, which then fails
            self.error = exc
        finally:
            self.finished.set()
        # A component restarted with die_with_parent is tied to the thread that started it (the kernel's
        # parent-death signal follows the thread): this one lives until the run has stopped the cluster.
        self.release.wait()

    def inject(self, kind: str) -> str:
        if kind == OPERATOR_KILL:
            self.operator.kill()
            down = time.monotonic()
            time.sleep(self._rng.uniform(0.0, 1.0))  # a restart delay, as a kubelet's
            self.operator.start()
            took = time.monotonic() - down
            self.operator.downtime += took
            return f"generation {self.operator.generation} healthy {took:.1f}s after the kill"
        if kind in (PG_FAST, PG_IMMEDIATE):
            mode = "fast" if kind == PG_FAST else "immediate"
            began = time.monotonic()
            self.postgres.restart(mode)
            return f"accepting connections again after {time.monotonic() - began:.1f}s"
        if kind == APISERVER:
            began = time.monotonic()
            self.cluster.restart("kube-apiserver", timeout=APISERVER_READY_SECONDS)
            return f"ready again after {time.monotonic() - began:.1f}s"
        if kind == PG_CUT:
            self.proxy.cut(self.plan.cut_mode)
            time.sleep(self.plan.cut_seconds)
            self.proxy.restore()
            return f"{self.plan.cut_seconds:g}s ({self.plan.cut_mode})"
        raise ValueError(f"unknown fault {kind!r}")

    def counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.done)
