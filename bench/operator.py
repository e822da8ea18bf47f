"""``make bench-operator``: recovery latency against the Job controller, and a many-Executions scale run.

Everything runs on one throwaway local cluster (kwok nodes and one real node) with a throwaway
PostgreSQL and the operator as a subprocess, set up exactly as ``stratarouter demo`` does. Numbers
are printed (and written to ``bench/results/operator.md``), never asserted.

1. Recovery: an Execution with ``recovery.backoffSeconds: 0``; ``--runs`` times its pod is marked Failed
   (exit 137) and we time pod Failed -> replacement pod exists (polled every 5 ms). Reference: the
   Kubernetes Job controller (``backoffLimit``) replacing a failed pod of a Job on the same cluster.
   kwok completes Job pods as soon as they run, so the Job pods are kept unscheduled (a node selector
   no node has) and marked Failed from Pending; the Job controller does not look at the earlier phase.
   On the real node (``--real-runs`` times each, default 20): the example workload in a real container,
   its process SIGKILLed from the host; we time death -> the replacement's first output line and, for the
   operator, death -> the first checkpoint of the resumed attempt in the store, with the stages between
   (old pod Failed, replacement created, its process started, Running). Reference: a Job of the same
   image on the same node, its pod's process SIGKILLed the same way, once per Job.
2. Scale: ``--executions`` Executions at once (several counts, e.g. ``300,1000``: one window each, on the
   same cluster, growing), each pod checkpointing once a second through the checkpoint API for
   ``--seconds`` (each new pod's first checkpoint, its token's review, is made before the window, so the
   window is the steady state): API latency p50/p99 (client side), status lag p50/p99 (checkpoint
   acknowledged -> the Execution's status shows that step, seen by a watch) against what the status patch
   budget promises (``STRATA_STATUS_PATCH_BUDGET``: each status lags about Executions / budget seconds,
   plus a stated tolerance), status patches/s against the budget, the CPU of kube-apiserver and of the
   operator per checkpoint, the operator's peak RSS, and API-server requests per checkpoint (the API
   server's own ``apiserver_request_total`` for the verbs the checkpoint path uses: TokenReview create,
   pod get, Execution get, Execution status patch). A checkpoint whose step the watch never shows (by the
   allowed lag plus ``GRACE_EXTRA_SECONDS`` after the window) counts as an infinite lag, so it can only
   push the p99 up, never hide.
   ``--apiserver-profile FILE`` also writes a CPU profile of kube-apiserver taken during the (first)
   window (``go tool pprof -top FILE``).

3. The checkpoint API against the SDK writing straight to PostgreSQL (``bench.api_path``, also
   ``make bench-api``): one pod's sequential checkpoints, p50/p99 and the ratio of rates, with an HTTP
   floor (``--api-writes`` per contender; ``--skip-api`` leaves it out).

The real node is started only when a real-node run is asked for (not with ``--skip-recovery`` or
``--skip-real``, nor with ``STRATA_REAL_NODE=0``).

    python -m bench.operator [--runs 50] [--real-runs 20] [--executions 1000|300,1000] [--seconds 30]
                             [--skip-scale] [--skip-recovery] [--skip-real]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster_probe import TEMPLATE, _children, _cpu_seconds, apiserver_counts, pct
from stratarouter_dev import images
from stratarouter_dev.cluster import real_node_wanted
from stratarouter_dev.demo import NAMESPACE, Demo, wait_until
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_dev.pods import fail_pod, is_running, request_pod_token, wait_for_pod
from stratarouter_runtime.operator.resources.base import GROUP_PATH

RESULTS = Path(__file__).parent / "results" / "operator.md"
LAG_TOLERANCE_SECONDS = 1.0
"""What the status lag may exceed the budget's promise by: a patch's round trip and the watch's delivery
on a busy API server, and the patch interval's granularity."""
LAG_TOLERANCE_SHARE = 0.1
"""... plus this share of the promise (the budget's token bucket and the stalest-first order are not
exact under load)."""
GRACE_EXTRA_SECONDS = 10.0
"""After the window the watch may take the promised lag plus this long to show every last step."""


def pod_exists(api: KubeApi, name: str) -> bool:
    return api.exists(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")


# -- 1. recovery latency -------------------------------------------------------------------------


def bench_recovery_operator(api: KubeApi, runs: int) -> list[float]:
    body = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": "recover"},
        "spec": {"template": TEMPLATE, "recovery": {"backoffSeconds": 0, "maxRestarts": runs + 5}},
    }
    api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", body)
    samples = []
    for attempt in range(1, runs + 1):
        pod = f"recover-a{attempt}"
        nxt = f"recover-a{attempt + 1}"
        wait_until(f"{pod} exists", partial(pod_exists, api, pod), timeout=60, every=0.005)
        wait_for_pod(api, NAMESPACE, pod, is_running, timeout=60, what="Running")
        fail_pod(api, NAMESPACE, pod, 137, reason="OOMKilled")
        failed_at = time.perf_counter()
        wait_until(f"{nxt} created", partial(pod_exists, api, nxt), timeout=60, every=0.005)
        samples.append(time.perf_counter() - failed_at)
        print(f"    operator run {attempt:>2}: {samples[-1] * 1000:7.1f} ms", flush=True)
    return samples


