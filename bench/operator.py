"""``make bench-operator``: recovery latency against the Job controller, and a many-Executions scale run.

Everything runs on one throwaway local cluster (kwok nodes) with a throwaway PostgreSQL and the operator
as a subprocess, set up exactly as ``stratarouter demo`` does. Numbers are printed (and written to
``bench/results/operator.md``), never asserted.

1. Recovery: an Execution with ``recovery.backoffSeconds: 0``; ``--runs`` times its pod is marked Failed
   (exit 137) and we time pod Failed -> replacement pod exists (polled every 5 ms). Reference: the
   Kubernetes Job controller (``backoffLimit``) replacing a failed pod of a Job on the same cluster.
   kwok completes Job pods as soon as they run, so the Job pods are kept unscheduled (a node selector
   no node has) and marked Failed from Pending; the Job controller does not look at the earlier phase.
2. Scale: ``--executions`` Executions at once, each pod checkpointing once a second through the
   checkpoint API for ``--seconds``: API latency p50/p99 (client side), status lag p99 (checkpoint
   acknowledged -> the Execution's status shows that step, seen by a watch), the operator's peak RSS,
   and API-server requests per checkpoint (the API server's own ``apiserver_request_total`` for the
   verbs the checkpoint path uses: TokenReview create, pod get, Execution get, Execution status patch).
   A checkpoint whose step the watch never shows (up to ``LAST_PATCH_GRACE`` seconds after the window)
   counts as an infinite lag, so it can only push the p99 up, never hide.
   ``--apiserver-profile FILE`` also writes a CPU profile of kube-apiserver taken during the window
   (``go tool pprof -top FILE``).

    python -m bench.operator [--runs 50] [--executions 1000] [--seconds 30] [--skip-scale]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import ssl
import statistics
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

from stratarouter_runtime.dev.kubeapi import KubeApi, KubeApiError
from stratarouter_runtime.dev.pods import fail_pod, is_running, request_pod_token, wait_for_pod
from stratarouter_runtime.operator.demo import NAMESPACE, Demo, wait_until

GROUP_PATH = "/apis/stratarouter.io/v1alpha1"
RESULTS = Path(__file__).parent / "results" / "operator.md"
TEMPLATE = {"spec": {"containers": [{"name": "work", "image": "example.invalid/work:1"}]}}
LAST_PATCH_GRACE = 30.0
"""After the window: how long the watch may take to show the last acknowledged step of every Execution."""
LAG_TARGET = 2.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


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

    def lag_p99(self) -> float:
        """p99 of the status lag, a never-seen checkpoint counting as infinitely late."""
        return pct(self.lags + [float("inf")] * self.unseen, 99)

    def apiserver_ms_per_patch(self) -> float:
        """kube-apiserver CPU per status patch (all its CPU in the window over the patches it served)."""
        return self.cpu.get("kube-apiserver", 0.0) * self.wall_seconds * 1000 / max(1.0, self.status_patches)

    def patches_needed(self) -> float:
        """Status patches/s a lag p99 under LAG_TARGET needs: every Execution checkpoints each second, so
        99 % of checkpoints can only be shown within LAG_TARGET if each Execution is patched at least
        once per LAG_TARGET seconds (one patch shows at most LAG_TARGET seconds' worth of acks in time)."""
        return 0.99 * self.executions / LAG_TARGET

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


def apiserver_counts(api: KubeApi) -> dict[str, float]:
    """apiserver_request_total summed for the verbs the checkpoint path uses."""
    wanted = {
        ("POST", "tokenreviews", ""),
        ("GET", "pods", ""),
        ("GET", "executions", ""),
        ("PATCH", "executions", "status"),
    }
    totals: dict[str, float] = {}
    for line in api.text("/metrics", timeout=30).splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(kv.split("=", 1) for kv in labels_text.split('",') if "=" in kv)
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        if key in wanted:
            name = "/".join(k for k in key if k)
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


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
    session: aiohttp.ClientSession, url: str, token: str, seconds: float, result: ScaleResult, acks: list[Any]
) -> None:
    await asyncio.sleep(hash(token) % 1000 / 1000)  # spread the pods over the second
    step = 0
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


