"""``make bench-api``: one pod's sequential checkpoints through the checkpoint API, against the SDK
writing the same states straight to the same PostgreSQL, in one run.

Setup, as ``make bench-operator`` has it: a throwaway local cluster (kwok nodes; the real node only
with ``--real-node``), a throwaway PostgreSQL and the operator as a subprocess. One Execution runs;
its pod is played by this process with the pod's bound service-account token (a TokenRequest, what
the kubelet projects), through the pod's own SDK (``StateManager`` on the ``http`` backend, token
file re-read on every request). The reference is the SDK on the ``postgresql`` backend writing a run
of its own to the same server with the same settings (no compression, attempt-fenced, must exist).

Both contenders write the same ~1 KiB states (``bench.sdk_workload``), one checkpoint at a time,
in slices of ``--slice`` writes that alternate between them (who goes first alternates too), so a
change of machine load hits both alike. Reported: p50/p99 latency of each, each one's rate, and the
API's rate over the direct rate (the median of per-rotation ratios), with the CPU each process spent
per checkpoint. Numbers are printed (and written to ``--output``), never asserted.

``--profile FILE`` afterwards samples the operator with py-spy (``--py-spy`` or ``py-spy`` on PATH)
during an extra API-only phase (not part of the figures above), writes the collapsed stacks to FILE
and prints where the operator's CPU went, per checkpoint.

    python -m bench.api_path [--writes 4000] [--slice 100] [--profile FILE] [--real-node]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.cluster_probe import TEMPLATE, _children, _cpu_seconds, apiserver_counts, pct
from bench.sdk_workload import make_state
from stratarouter_dev.demo import NAMESPACE, Demo, wait_until
from stratarouter_dev.kubeapi import KubeApiError
from stratarouter_dev.pods import request_pod_token
from stratarouter_dev.ports import free_port
from stratarouter_runtime.operator.resources.base import GROUP_PATH
from stratarouter_runtime.state import StateManager

RESULTS = Path(__file__).parent / "results" / "api-path.md"
NAME = "apipath"
DIRECT_ID = "bench/direct"
STATES = 256
"""Distinct states written in turn (made before timing starts)."""
CONTENDERS = ("api", "direct", "floor")
FLOOR_SERVER = """
import sys
from aiohttp import web

ANSWER = b'{"executionId":"floor","step":0,"attempt":1,"sizeBytes":0}'