def bench_recovery_jobs(api: KubeApi, jobs: int) -> list[float]:
    """Jobs in parallel: fail each Job's first pod at once, time until the controller made the second."""
    selector = "batch.kubernetes.io/job-name"
    for i in range(jobs):
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"ref-{i}"},
            "spec": {
                "backoffLimit": 5,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": {"stratarouter.io/no-such-node": "true"},
                        "containers": [{"name": "work", "image": "example.invalid/work:1"}],
                    }
                },
            },
        }
        api.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body)

    def job_pods(i: int) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": f"{selector}=ref-{i}"})
        items: list[dict[str, Any]] = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods?{query}").get("items", [])
        return items

    firsts = {i: wait_until(f"job ref-{i}'s pod", partial(job_pods, i), timeout=60)[0] for i in range(jobs)}
    failed_at: dict[int, float] = {}
    for i, pod in firsts.items():
        name = pod["metadata"]["name"]
        patch = {
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "work",
                        "image": "example.invalid/work:1",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            }
        }
        api.request(
            "PATCH",
            f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/status",
            patch,
            content_type="application/merge-patch+json",
        )
        failed_at[i] = time.perf_counter()
    samples: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while len(samples) < jobs and time.monotonic() < deadline:
        for i in range(jobs):
            if i not in samples and len(job_pods(i)) >= 2:
                samples[i] = time.perf_counter() - failed_at[i]
        time.sleep(0.005)
    for i in range(jobs):
        api.request(
            "DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/ref-{i}?propagationPolicy=Background"
        )
    missing = jobs - len(samples)
    if missing:
        print(f"    {missing} Job(s) made no replacement within 120 s", flush=True)
    return list(samples.values())


# -- 1b. recovery on the real node ---------------------------------------------------------------------

REAL_STEPS = 1_000_000
"""Steps of the real-node workload: more than any benchmark run gets through, so only our kills end it."""
REAL_STEP_SECONDS = 0.05
SETTLE_SECONDS = 1.0
"""Pause between an attempt's first checkpoint (or first output) and its kill, for both paths alike."""
REAL_TIMEOUT = 120.0
STAGES = (
    ("failed", "old pod Failed in the API (kubelet reported it)"),
    ("created", "replacement pod created"),
    ("process", "replacement container's process started"),
    ("running", "replacement pod Running in the API"),
    ("output", "new process's first output line"),
    ("checkpoint", "first checkpoint of the new attempt stored"),
)


@dataclass
class Death:
    """One SIGKILL and what followed, each as seconds after the kill (``nan``: not applicable)."""

    killed_at: float
    load: float
    after: dict[str, float] = field(default_factory=dict)


@dataclass
class RealRecovery:
    operator: list[Death] = field(default_factory=list)
    jobs: list[Death] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None


class PodWatch(threading.Thread):
    """Watches the namespace's pods; records when each pod was first seen and first seen in each phase
    (``time.time()`` on arrival), so the bench never has to poll the API server for them."""

    def __init__(self, api: KubeApi) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.first: dict[tuple[str, str], float] = {}
        self.stop = False

    def run(self) -> None:
        ctx = ssl.create_default_context(cadata=self.api.ca_pem)
        rv = self.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["metadata"]["resourceVersion"]
        while not self.stop:
            query = urllib.parse.urlencode({"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5"})
            req = urllib.request.Request(f"{self.api.server}/api/v1/namespaces/{NAMESPACE}/pods?{query}")
            req.add_header("Authorization", f"Bearer {self.api.token}")
            try:
                with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
                    for line in resp:
                        now = time.time()
                        obj = json.loads(line)["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        name = obj["metadata"].get("name", "")
                        self.first.setdefault((name, "seen"), now)
                        self.first.setdefault((name, (obj.get("status") or {}).get("phase", "")), now)
            except OSError as exc:  # a dropped watch: resume from the last resourceVersion
                print(f"    pod watch: {exc}; watching again", flush=True)
                time.sleep(0.1)

    def when(self, pod: str, what: str, timeout: float = REAL_TIMEOUT) -> float:
        found: float = wait_until(f"pod {pod} {what}", lambda: self.first.get((pod, what)), timeout, 0.01)
        return found

    def named(self, prefix: str, but: str, timeout: float = REAL_TIMEOUT) -> str:
        """The first pod seen whose name starts with ``prefix``, other than ``but``."""

        def other() -> str | None:
            return next(
                (n for n, w in list(self.first) if w == "seen" and n.startswith(prefix) and n != but), None
            )

        found: str = wait_until(f"a pod {prefix}* other than {but}", other, timeout, 0.01)
        return found


def real_container(env: dict[str, str]) -> dict[str, Any]:
    """The example workload's container on the real node: it counts steps until it is killed."""
    env = {"STEPS": str(REAL_STEPS), "STEP_SECONDS": str(REAL_STEP_SECONDS), **env}
    return {
        "name": "workload",
        "image": images.WORKLOAD,
        "imagePullPolicy": "Never",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"limits": {"memory": "128Mi"}},
    }


def real_pod_spec(env: dict[str, str]) -> dict[str, Any]:
    return {
        **pod_placement(),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [real_container(env)],
    }


def workload_pid(node: RealNode, uid: str) -> int:
    """The host pid of the workload (workload.py) in the pod of UID ``uid``."""
    found: int = wait_until(
        f"the workload process of pod {uid}", lambda: node.process_of(uid, b"workload.py"), REAL_TIMEOUT, 0.01
    )
    return found


def process_started(pid: int) -> float:
    """When ``pid`` was created (its fork: runc's init, which then execs the workload), as
    ``time.time()``; /proc counts it in clock ticks (10 ms) since boot."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def cri_time(stamp: str) -> float:
    """An RFC 3339 timestamp with nanoseconds (the CRI log's, as the kubelet serves it) as epoch seconds."""
    head, _, rest = stamp.partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits) :] or "Z"
    base = datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    return base.timestamp() + (float(f"0.{digits}") if digits else 0.0)