def bench_scale(demo: Demo, count: int, seconds: float, profile: Path | None = None) -> ScaleResult:
    api = demo.api
    result = ScaleResult(executions=count)
    started = time.perf_counter()
    for i in range(count):
        body = {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": "Execution",
            "metadata": {"name": f"s{i:04d}"},
            "spec": {"template": TEMPLATE},
        }
        api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", body)

    def all_running() -> list[dict[str, Any]] | None:
        items = api.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions").get("items", [])
        ours = [e for e in items if e["metadata"]["name"].startswith("s")]
        ready = [e for e in ours if (e.get("status") or {}).get("phase") == "Running"]
        print(f"    {len(ready)}/{count} Executions Running", flush=True)
        return ours if len(ready) == count else None

    executions = wait_until("every Execution Running", all_running, timeout=900, every=5)
    tokens: dict[str, str] = {}
    for e in executions:
        pod = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{e['status']['podName']}")
        tokens[e["metadata"]["name"]] = request_pod_token(api, pod)
    result.setup_seconds = time.perf_counter() - started
    print(f"    {count} Executions running with tokens after {result.setup_seconds:.0f}s", flush=True)

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

    async def run() -> None:
        url = f"{demo.api_url}/v1/checkpoint"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:
            await asyncio.gather(
                *(checkpoint_loop(s, url, tok, seconds, result, acks[name]) for name, tok in tokens.items())
            )

    asyncio.run(run())
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

    grace_end = time.monotonic() + LAST_PATCH_GRACE
    while not last_steps_seen() and time.monotonic() < grace_end:  # the last coalesced patches
        time.sleep(0.5)
    watch.stop = True
    if profiler is not None:
        profiler.join()
        print(f"    kube-apiserver CPU profile: {profile} {profiler.error}".rstrip(), flush=True)
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
        return f"> {LAST_PATCH_GRACE:.0f} s after the window"
    return f"{seconds * 1000:.0f} ms"


def render(ours: list[float], jobs: list[float], scale: ScaleResult | None) -> str:
    lines = [
        f"# bench-operator ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, local kwok cluster)",
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
    if scale is not None:
        lines += [
            "",
            f"## Scale: {scale.executions} Executions, each checkpointing once a second",
            "",
            "| Metric | Value | Target |",
            "|---|---:|---:|",
            f"| checkpoints acknowledged (errors) | {scale.checkpoints} ({scale.errors}) | |",
            f"| checkpoint API latency p50 / p99 | {ms(pct(scale.latencies, 50))} / "
            f"{ms(pct(scale.latencies, 99))} | |",
            f"| status lag p99 (ack -> visible in status) | {ms(scale.lag_p99())} "
            f"({scale.unseen} never seen) | < 2 s |",
            f"| operator peak RSS | {scale.peak_rss_mb:.0f} MB | < 300 MB |",
            f"| API-server requests per checkpoint | {scale.requests_per_checkpoint:.2f} | |",
            f"| status patches per second (Executions: {scale.executions}) | "
            f"{scale.status_patches / max(scale.wall_seconds, 1e-9):.0f} | |",
            f"| operator CPU per checkpoint | {scale.cpu_ms_per_checkpoint('operator'):.2f} ms | |",
            f"| kube-apiserver CPU per checkpoint | "
            f"{scale.cpu_ms_per_checkpoint('kube-apiserver'):.2f} ms | |",
            "| kube-apiserver CPU per status patch (all of its CPU) | "
            f"{scale.apiserver_ms_per_patch():.2f} ms | |",
            "",
            f"A lag p99 under {LAG_TARGET:.0f} s needs every Execution patched at least every "
            f"{LAG_TARGET:.0f} s: {scale.patches_needed():.0f} status patches/s here, i.e. "
            f"{scale.patches_needed() * scale.apiserver_ms_per_patch() / 1000:.1f} kube-apiserver cores "
            "at the CPU per patch measured above.",
            "",
            f"Machine load average (1 min) at the end of the window: {scale.load_average:.1f} "
            f"on {os.cpu_count()} CPUs.",
            "",
            "CPU (cores) used during the window: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(scale.cpu.items(), key=lambda kv: -kv[1])),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.operator", description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=20, help="Jobs failed in parallel for the reference")
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"report file (default {RESULTS})")
    parser.add_argument(
        "--apiserver-profile", type=Path, default=None, help="write a kube-apiserver CPU profile"
    )
    args = parser.parse_args(argv)
    if args.apiserver_profile is not None:
        os.environ["STRATA_DEV_PROFILING"] = "1"  # the local cluster serves /debug/pprof only then
    demo = Demo()
    try:
        demo.start_infrastructure()
        demo.apply_crds()
        demo.start_operator(verbose=False)
        ours: list[float] = []
        jobs: list[float] = []
        if not args.skip_recovery:
            print("\n==> Recovery latency (operator)", flush=True)
            ours = bench_recovery_operator(demo.api, args.runs)
            print("\n==> Recovery latency (Job controller)", flush=True)
            jobs = bench_recovery_jobs(demo.api, args.jobs)
        scale = None
        if not args.skip_scale:
            print(f"\n==> Scale: {args.executions} Executions for {args.seconds:.0f}s", flush=True)
            scale = bench_scale(demo, args.executions, args.seconds, args.apiserver_profile)
        report = render(ours, jobs, scale)
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