async def answer(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


app = web.Application()
app.router.add_post("/v1/checkpoint", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
"""The HTTP floor: an aiohttp server in a process of its own that answers every checkpoint at once
(no token check, no store). The pod's SDK against it costs what HTTP alone adds to a checkpoint."""
PROFILE_RATE = 1000
"""py-spy samples a second."""

BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (label, substrings of a frame; the first bucket a sample's stack matches, innermost first, wins)
    ("auth: token cache + current-pod check", ("(stratarouter_runtime/operator/api/auth.py",)),
    ("JSON parse of the body (orjson.loads)", ("parse_json_object",)),
    ("body read (limits.read_body)", ("read_body",)),
    ("codec encode (orjson.dumps, sha256)", ("stratarouter_runtime/state/codec.py",)),
    ("store write: asyncpg + backend", ("stratarouter_runtime/state/backends/", "asyncpg/")),
    ("store write: manager/group commit", ("stratarouter_runtime/state/manager.py", "state/batching.py")),
    ("status coalescer note", ("note_checkpoint",)),
    ("status patches (coalescer send)", ("operator/api/status.py",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("API handler, rest (server.py)", ("operator/api/server.py",)),
    ("header deadline/connections", ("operator/api/connections.py",)),
    ("the checkpoint API's Execution watch (current_pods)", ("operator/api/current_pods.py",)),
    ("the checkpoint API, other (limits, history)", ("operator/api/",)),
    (
        "operator handlers (reconcile, pods, status)",
        (
            "stratarouter_runtime/operator/handlers/",
            "stratarouter_runtime/operator/lifecycle",
            "stratarouter_runtime/operator/kube.py",
            "stratarouter_runtime/operator/tracking",
            "stratarouter_runtime/operator/pods.py",
            "stratarouter_runtime/operator/diffbase",
            "stratarouter_runtime/operator/wakeups",
            "stratarouter_runtime/operator/events",
            "stratarouter_runtime/operator/outcomes",
        ),
    ),
    ("kopf (watch events, handlers)", ("kopf/",)),
    ("kubernetes client", ("kubernetes_asyncio/",)),
    ("aiohttp web server (parser, response)", ("aiohttp/web", "aiohttp/http_", "aiohttp/base_protocol")),
    ("aiohttp other", ("aiohttp/",)),
    ("asyncio event loop", ("asyncio/",)),
)
CLIENT_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("token file read (HttpBackend._token)", ("HttpBackend._token",)),
    ("codec encode (orjson.dumps, sha256)", ("stratarouter_runtime/state/codec.py",)),
    ("http backend, rest", ("stratarouter_runtime/state/backends/http.py",)),
    ("StateManager (checks, op)", ("stratarouter_runtime/state/",)),
    ("aiohttp client: connector, request, response", ("aiohttp/client", "aiohttp/connector")),
    (
        "aiohttp client: HTTP parser, writer, streams",
        ("aiohttp/http_", "aiohttp/streams", "aiohttp/base_pro"),
    ),
    ("yarl/multidict (URL, headers)", ("yarl/", "multidict/")),
    ("aiohttp other", ("aiohttp/",)),
    ("bench loop", ("bench/api_path.py",)),
    ("asyncio event loop", ("asyncio/",)),
)
GENERIC = frozenset({"aiohttp other", "asyncio event loop", "bench loop"})
"""Buckets a sample goes to only when no other bucket names a frame of its stack."""
INCLUSIVE: tuple[tuple[str, str], ...] = (
    # (label, a frame's function and file, as py-spy names it): samples with that frame anywhere
    ("the whole request in aiohttp (RequestHandler._handle_request)", "RequestHandler._handle_request ("),
    ("errors_middleware and what it calls", "errors_middleware (stratarouter"),
    ("_write (the checkpoint handler)", "_write (stratarouter_runtime/operator/api/server.py"),
    ("authenticate (both checks)", "Authenticator.authenticate ("),
    ("read_body", "read_body (stratarouter"),
    ("parse_json_object", "parse_json_object ("),
    ("StateManager.write (encode + store)", "StateManager.write ("),
    ("StateCodec.encode", "StateCodec.encode ("),
    ("PostgresBackend.write", "PostgresBackend.write ("),
    ("note_checkpoint", "StatusCoalescer.note_checkpoint ("),
    ("coalescer loop (_run)", "StatusCoalescer._run ("),
    ("coalescer patches (_patch)", "StatusCoalescer._patch ("),
    ("prometheus_client", "prometheus_client/"),
    ("kopf", "kopf/"),
    ("data_received (aiohttp parses the request)", "RequestHandler.data_received ("),
    ("socket writes (transport.write)", "_SelectorSocketTransport.write ("),
    ("the event loop between callbacks", "BaseEventLoop._run_once ("),
)
CLIENT_INCLUSIVE: tuple[tuple[str, str], ...] = (
    ("StateManager.checkpoint (all of the pod's side)", "StateManager.checkpoint ("),
    ("HttpBackend.write", "HttpBackend.write ("),
    ("ClientSession._request (aiohttp client)", "ClientSession._request ("),
    ("HttpBackend._token", "HttpBackend._token ("),
    ("socket writes (transport.write)", "_SelectorSocketTransport.write ("),
    ("the event loop between callbacks", "BaseEventLoop._run_once ("),
)


@dataclass
class Contender:
    name: str
    latencies: list[float] = field(default_factory=list)
    slice_seconds: list[float] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)
    """CPU seconds each process spent during this contender's slices."""
    handler: list[float] = field(default_factory=lambda: [0.0, 0.0])
    """The operator's own ``stratarouter_checkpoint_seconds`` over this contender's slices: [sum, count]."""

    def rate(self) -> float:
        return len(self.latencies) / max(sum(self.slice_seconds), 1e-9)

    def cpu_ms(self, process: str) -> float:
        return self.cpu[process] * 1000 / max(1, len(self.latencies))


@dataclass
class Run:
    contenders: dict[str, Contender]
    ratios: list[float] = field(default_factory=list)
    """Per rotation: the API's rate over the direct rate in that rotation."""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished: datetime | None = None
    profile: list[str] = field(default_factory=list)
    last_api_step: int = 0
    per_slice: int = 0
    settle_lookups: float = 0.0
    """API-server lookups of the untimed checkpoints made until a batch needed none."""
    apiserver_requests: float = float("nan")
    """API-server lookups during the timed API slices (0 in the steady state)."""


def cpu_now(demo: Demo) -> dict[str, float]:
    """CPU seconds so far of the operator, PostgreSQL (postmaster and backends), kube-apiserver and us."""
    assert demo.operator is not None
    postmaster = int((demo.postgres.datadir / "postmaster.pid").read_text().split()[0])
    times = os.times()
    return {
        "operator": _cpu_seconds(demo.operator.pid),
        "postgresql": _cpu_seconds(postmaster) + sum(_cpu_seconds(c) for c in _children(postmaster)),
        "kube-apiserver": _cpu_seconds(demo.cluster.pids["kube-apiserver"]),
        "bench client": times.user + times.system,
    }


def handler_seconds(demo: Demo) -> tuple[float, float]:
    """``stratarouter_checkpoint_seconds`` (request in -> durable, in the operator): (sum, count)."""
    with urllib.request.urlopen(f"{demo.api_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("stratarouter_checkpoint_seconds_sum", "stratarouter_checkpoint_seconds_count"):
            found[name.rsplit("_", 1)[1]] = float(value)
    return found.get("sum", 0.0), found.get("count", 0.0)


@contextlib.contextmanager
def floor_server() -> Iterator[str]:
    """Run :data:`FLOOR_SERVER` on a free loopback port until the block ends; its base URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"the HTTP floor server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until("the HTTP floor server", up, timeout=30, every=0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def start_pod(demo: Demo, token_file: Path) -> str:
    """One Execution on kwok, running, with its pod's bound token in ``token_file``; its execution id."""
    api = demo.api
    body = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": NAME},
        "spec": {"template": TEMPLATE},
    }
    api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", body)

    def running() -> str | None:
        status = demo.execution(NAME).get("status") or {}
        ok = status.get("phase") == "Running" and status.get("podName") and status.get("podUID")
        return str(status["podName"]) if ok else None

    pod_name: str = wait_until("the Execution Running", running, timeout=120, every=0.2)
    pod = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod_name}")
    token_file.write_text(request_pod_token(api, pod))
    return f"{NAMESPACE}/{NAME}"


async def measure(
    demo: Demo, token_file: Path, api_id: str, floor_url: str, writes: int, per_slice: int, warmup: int
) -> Run:
    states = [make_state(i) for i in range(STATES)]
    run = Run(contenders={name: Contender(name) for name in CONTENDERS}, load_before=os.getloadavg())
    pod = StateManager(
        backend="http", api_url=demo.api_url, extra={"token_file": str(token_file), "execution_id": api_id}
    )
    direct = StateManager(backend="postgresql", db_url=demo.postgres.dsn)
    floor = StateManager(
        backend="http", api_url=floor_url, extra={"token_file": str(token_file), "execution_id": api_id}
    )
    steps = dict.fromkeys(CONTENDERS, 0)
    managers = {"api": (pod, api_id), "direct": (direct, DIRECT_ID), "floor": (floor, api_id)}
    async with pod, direct, floor:
        await direct.start_execution(DIRECT_ID)  # fenced by its attempt, and must exist, as the API's writes

        async def write(name: str, count: int, timed: bool) -> float:
            manager, execution = managers[name]
            mine = run.contenders[name]
            before = cpu_now(demo) if timed else {}
            handled = handler_seconds(demo) if timed and name == "api" else (0.0, 0.0)
            began = time.perf_counter()
            for _ in range(count):
                steps[name] += 1
                step = steps[name]
                tick = time.perf_counter()
                await manager.checkpoint(execution, step, states[step % STATES])
                if timed:
                    mine.latencies.append(time.perf_counter() - tick)
            took = time.perf_counter() - began
            if timed:
                mine.slice_seconds.append(took)
                mine.cpu.update({k: v - before[k] for k, v in cpu_now(demo).items()})
                if name == "api":
                    after = handler_seconds(demo)
                    mine.handler[0] += after[0] - handled[0]
                    mine.handler[1] += after[1] - handled[1]
            return took

        for name in CONTENDERS:  # connections, prepared statements, the token's review
            await write(name, warmup, timed=False)
        await settle(demo, lambda: write("api", 50, timed=False), run)
        before = await asyncio.to_thread(apiserver_counts, demo.api)
        rotations = max(1, writes // per_slice)
        for i in range(rotations):
            order = CONTENDERS[i % 3 :] + CONTENDERS[: i % 3]  # each goes first in turn
            took = {name: await write(name, per_slice, timed=True) for name in order}
            run.ratios.append(took["direct"] / took["api"])
        after = await asyncio.to_thread(apiserver_counts, demo.api)
        run.apiserver_requests = lookups(before, after)
    run.load_after = os.getloadavg()
    run.finished = datetime.now(UTC)
    run.last_api_step = steps["api"]
    return run


SETTLE_SECONDS = 60.0


def lookups(before: dict[str, float], after: dict[str, float]) -> float:
    """API-server requests of the checkpoint path's lookups (TokenReview, pod and Execution GETs)."""
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k != "PATCH/executions/status")


async def settle(demo: Demo, batch: Callable[[], Awaitable[float]], run: Run) -> None:
    """Checkpoint in batches until one costs the API server no lookup: the operator's view of the
    Executions is filled (right after the CRDs are installed its first list may be refused, 429, and
    until it is retried every checkpoint reads the Execution from the API server), and the token's
    review is cached. The steady state is what the figures are about."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        before = await asyncio.to_thread(apiserver_counts, demo.api)
        await batch()
        extra = lookups(before, await asyncio.to_thread(apiserver_counts, demo.api))
        run.settle_lookups += extra
        if not extra or time.monotonic() > deadline:
            return


def find_py_spy(given: str | None) -> str | None:
    return given or shutil.which("py-spy")


def profile_api(
    demo: Demo, token_file: Path, api_id: str, step: int, py_spy: str, out: Path, seconds: float
) -> list[str]:
    """Sample the operator, and this process as the pod, with py-spy while the pod checkpoints for
    ``seconds``; where each one's CPU went."""
    assert demo.operator is not None
    targets = {"operator": demo.operator.pid, "pod (client)": os.getpid()}
    paths = {"operator": out, "pod (client)": out.with_name(out.name + ".client")}
    spies = {}
    for who, pid in targets.items():
        cmd = [py_spy, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format", "raw"]
        cmd += ["--output", str(paths[who]), "--duration", str(int(seconds) + 2), "--nonblocking"]
        spies[who] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attached
    cpu_before = {who: _cpu_seconds(pid) for who, pid in targets.items()}
    count = asyncio.run(checkpoint_for(demo, token_file, api_id, step, seconds))
    cpu = {who: _cpu_seconds(pid) - cpu_before[who] for who, pid in targets.items()}
    lines: list[str] = []
    for who, spy in spies.items():
        _, err = spy.communicate()
        if spy.returncode != 0 or not paths[who].exists():
            lines += [f"py-spy on the {who} failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}"]
            continue
        buckets, inclusive = (BUCKETS, INCLUSIVE) if who == "operator" else (CLIENT_BUCKETS, CLIENT_INCLUSIVE)
        lines += [f"#### The {who}", "", *summarise(paths[who], count, cpu[who], buckets, inclusive), ""]
    return lines


async def checkpoint_for(demo: Demo, token_file: Path, api_id: str, step: int, seconds: float) -> int:
    """The pod checkpoints through the API for ``seconds`` after ``step``; how many it wrote."""
    pod = StateManager(
        backend="http", api_url=demo.api_url, extra={"token_file": str(token_file), "execution_id": api_id}
    )
    states = [make_state(i) for i in range(STATES)]
    count = 0
    async with pod:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            step += 1
            await pod.checkpoint(api_id, step, states[step % STATES])
            count += 1
    return count


LOOP_CALLBACK = "Handle._run (asyncio/events.py"


def work_of(frames: list[str]) -> list[str]:
    """The frames of the callback the loop was running (kopf.run and the loop itself are outside it);
    the loop's own frames when it was between callbacks; all of a partial stack (py-spy reads a
    running process: now and then a stack misses its outer frames)."""
    starts = [i for i, frame in enumerate(frames) if frame.startswith(LOOP_CALLBACK)]
    if starts:
        return frames[starts[-1] :]
    if frames[0].startswith("_run_module_as_main"):
        return [f for f in frames if "asyncio/" in f or "selectors" in f]
    return frames


Buckets = tuple[tuple[str, tuple[str, ...]], ...]


def bucket_of(frames: list[str], buckets: Buckets = BUCKETS) -> str:
    """The bucket naming the innermost frame it can, generic buckets only for what no other names."""
    generic = None
    for frame in reversed(frames):
        found = next((lbl for lbl, keys in buckets if any(k in frame for k in keys)), None)
        if found is not None and found not in GENERIC:
            return found
        generic = generic or found
    return generic or "other"


IDLE_FRAMES = ("EpollSelector.select (selectors.py",)
"""Innermost frames of a loop waiting for I/O: py-spy cannot always tell them idle (``--nonblocking``)."""


def summarise(
    path: Path,
    checkpoints: int,
    cpu_seconds: float,
    bucket_list: Buckets = BUCKETS,
    inclusive_list: tuple[tuple[str, str], ...] = INCLUSIVE,
) -> list[str]:
    """Buckets of the operator's samples (innermost matching frame decides), as shares of its CPU and,
    scaled by the CPU /proc counted over the window, as ms per checkpoint (py-spy also samples a thread
    that waits for a CPU on a busy machine, so its counts are shares, not times)."""
    buckets: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        frames = stack.split(";")
        if any(frames[-1].startswith(f) for f in IDLE_FRAMES):
            idle += samples
            continue
        total += samples
        selfs[frames[-1]] += samples
        frames = work_of(frames)
        for label, key in inclusive_list:
            if any(key in frame for frame in frames):
                inclusive[label] += samples
        buckets[bucket_of(frames, bucket_list)] += samples
    if not total:
        return ["py-spy recorded no samples"]
    per_checkpoint = cpu_seconds * 1000 / max(1, checkpoints)
    lines = [
        f"py-spy, {PROFILE_RATE} samples/s, {checkpoints} checkpoints in the window: {total} samples "
        f"running ({idle} more waiting in epoll, left out); its CPU by /proc: "
        f"{per_checkpoint:.3f} ms per checkpoint, shared out below by the samples. Each sample goes to "
        "the innermost frame of its stack that a bucket names:",
        "",
        "| where | ms per checkpoint | share |",
        "|---|---:|---:|",
    ]
    for label, samples in buckets.most_common():
        lines.append(f"| {label} | {samples / total * per_checkpoint:.3f} | {samples / total:.0%} |")
    lines += [
        "",
        "Inclusive (samples with that frame anywhere in the stack):",
        "",
        "| what | ms per checkpoint | share |",
        "|---|---:|---:|",
    ]
    for label, _ in inclusive_list:
        share = inclusive[label] / total
        lines.append(f"| {label} | {share * per_checkpoint:.3f} | {share:.0%} |")
    lines += ["", "Top frames by own time:", "", "| frame | ms per checkpoint | share |", "|---|---:|---:|"]
    for frame, samples in selfs.most_common(15):
        share = samples / total
        lines.append(f"| `{frame.replace('|', '/')}` | {share * per_checkpoint:.3f} | {share:.1%} |")
    return lines


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def render(run: Run, command: str) -> str:
    finished = run.finished or datetime.now(UTC)
    lines = [
        f"# bench-api: one pod's checkpoints through the checkpoint API vs the SDK straight to PostgreSQL "
        f"({run.started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC)",
        "",
        f"Command: `{command}`",
        "",
        *render_body(run),
    ]
    return "\n".join(lines) + "\n"


def loads(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def render_body(run: Run) -> list[str]:
    """The measurement's tables and what they mean, without a title (bench-operator includes it too)."""
    api, direct, floor = run.contenders["api"], run.contenders["direct"], run.contenders["floor"]
    ratio = statistics.median(run.ratios) if run.ratios else float("nan")
    lines = [
        f"{run.started:%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} CPUs, Linux "
        f"{platform.release()}; load average (1 / 5 / 15 min) {loads(run.load_before)} before, "
        f"{loads(run.load_after)} after.",
        "",
        f"Sequential durable checkpoints of a ~1 KiB state, {len(api.latencies)} per contender in slices "
        f"of {run.per_slice}, taking turns.",
        "",
        "| path | writes | p50 | p99 | rate | operator CPU | PostgreSQL CPU | client CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = (
        ("checkpoint API (pod SDK, http)", api),
        ("SDK straight to PostgreSQL", direct),
        ("HTTP floor (pod SDK, http, to a server that answers at once)", floor),
    )
    for label, c in rows:
        lines.append(
            f"| {label} | {len(c.latencies)} | {ms(pct(c.latencies, 50))} | {ms(pct(c.latencies, 99))} | "
            f"{c.rate():,.0f}/s | {c.cpu_ms('operator'):.3f} ms | {c.cpu_ms('postgresql'):.3f} ms | "
            f"{c.cpu_ms('bench client'):.3f} ms |"
        )
    spread = f"{min(run.ratios):.2f}-{max(run.ratios):.2f}" if run.ratios else "—"
    handled = api.handler[0] / max(1.0, api.handler[1])
    mean = {c.name: statistics.fmean(c.latencies or [0.0]) for c in (api, direct, floor)}
    ceiling = mean["direct"] / max(mean["direct"] + mean["floor"], 1e-9)
    lines += [
        "",
        f"Inside the operator, request in -> durable (`stratarouter_checkpoint_seconds`, mean): "
        f"{ms(handled)}; the direct path's mean: {ms(statistics.fmean(direct.latencies or [0.0]))}; the "
        f"API's mean: {ms(statistics.fmean(api.latencies or [0.0]))}. API-server lookups (TokenReview, "
        f"pod or Execution GET) during the timed API slices: {run.apiserver_requests:.0f} (before them, "
        f"{run.settle_lookups:.0f} while the operator's view of the Executions filled).",
        "",
        f"**API rate / direct rate: {ratio:.2f}x** (median of {len(run.ratios)} rotations; range {spread}; "
        f"target >= 0.7x). CPU columns: CPU seconds each process spent during that contender's slices, "
        "per checkpoint (the operator's includes its other work meanwhile: watches, the status patch).",
        "",
        f"**HTTP alone** (the floor row: the same pod SDK and aiohttp, a server that reads the body and "
        f"answers, no token check, no store) costs {ms(mean['floor'])} a checkpoint (mean). An API that "
        f"added nothing to HTTP but the direct path's own work would take about direct + floor: a rate "
        f"ratio of at most about {ceiling:.2f}x with this HTTP stack on this machine.",
        "",
        "What makes the comparison unfair, or the numbers not absolute:",
        "",
        "- **The API does more, by design**: an HTTP request and answer over loopback, the token check "
        "(a cached TokenReview, the current-pod check against a watch), the body parsed and the state "
        "encoded again in the operator, the status coalescer noted. The direct path is one round trip "
        "to PostgreSQL: the floor, which a pod cannot have (it gets no database credentials).",
        "- **The pod's SDK reads its token file on every request** (the kubelet rotates it); the direct "
        "SDK has no such step.",
        "- **Same store underneath**: both go through the SDK's StateManager on the same PostgreSQL "
        "(fsync on) with the same settings (no compression, fenced by attempt, the run must exist), "
        "so both send the same statement; one writer at a time, so there is no group commit on either.",
        "- **One machine, 2 shared CPUs**: client, operator, PostgreSQL, kube-apiserver and etcd compete "
        "for them, and the operator's other work (kopf's watches, one status patch a second for the "
        "Execution and the watch event it causes) runs in the same process as the API. In a cluster "
        "the pod's request crosses a real network, which adds a round trip the ratio does not show.",
        "- **The HTTP floor** runs on asyncio's default loop in a process of its own, like the operator, "
        "but with nothing else to do; the operator's loop also serves kopf and its watches.",
        "- **Loopback, kwok pod**: the pod is played by this process, as in the operator's tests; on "
        "the real node the pod's calls cross the pod bridge.",
    ]
    if run.profile:
        lines += ["", "### Where the CPU goes on the checkpoint path (py-spy)", "", *run.profile]
    return lines


def bench_api_path(
    demo: Demo, writes: int, per_slice: int, warmup: int, spy: tuple[str, Path, float] | None = None
) -> Run:
    """The whole measurement on ``demo`` (its operator running): one Execution's pod, the direct SDK
    and the HTTP floor; ``spy``: (py-spy binary, output file, seconds) to profile afterwards."""
    with tempfile.TemporaryDirectory(prefix="strata-bench-api-") as tmp:
        token_file = Path(tmp) / "token"
        api_id = start_pod(demo, token_file)
        print(
            f"\n==> Checkpoint API vs direct: {writes} checkpoints each, in slices of {per_slice}", flush=True
        )
        with floor_server() as floor_url:
            run = asyncio.run(measure(demo, token_file, api_id, floor_url, writes, per_slice, warmup))
        run.per_slice = per_slice
        if spy is not None:
            py_spy, out, seconds = spy
            print(f"\n==> py-spy on the operator and the pod for {seconds:.0f}s", flush=True)
            run.profile = profile_api(demo, token_file, api_id, run.last_api_step, py_spy, out, seconds)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.api_path", description=__doc__)
    parser.add_argument("--writes", type=int, default=4000, help="timed checkpoints per contender")
    parser.add_argument("--slice", type=int, default=100, help="checkpoints per slice")
    parser.add_argument("--warmup", type=int, default=200, help="untimed checkpoints per contender first")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the operator; collapsed stacks")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--py-spy", default=None, help="the py-spy binary (default: py-spy on PATH)")
    parser.add_argument("--real-node", action="store_true", help="start the real node too (not needed)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"report file (default {RESULTS})")
    args = parser.parse_args(argv)
    py_spy = find_py_spy(args.py_spy) if args.profile is not None else None
    if args.profile is not None and py_spy is None:
        print("--profile needs py-spy (pip install py-spy; or --py-spy PATH)", file=sys.stderr)
        return 2
    demo = Demo()
    try:
        demo.start_infrastructure(real_node=args.real_node)
        demo.apply_crds()
        demo.start_operator(verbose=False)
        spy = None if py_spy is None else (py_spy, args.profile, args.profile_seconds)
        run = bench_api_path(demo, args.writes, args.slice, args.warmup, spy)
        given = sys.argv[1:] if argv is None else argv
        command = shlex.join([os.path.relpath(sys.executable), "-m", "bench.api_path", *given])
        report = render(run, command)
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