def first_output(api: KubeApi, pod: str) -> float | None:
    """When the pod's workload printed its first line, by the container runtime's log timestamp."""
    try:
        text = api.text(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log?timestamps=true")
    except KubeApiError:
        return None
    for line in text.splitlines():
        stamp, _, message = line.partition(" ")
        if message.startswith("[workload]"):
            return cri_time(stamp)
    return None


def wait_first_output(api: KubeApi, pod: str) -> float:
    found: float = wait_until(
        f"pod {pod}'s first output", partial(first_output, api, pod), REAL_TIMEOUT, 0.05
    )
    return found


def pod_uid(api: KubeApi, pod: str) -> str:
    uid: str = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")["metadata"]["uid"]
    return uid


def kill(node: RealNode, api: KubeApi, pod: str) -> Death:
    """SIGKILL the workload of ``pod`` from the host; the death's moment is taken just before the call."""
    pid = workload_pid(node, pod_uid(api, pod))
    load = os.getloadavg()[0]
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    return Death(killed_at=killed_at, load=load)


def replacement_stages(
    death: Death, node: RealNode, api: KubeApi, watch: PodWatch, old: str, new: str
) -> None:
    """Fill in the stages every path has, once the replacement ``new`` of ``old`` runs."""
    death.after["failed"] = watch.when(old, "Failed") - death.killed_at
    death.after["created"] = watch.when(new, "seen") - death.killed_at
    death.after["running"] = watch.when(new, "Running") - death.killed_at
    death.after["process"] = process_started(workload_pid(node, pod_uid(api, new))) - death.killed_at
    death.after["output"] = wait_first_output(api, new) - death.killed_at


async def first_checkpoint_of(store: Any, execution_id: str, attempt: int, cursor: list[int]) -> float:
    """When the store wrote the first checkpoint of ``attempt`` (its created_at, PostgreSQL's now() of
    the writing transaction); polls the history every 20 ms from a little before ``cursor[0]`` (the
    highest step read so far, in case a resume rewrote a step), and moves the cursor on."""
    from stratarouter_runtime.state import ExecutionNotFound

    deadline = time.monotonic() + REAL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            rows = await store.get_history(execution_id, after_step=max(0, cursor[0] - 100), limit=1000)
        except ExecutionNotFound:
            rows = []
        for cp in rows:
            cursor[0] = max(cursor[0], cp.step)
            if cp.attempt == attempt:
                stored: float = cp.timestamp.timestamp()
                return stored
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no checkpoint of attempt {attempt} of {execution_id} within {REAL_TIMEOUT:.0f} s")


def bench_recovery_real_operator(demo: Demo, watch: PodWatch, runs: int) -> list[Death]:
    """One Execution on the real node; ``runs`` times its running attempt's process is SIGKILLed."""
    from stratarouter_runtime.state import StateManager

    api, node, name = demo.api, demo.cluster.node, "real"
    body = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": real_pod_spec({})},
            "recovery": {"backoffSeconds": 0, "maxRestarts": runs + 5},
        },
    }
    api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", body)
    execution_id = f"{NAMESPACE}/{name}"
    deaths: list[Death] = []

    async def run() -> None:
        async with StateManager(backend="postgresql", db_url=demo.postgres.dsn) as store:
            cursor = [0]
            await first_checkpoint_of(store, execution_id, 1, cursor)
            for attempt in range(1, runs + 1):
                old, new = f"{name}-a{attempt}", f"{name}-a{attempt + 1}"
                await asyncio.sleep(SETTLE_SECONDS)
                death = kill(node, api, old)
                stored = await first_checkpoint_of(store, execution_id, attempt + 1, cursor)
                replacement_stages(death, node, api, watch, old, new)
                death.after["checkpoint"] = stored - death.killed_at
                deaths.append(death)
                print(f"    operator run {attempt:>2}: {describe(death)}", flush=True)

    try:
        asyncio.run(run())
    except (RuntimeError, KubeApiError):
        print_current_pod(demo, name)
        raise
    finally:
        api.request("DELETE", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions/{name}")
        wait_until("the real-node Execution's pods gone", partial(no_pods_named, api, f"{name}-a"), 120, 0.5)
    return deaths


def print_current_pod(demo: Demo, name: str) -> None:
    """On a failed run: the Execution's phase and message, and the last lines of its current pod's log."""
    status = demo.execution(name).get("status") or {}
    print(f"    Execution {name}: phase {status.get('phase')}, {status.get('message')}", flush=True)
    pod = status.get("podName")
    if pod:
        try:
            lines = demo.api.text(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/log").splitlines()[-20:]
        except KubeApiError as exc:
            lines = [str(exc)]
        print(f"    last lines of {pod}'s log:\n      " + "\n      ".join(lines), flush=True)


def pods_named(api: KubeApi, prefix: str) -> list[str]:
    items = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods").get("items", [])
    return [p["metadata"]["name"] for p in items if p["metadata"]["name"].startswith(prefix)]


def no_pods_named(api: KubeApi, prefix: str) -> bool:
    return not pods_named(api, prefix)


def bench_recovery_real_jobs(demo: Demo, watch: PodWatch, runs: int) -> list[Death]:
    """``runs`` Jobs on the real node, one after the other: each Job's first pod's process is SIGKILLed
    once, and we time the Job controller's replacement. One failure per Job, so each replacement waits
    the controller's first backoff step (10 s), never the longer ones of repeated failures."""
    api, node = demo.api, demo.cluster.node
    deaths: list[Death] = []
    for i in range(1, runs + 1):
        job = f"real-job-{i}"
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job},
            "spec": {
                # Every failure counts against backoffLimit and is retried: the default pod failure
                # policy (a podFailurePolicy rule with action Count would do the same).
                "backoffLimit": 6,
                "template": {"spec": real_pod_spec({"STRATA_EXECUTION_ID": job})},
            },
        }
        api.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body)
        old = watch.named(f"{job}-", but="")
        wait_first_output(api, old)
        time.sleep(SETTLE_SECONDS)
        death = kill(node, api, old)
        new = watch.named(f"{job}-", but=old)
        replacement_stages(death, node, api, watch, old, new)
        death.after["checkpoint"] = float("nan")
        deaths.append(death)
        print(f"    Job run {i:>2}: {describe(death)}", flush=True)
        api.request(
            "DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}?propagationPolicy=Background"
        )
        wait_until(f"{job}'s pods gone", partial(no_pods_named, api, f"{job}-"), 120, 0.5)
    return deaths


def bench_recovery_real(demo: Demo, runs: int) -> RealRecovery:
    real = RealRecovery(load_before=os.getloadavg())
    watch = PodWatch(demo.api)
    watch.start()
    try:
        print(f"\n==> Recovery on the real node (operator): {runs} SIGKILLs", flush=True)
        real.operator = bench_recovery_real_operator(demo, watch, runs)
        print(f"\n==> Recovery on the real node (Job controller): {runs} Jobs, one SIGKILL each", flush=True)
        real.jobs = bench_recovery_real_jobs(demo, watch, runs)
    finally:
        watch.stop = True
    real.load_after = os.getloadavg()
    real.finished = datetime.now(UTC)
    return real


def describe(death: Death) -> str:
    parts = [
        f"{key} {death.after[key] * 1000:.0f}"
        for key, _ in STAGES
        if not math.isnan(death.after.get(key, float("nan")))
    ]
    return ", ".join(parts) + f" ms after the kill (load {death.load:.2f})"


# -- 2. scale --------------------------------------------------------------------------------------


@dataclass
class ScaleResult:
    executions: int
    checkpoints: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    unseen: int = 0
    peak_rss_mb: float = 0.0
    requests_per_checkpoint: float = float("nan")
    setup_seconds: float = 0.0
    load_average: float = 0.0
    """The machine's 1-minute load average at the end of the window (other work competes for the CPUs)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used by each process during the checkpointing window (2.0 = two cores busy)."""
    wall_seconds: float = 0.0
    status_patches: float = 0.0
    """Execution status patches the API server served during the window (the coalescer's output)."""
    budget: float = 50.0
    """The operator's status patch budget (STRATA_STATUS_PATCH_BUDGET), patches a second."""
    interval: float = 1.0
    """The operator's status patch interval per Execution (STRATA_STATUS_PATCH_INTERVAL_SECONDS)."""
    profile: list[str] = field(default_factory=list)
    """Where the operator's CPU went during the window (``--operator-profile``)."""

    def lag_pct(self, q: float) -> float:
        """The status lag's q-th percentile, a never-seen checkpoint counting as infinitely late."""
        return pct(self.lags + [float("inf")] * self.unseen, q)

    def lag_p99(self) -> float:
        return self.lag_pct(99)

    def promise(self) -> float:
        """The lag the budget promises: each Execution is patched every max(interval, E / budget)
        seconds (stalest first), so a checkpoint waits at most that long for the patch that shows it."""
        return max(self.interval, self.executions / self.budget)

    def allowed_p99(self) -> float:
        """The promise plus the stated tolerance: what the lag p99 is judged against."""
        promise = self.promise()
        return promise * (1 + LAG_TOLERANCE_SHARE) + LAG_TOLERANCE_SECONDS

    def allowed_p50(self) -> float:
        """Acks arrive evenly between an Execution's patches, so half wait at most half the promise."""
        promise = self.promise()
        return promise / 2 * (1 + LAG_TOLERANCE_SHARE) + LAG_TOLERANCE_SECONDS

    def grace(self) -> float:
        """How long after the window the last acknowledged steps may take to show."""
        return self.allowed_p99() + GRACE_EXTRA_SECONDS

    def patches_per_second(self) -> float:
        return self.status_patches / max(self.wall_seconds, 1e-9)

    def apiserver_ms_per_patch(self) -> float:
        """kube-apiserver CPU per status patch (all its CPU in the window over the patches it served)."""
        return self.cpu.get("kube-apiserver", 0.0) * self.wall_seconds * 1000 / max(1.0, self.status_patches)

    def cpu_ms_per_checkpoint(self, component: str) -> float:
        """CPU time ``component`` spent per acknowledged checkpoint: comparable across noisy runs."""
        return self.cpu.get(component, 0.0) * self.wall_seconds * 1000 / max(1, self.checkpoints)


class StatusWatch(threading.Thread):
    """Watches every Execution of the namespace and records when each lastCheckpoint step appeared."""

    def __init__(self, api: KubeApi, since: str) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.since = since
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.stop = False

    def run(self) -> None:
        ctx = ssl.create_default_context(cadata=self.api.ca_pem)
        rv = self.since
        while not self.stop:
            query = urllib.parse.urlencode({"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5"})
            req = urllib.request.Request(
                f"{self.api.server}{GROUP_PATH}/namespaces/{NAMESPACE}/executions?{query}"
            )
            req.add_header("Authorization", f"Bearer {self.api.token}")
            with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
                for line in resp:
                    now = time.perf_counter()
                    event = json.loads(line)
                    obj = event["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    last = (obj.get("status") or {}).get("lastCheckpoint")
                    if last:
                        self.seen.setdefault(obj["metadata"]["name"], []).append((now, int(last["step"])))


def cpu_by_component(demo: Demo) -> dict[str, float]:
    """CPU seconds used so far by each process of the setup (PostgreSQL: postmaster + its backends)."""
    assert demo.operator is not None
    usage = {"operator": _cpu_seconds(demo.operator.pid)}
    for name, pid in demo.cluster.pids.items():
        usage[name] = _cpu_seconds(pid)
    postmaster = int((demo.postgres.datadir / "postmaster.pid").read_text().split()[0])
    usage["postgresql"] = _cpu_seconds(postmaster) + sum(_cpu_seconds(c) for c in _children(postmaster))
    times = os.times()
    usage["bench client"] = times.user + times.system
    return usage


class OperatorProfile(threading.Thread):
    """py-spy on the operator for ``seconds``, ``delay`` s into the window (``bench.api_path``'s summary)."""

    def __init__(self, py_spy: str, pid: int, path: Path, delay: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.py_spy, self.pid, self.path, self.delay, self.seconds = py_spy, pid, path, delay, seconds
        self.span = (0.0, 0.0)
        self.cpu = 0.0
        self.error = ""

    def run(self) -> None:
        from bench.api_path import PROFILE_RATE

        time.sleep(self.delay)
        cmd = [self.py_spy, "record", "--pid", str(self.pid), "--rate", str(PROFILE_RATE), "--format", "raw"]
        cmd += ["--output", str(self.path), "--duration", str(max(1, int(self.seconds))), "--nonblocking"]
        cpu, began = _cpu_seconds(self.pid), time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, check=False)
        self.span, self.cpu = (began, time.perf_counter()), _cpu_seconds(self.pid) - cpu
        if done.returncode != 0:
            self.error = done.stderr.decode(errors="replace")[-300:]

    def summary(self, acks: dict[str, list[tuple[float, int]]]) -> list[str]:
        from bench.api_path import summarise

        if self.error or not self.path.exists():
            return [f"py-spy on the operator failed: {self.error}"]
        began, ended = self.span
        count = sum(1 for mine in acks.values() for at, _ in mine if began <= at <= ended)
        return [f"py-spy: `{self.path}`", "", *summarise(self.path, count, self.cpu)]


class ApiserverProfile(threading.Thread):
    """A CPU profile of kube-apiserver (``/debug/pprof/profile``) taken ``delay`` s into the window."""

    def __init__(self, api: KubeApi, path: Path, delay: float, seconds: int) -> None:
        super().__init__(daemon=True)
        self.api, self.path, self.delay, self.seconds = api, path, delay, seconds
        self.error = ""

    def run(self) -> None:
        time.sleep(self.delay)
        ctx = ssl.create_default_context(cadata=self.api.ca_pem)
        req = urllib.request.Request(f"{self.api.server}/debug/pprof/profile?seconds={self.seconds}")
        req.add_header("Authorization", f"Bearer {self.api.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.seconds + 30, context=ctx) as resp:
                self.path.write_bytes(resp.read())
        except OSError as exc:
            self.error = str(exc)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def checkpoint_loop(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    seconds: float,
    result: ScaleResult,
    acks: list[Any],
    first: int = 0,
) -> int:
    """Checkpoint once a second for ``seconds``, steps after ``first``; acknowledged ones go to ``acks``.
    Returns the last step sent."""
    await asyncio.sleep(hash(token) % 1000 / 1000)  # spread the pods over the second
    step = first
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step += 1
        tick = time.perf_counter()
        try:
            async with session.post(
                url,
                data=json.dumps({"step": step, "state": {"step": step, "payload": "x" * 200}}),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ) as resp:
                await resp.read()
                ok = resp.status == 200
        except aiohttp.ClientError:
            ok = False
        done = time.perf_counter()
        if ok:
            result.checkpoints += 1
            result.latencies.append(done - tick)
            acks.append((done, step))
        else:
            result.errors += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    return step


WARM_UP_CONCURRENCY = 8
"""New pods making their first checkpoint at once before a window (the operator reviews 8 at a time)."""


async def warm_up(url: str, tokens: dict[str, str], fleet: Fleet) -> None:
    """Each new pod's first checkpoint, before the window: the operator reviews its token and reads its
    pod once (cached for minutes after), so the window measures the steady state. Retried until it
    is accepted (a review slot may be busy: 503)."""
    slots = asyncio.Semaphore(WARM_UP_CONCURRENCY)

    async def first(session: aiohttp.ClientSession, name: str, token: str) -> None:
        step = fleet.steps.get(name, 0) + 1
        body = json.dumps({"step": step, "state": {"step": step, "payload": "x" * 200}})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for _ in range(100):
            async with slots:
                try:
                    async with session.post(f"{url}/v1/checkpoint", data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status == 200:
                            fleet.steps[name] = step
                            return
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the first checkpoint of {name} was not accepted")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(first(session, name, token) for name, token in tokens.items()))


def create_executions(api: KubeApi, first: int, count: int) -> None:
    """Executions s<first> .. s<count - 1> (kwok pods that checkpoint through this process)."""
    for i in range(first, count):
        body = {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": "Execution",
            "metadata": {"name": f"s{i:04d}"},
            "spec": {"template": TEMPLATE},
        }
        api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", body)


def status_budget() -> tuple[float, float]:
    """(budget per second, interval seconds) of the operator's status patches, as it reads them."""
    from stratarouter_runtime.operator.settings import OperatorSettings

    fields = OperatorSettings.model_fields
    budget = float(
        os.environ.get("STRATA_STATUS_PATCH_BUDGET") or fields["status_patch_budget_per_second"].default
    )
    interval = float(
        os.environ.get("STRATA_STATUS_PATCH_INTERVAL_SECONDS")
        or fields["status_patch_interval_seconds"].default
    )
    return budget, interval


def bench_scale(
    demo: Demo,
    counts: list[int],
    seconds: float,
    profile: Path | None = None,
    py_spy: tuple[str, Path] | None = None,
) -> list[ScaleResult]:
    """One window per count, smallest first, on the same cluster: the Executions of a window stay for
    the next one, which adds the missing ones (so 300 then 1,000 creates 1,000 in all)."""
    results: list[ScaleResult] = []
    fleet = Fleet()
    for count in sorted(set(counts)):
        print(f"\n==> Scale: {count} Executions for {seconds:.0f}s", flush=True)
        results.append(scale_window(demo, fleet, count, seconds, profile, py_spy))
        profile = None  # the API server's profile is of the first window only
    return results


@dataclass
class Fleet:
    """The scale bench's Executions so far: their pods' tokens, and the last step each acknowledged
    (a later window goes on from there: a step written again is not a new checkpoint)."""

    tokens: dict[str, str] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)


def scale_window(
    demo: Demo,
    fleet: Fleet,
    count: int,
    seconds: float,
    profile: Path | None,
    py_spy: tuple[str, Path] | None = None,
) -> ScaleResult:
    """Grow ``fleet`` to ``count`` Executions, then each checkpoints once a second for ``seconds``."""
    tokens = fleet.tokens
    api = demo.api
    budget, interval = status_budget()
    result = ScaleResult(executions=count, budget=budget, interval=interval)
    started = time.perf_counter()
    create_executions(api, len(tokens), count)

    def all_running() -> list[dict[str, Any]] | None:
        items = api.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions").get("items", [])
        ours = [e for e in items if e["metadata"]["name"].startswith("s")]
        ready = [e for e in ours if (e.get("status") or {}).get("phase") == "Running"]
        print(f"    {len(ready)}/{count} Executions Running", flush=True)
        return ours if len(ready) == count else None

    executions = wait_until("every Execution Running", all_running, timeout=900, every=5)
    for e in executions:
        if e["metadata"]["name"] not in tokens:
            pod = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{e['status']['podName']}")
            tokens[e["metadata"]["name"]] = request_pod_token(api, pod)
    fresh = [name for name in tokens if name not in fleet.steps]
    asyncio.run(warm_up(demo.api_url, {name: tokens[name] for name in fresh}, fleet))
    result.setup_seconds = time.perf_counter() - started
    print(
        f"    {count} Executions running, {len(fresh)} new pods' first checkpoint made, after "
        f"{result.setup_seconds:.0f}s",
        flush=True,
    )

    since = api.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions")["metadata"]["resourceVersion"]
    watch = StatusWatch(api, since)
    watch.start()
    before = apiserver_counts(api)
    cpu_before = cpu_by_component(demo)
    wall = time.perf_counter()
    acks: dict[str, list[tuple[float, int]]] = {name: [] for name in tokens}
    profiler = None
    if profile is not None:  # the middle half of the window: past the first reviews of every token
        profiler = ApiserverProfile(api, profile, delay=seconds / 4, seconds=max(1, int(seconds / 2)))
        profiler.start()
    spy = None
    if py_spy is not None:  # the operator, the same middle half of the window
        assert demo.operator is not None
        out = py_spy[1].with_name(f"{py_spy[1].name}-{count}.raw")
        spy = OperatorProfile(py_spy[0], demo.operator.pid, out, delay=seconds / 4, seconds=seconds / 2)
        spy.start()

    async def run() -> list[int]:
        url = f"{demo.api_url}/v1/checkpoint"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:
            return await asyncio.gather(
                *(
                    checkpoint_loop(s, url, tok, seconds, result, acks[name], fleet.steps.get(name, 0))
                    for name, tok in tokens.items()
                )
            )

    fleet.steps.update(zip(tokens, asyncio.run(run()), strict=True))
    wall = time.perf_counter() - wall
    result.wall_seconds = wall
    cpu_after = cpu_by_component(demo)
    after = apiserver_counts(api)
    result.cpu = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / wall for k in cpu_after}
    result.load_average = os.getloadavg()[0]

    def last_steps_seen() -> bool:
        return all(
            not mine or any(s >= mine[-1][1] for _, s in watch.seen.get(name, []))
            for name, mine in acks.items()
        )

    grace_end = time.monotonic() + result.grace()
    while not last_steps_seen() and time.monotonic() < grace_end:  # the last coalesced patches
        time.sleep(0.5)
    watch.stop = True
    if profiler is not None:
        profiler.join()
        print(f"    kube-apiserver CPU profile: {profile} {profiler.error}".rstrip(), flush=True)
    if spy is not None:
        spy.join()
        result.profile = spy.summary(acks)
    assert demo.operator is not None
    result.peak_rss_mb = peak_rss_mb(demo.operator.pid)
    requests = sum(after.get(k, 0.0) - before.get(k, 0.0) for k in after)
    result.requests_per_checkpoint = requests / max(1, result.checkpoints)
    patched = "PATCH/executions/status"
    result.status_patches = after.get(patched, 0.0) - before.get(patched, 0.0)
    print(f"    API-server requests during the run: { {k: after[k] - before.get(k, 0) for k in after} }")
    for name, mine in acks.items():
        seen = watch.seen.get(name, [])
        for acked_at, step in mine:
            shown = next((t for t, s in seen if s >= step and t >= acked_at - 0.001), None)
            if shown is None:
                result.unseen += 1
            else:
                result.lags.append(max(0.0, shown - acked_at))
    return result


# -- report ------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "never shown"
    return f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    if math.isinf(seconds):
        return "never shown"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def p50_p95(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    return f"{ms(statistics.median(values))} / {ms(pct(values, 95))}"


def stage(deaths: list[Death], key: str) -> list[float]:
    return [d.after.get(key, float("nan")) for d in deaths]


def render_real(real: RealRecovery, kwok: list[float], command: str) -> list[str]:
    """The "Recovery on the real node" section: the table, the stages, the conditions of the run."""
    finished = real.finished or datetime.now(UTC)
    loads = [d.load for d in real.operator + real.jobs]
    load_range = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "—"
    before = " / ".join(f"{v:.2f}" for v in real.load_before)
    after = " / ".join(f"{v:.2f}" for v in real.load_after)
    lines = [
        "",
        "## Recovery on the real node",
        "",
        f"{real.started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPUs "
        f"shared with other work, Linux {platform.release()}; one real node (kubelet, containerd, runc) "
        "beside the kwok nodes, the operator and PostgreSQL as host processes.",
        "",
        f"Command: `{command}`",
        "",
        f"Load average (1 / 5 / 15 min): {before} before, {after} after; the 1-minute load at each kill "
        f"ranged {load_range}. On 2 shared CPUs the absolute figures include waiting for a CPU; compare "
        "the rows, not the numbers with another machine's.",
        "",
        "Death = the bench SIGKILLs the workload's process from the host (its host pid: in the node's "
        "cgroup tree, under the pod's cgroup, running workload.py), `time.time()` taken just before the "
        "call. Replacement running = the replacement container's first output line, by the container "
        "runtime's log timestamp (ns): for the operator that line is printed right after the new "
        "attempt's first call to the checkpoint API (the load of its last checkpoint) was answered; for "
        "the Job it is printed after the same imports with an in-memory store. First checkpoint = the "
        "store's timestamp (PostgreSQL `now()` of the transaction that wrote attempt n+1's first "
        "checkpoint, so a little before it was committed and acknowledged).",
        "",
        "| path | runs | death -> replacement running p50 / p95 | death -> first checkpoint after resume "
        "p50 / p95 |",
        "|---|---:|---:|---:|",
    ]
    if real.operator:
        lines.append(
            f"| StrataRouter operator, real node (backoffSeconds: 0) | {len(real.operator)} | "
            f"{p50_p95(stage(real.operator, 'output'))} | {p50_p95(stage(real.operator, 'checkpoint'))} |"
        )
    if real.jobs:
        lines.append(
            f"| Kubernetes Job controller, real node (backoffLimit) | {len(real.jobs)} | "
            f"{p50_p95(stage(real.jobs, 'output'))} | — (a Job keeps no state: it starts over) |"
        )
    if kwok:
        lines.append(
            f"| StrataRouter operator, kwok (pod Failed -> replacement pod created) | {len(kwok)} | "
            f"{p50_p95(kwok)} | — (kwok runs no process) |"
        )
    lines += [
        "",
        "Where the time goes (time after the death; p50 / p95):",
        "",
        "| stage | operator, real node | Job controller, real node |",
        "|---|---:|---:|",
    ]
    for key, label in STAGES:
        lines.append(f"| {label} | {p50_p95(stage(real.operator, key))} | {p50_p95(stage(real.jobs, key))} |")
    lines += [
        "",
        "Sources: pod created / Failed / Running = when a watch on the namespace's pods delivered it; "
        "process started = the process's start time in /proc (10 ms ticks; the fork of runc's init, "
        "which then execs the workload).",
        "",
        "What makes the comparison unfair, or the numbers not absolute:",
        "",
        "- **The Job controller waits on purpose.** It recreates a failed pod after an exponential "
        "backoff (10 s, 20 s, 40 s ... capped at 6 min; not configurable, and no podFailurePolicy action "
        "skips it), which is part of what it offers; the operator was run with `backoffSeconds: 0`. "
        "Each Job here fails once, so it shows only the first, shortest step; the kwok comparison above "
        "measures the same ~9-10 s.",
        "- **The Job's replacement starts over** from step 1; the operator's resumes after its last "
        'checkpoint, which is why only it has a checkpoint column. Its "running" moment also includes '
        "one round trip to the checkpoint API that the Job's does not.",
        "- **2 CPUs shared with other work** (load above): the kubelet, containerd, the API server, "
        "etcd, the operator, PostgreSQL, the bench and the workload all compete for them, so every stage "
        "is slower than on an idle or larger machine, and by varying amounts.",
        "- **Both paths share the kubelet's part**, the first stage in the table: its pod lifecycle event "
        "generator notices the death on its next relist (every second), and the kubelet stops the pod's "
        "sandbox before it reports the pod Failed. Neither controller can act before that.",
        "- **The operator is a host process** with its checkpoint API on the pod bridge; in a cluster "
        "the pod's calls cross a real network, and the operator runs in a pod of its own.",
        "- **The kwok row has no kubelet and no container**: it times only the controller's reaction "
        'to a pod marked Failed; compare it with the "replacement pod created" stage minus the '
        '"old pod Failed" one.',
    ]
    return lines


API_P99_TARGET = 0.1
"""The issue's target for the checkpoint API's p99 at 1,000 Executions."""
APISERVER_CORES_TARGET = 0.5
"""... and for the API server's CPU on our status patches there."""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render_scale(scales: list[ScaleResult]) -> list[str]:
    """The scale section: one row per Execution count, status lag judged against the budget's promise."""
    first = scales[0]
    tol = f"x {1 + LAG_TOLERANCE_SHARE:g} + {LAG_TOLERANCE_SECONDS:g} s"
    lines = [
        "",
        f"## Scale: Executions each checkpointing once a second (status patch budget {first.budget:g}/s, "
        f"interval {first.interval:g} s)",
        "",
        "Status lag = a checkpoint acknowledged -> a watch on the Executions shows that step (or a later "
        "one) in status.lastCheckpoint. The budget's promise: each Execution's status is patched every "
        f"max(interval, Executions / budget) seconds, stalest first, so a checkpoint waits at most that "
        f"long for the patch that shows it, and half of them at most half as long. Judged with a "
        f"tolerance (the promise {tol}: a patch's round trip and the watch's delivery on a busy API "
        "server, the interval's granularity): p99 against the promise, p50 against half of it. A "
        "checkpoint the watch never shows (by the allowed p99 + "
        f"{GRACE_EXTRA_SECONDS:g} s after the window) counts as infinitely late.",
        "",
        "| Executions | acked (errors) | checkpoint API p50 / p99 | status lag p50 / p99 | promise "
        "(allowed p50 / p99) | lag | status patches/s (budget) |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in scales:
        lag_ok = r.lag_pct(50) <= r.allowed_p50() and r.lag_p99() <= r.allowed_p99() and not r.unseen
        lines.append(
            f"| {r.executions:,} | {r.checkpoints:,} ({r.errors}) | {ms(pct(r.latencies, 50))} / "
            f"{ms(pct(r.latencies, 99))} | {secs(r.lag_pct(50))} / {secs(r.lag_p99())}"
            f"{f' ({r.unseen} never shown)' if r.unseen else ''} | {secs(r.promise())} "
            f"({secs(r.allowed_p50())} / {secs(r.allowed_p99())}) | {verdict(lag_ok)} | "
            f"{r.patches_per_second():.1f} ({r.budget:g}) |"
        )
    lines += [
        "",
        "| Executions | kube-apiserver cores (all of it) | its CPU per status patch | its CPU per checkpoint "
        "| operator CPU per checkpoint | API-server requests per checkpoint | operator peak RSS | "
        "load (1 min) at the end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in scales:
        lines.append(
            f"| {r.executions:,} | {r.cpu.get('kube-apiserver', 0.0):.2f} | "
            f"{r.apiserver_ms_per_patch():.2f} ms | {r.cpu_ms_per_checkpoint('kube-apiserver'):.2f} ms | "
            f"{r.cpu_ms_per_checkpoint('operator'):.2f} ms | {r.requests_per_checkpoint:.3f} | "
            f"{r.peak_rss_mb:.0f} MB | {r.load_average:.1f} |"
        )
    at_1000 = [r for r in scales if r.executions >= 1000]
    if at_1000:
        r = at_1000[-1]
        p99, cores = pct(r.latencies, 99), r.cpu.get("kube-apiserver", 0.0)
        lines += [
            "",
            f"Targets at {r.executions:,} Executions: checkpoint API p99 under {ms(API_P99_TARGET)}: "
            f"{ms(p99)}, {verdict(p99 < API_P99_TARGET)}; the API server under {APISERVER_CORES_TARGET:g} "
            f"core for our patches (all of its CPU in the window counted, so an upper bound): {cores:.2f}, "
            f"{verdict(cores < APISERVER_CORES_TARGET)}.",
        ]
    for r in scales:
        lines += [
            "",
            f"{r.executions:,} Executions: set up in {r.setup_seconds:.0f} s, window {r.wall_seconds:.0f} s; "
            "CPU (cores) used during the window: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.cpu.items(), key=lambda kv: -kv[1])),
        ]
    for r in scales:
        if r.profile:
            lines += ["", f"### Where the operator's CPU went at {r.executions:,} Executions", "", *r.profile]
    return lines


def render(
    ours: list[float],
    jobs: list[float],
    scales: list[ScaleResult],
    real: RealRecovery | None = None,
    command: str = "",
    api_path: Any = None,
) -> str:
    nodes = "kwok nodes and one real node" if real is not None else "kwok nodes"
    lines = [
        f"# bench-operator ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, local cluster: {nodes})",
        "",
        f"Command: `{command}`",
    ]
    if ours or jobs:
        lines += [
            "",
            "## Recovery latency: pod Failed -> replacement pod created",
            "",
            "| Controller | runs | p50 | p95 | max |",
            "|---|---:|---:|---:|---:|",
        ]
    for label, values in (
        ("StrataRouter operator (backoffSeconds: 0)", ours),
        ("Job controller (backoffLimit)", jobs),
    ):
        if values:
            lines.append(
                f"| {label} | {len(values)} | {ms(statistics.median(values))} | {ms(pct(values, 95))} | "
                f"{ms(max(values))} |"
            )
    if real is not None:
        lines += render_real(real, ours, command)
    if api_path is not None:
        from bench.api_path import render_body

        lines += ["", "## Checkpoint API vs the SDK straight to PostgreSQL (one pod, sequential)", ""]
        lines += render_body(api_path)
    if scales:
        lines += render_scale(scales)
    return "\n".join(lines) + "\n"


def counts_arg(text: str) -> list[int]:
    """``1000`` or ``300,1000``."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a count or a comma-separated list of counts: {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"counts must be positive: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.operator", description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20, help="Jobs failed in parallel for the reference")
    parser.add_argument(
        "--executions",
        type=counts_arg,
        default=[1000],
        help="Executions of the scale run; several (300,1000) run one after the other on one cluster",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--skip-api", action="store_true", help="no checkpoint API vs direct comparison (bench.api_path)"
    )
    parser.add_argument("--api-writes", type=int, default=2000, help="timed checkpoints per contender")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument(
        "--real-runs", type=int, default=20, help="SIGKILLs on the real node, for the operator and for Jobs"
    )
    parser.add_argument("--skip-real", action="store_true", help="no recovery runs on the real node")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"report file (default {RESULTS})")
    parser.add_argument(
        "--apiserver-profile", type=Path, default=None, help="write a kube-apiserver CPU profile"
    )
    parser.add_argument(
        "--operator-profile",
        type=Path,
        default=None,
        help="py-spy the operator in each scale window (FILE-<count>.raw), summarised in the report",
    )
    parser.add_argument("--py-spy", default=None, help="the py-spy binary (default: py-spy on PATH)")
    args = parser.parse_args(argv)
    if args.apiserver_profile is not None:
        os.environ["STRATA_DEV_PROFILING"] = "1"  # the local cluster serves /debug/pprof only then
    demo = Demo()
    try:
        wanted = real_node_wanted() and not (args.skip_recovery or args.skip_real or args.real_runs <= 0)
        demo.start_infrastructure(real_node=wanted)
        demo.apply_crds()
        demo.start_operator(verbose=False)
        ours: list[float] = []
        jobs: list[float] = []
        real = None
        if not args.skip_recovery:
            print("\n==> Recovery latency on kwok (operator)", flush=True)
            ours = bench_recovery_operator(demo.api, args.runs)
            print("\n==> Recovery latency on kwok (Job controller)", flush=True)
            jobs = bench_recovery_jobs(demo.api, args.jobs)
            if not args.skip_real and args.real_runs > 0:
                real = bench_recovery_real(demo, args.real_runs)
        api_path = None
        if not args.skip_api:
            from bench.api_path import bench_api_path

            api_path = bench_api_path(demo, args.api_writes, per_slice=100, warmup=200)
        scales: list[ScaleResult] = []
        if not args.skip_scale:
            spy = None
            if args.operator_profile is not None:
                binary = args.py_spy or shutil.which("py-spy")
                if binary is None:
                    raise RuntimeError("--operator-profile needs py-spy (pip install py-spy; or --py-spy)")
                spy = (binary, args.operator_profile)
            scales = bench_scale(demo, args.executions, args.seconds, args.apiserver_profile, spy)
        given = sys.argv[1:] if argv is None else argv
        command = shlex.join([os.path.relpath(sys.executable), "-m", "bench.operator", *given])
        report = render(ours, jobs, scales, real, command, api_path)
    except (KubeApiError, RuntimeError, OSError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.close()
    print("\n" + report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
