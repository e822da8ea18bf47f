"""The checkpoint API's own CPU per checkpoint: the operator's aiohttp app alone, without PostgreSQL,
the API server or kopf, so a change to the request path shows in a number that other work on the
machine moves little.

The API runs as the operator starts it (:func:`~stratarouter_runtime.operator.api.server.start_api`,
settings from ``STRATA_*``) in a process of its own, on the memory store, with the real status
coalescer (its patches go nowhere) and the real token check: the token is screened, its review is
answered once without an API server (the one step left out) and cached, and the current-pod check
reads a view filled as the Executions watch would fill it. A keep-alive client on a raw socket sends
sequential ~1 KiB checkpoints; the API process's CPU comes from /proc.

    python -m bench.api_server [--requests 5000] [--runs 3] [--before PYTHONPATH] [--profile FILE]

``--before DIR`` runs a second API from another source tree (its ``PYTHONPATH``, e.g. an unpacked
older commit's ``operator/``) in turns with this one, for a before/after comparison. ``--profile``
samples the API with py-spy during one extra run and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.operator import _cpu_seconds
from stratarouter_dev.ports import free_port

NAMESPACE, EXECUTION, POD, POD_UID = "ns", "run", "run-a1", "uid-run-a1"
WARMUP = 500
STATE = json.dumps({"notes": "x" * 950, "step": 1})


def fake_token() -> str:
    """A token the screening passes (a JWT for our audience, not expired); nothing checks its signature
    here, as the review is answered without an API server."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"aud": ["stratarouter"], "exp": int(time.time()) + 3600, "sub": "bench"}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{'s' * 342}"


async def serve(port: int) -> None:
    """The API on ``port`` until SIGTERM (run in the child process)."""
    from kubernetes_asyncio import client

    from stratarouter_runtime.operator.api import auth, server
    from stratarouter_runtime.operator.api.connections import ApiRunner
    from stratarouter_runtime.operator.api.current_pods import PodNames
    from stratarouter_runtime.operator.api.status import StatusCoalescer
    from stratarouter_runtime.operator.settings import OperatorSettings
    from stratarouter_runtime.state import StateManager

    ident = auth.PodIdentity(namespace=NAMESPACE, pod_name=POD, pod_uid=POD_UID, service_account="default")
    claims = auth.PodClaims(ident=ident, labels={auth.EXECUTION_LABEL: EXECUTION}, owner_uid="uid-run")

    async def resolve(self: auth.Authenticator, token: str) -> auth.PodClaims:
        return claims  # the TokenReview and the pod read, answered once; cached as usual after

    async def nowhere(key: Any, body: bytes) -> tuple[int, str]:
        return 200, ""

    auth.Authenticator._resolve = resolve  # type: ignore[method-assign]
    names = PodNames()
    names.apply(
        "ADDED",
        {
            "metadata": {"namespace": NAMESPACE, "name": EXECUTION, "uid": "uid-run"},
            "status": {"podName": POD, "podUID": POD_UID, "attempt": 1},
        },
    )
    settings = OperatorSettings.from_env()
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))  # never called
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with StateManager(backend="memory") as store:
        await store.start_execution(f"{NAMESPACE}/{EXECUTION}")  # as the operator does before the pod
        status = StatusCoalescer(None, settings.status_patch_interval_seconds, send=nowhere)
        authenticator = auth.Authenticator(api, current=names)
        limits = server.limits_from(settings, store.config.max_state_bytes)
        app = server.build_app(authenticator, store, status, limits)
        runner = ApiRunner(app, app[server.CONNECTIONS_KEY], access_log=None, handle_signals=False)
        await runner.setup()
        await runner.listen("127.0.0.1", port)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()
        await status.close()
    await api.close()


class Client:
    """One keep-alive connection sending checkpoints as the pod's SDK does (Content-Length bodies)."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = (
            "POST /v1/checkpoint HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
            f"{token}\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()

    def checkpoint(self, step: int) -> None:
        body = b'{"step":%d,"compress":false,"state":%b}' % (step, STATE.encode())
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        answer = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the API closed the connection")
            answer += chunk
            end = answer.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = answer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(answer) >= end + 4 + length:
                if not answer.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"checkpoint refused: {answer[:300]!r}")
                return

    def close(self) -> None:
        self.sock.close()


def start(pythonpath: str | None, loop: str = "asyncio") -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "STRATA_DB_URL": "postgresql://unused", "STRATA_BENCH_LOOP": loop}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "bench.api_server", "--serve", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the API process did not start (exit {proc.wait()})")
    return proc, port


def one_run(
    pythonpath: str | None, requests: int, spy: tuple[str, Path] | None = None, loop: str = "asyncio"
) -> dict[str, Any]:
    """CPU and wall time per checkpoint of one API process; with ``spy``, sampled by py-spy."""
    proc, port = start(pythonpath, loop)
    client = Client(port, fake_token())
    try:
        for step in range(1, WARMUP + 1):
            client.checkpoint(step)
        sampler = None
        if spy is not None:
            cmd = [spy[0], "record", "--pid", str(proc.pid), "--rate", "1000", "--format", "raw"]
            cmd += ["--output", str(spy[1]), "--nonblocking"]
            sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu, began = _cpu_seconds(proc.pid), time.perf_counter()
        for step in range(WARMUP + 1, WARMUP + 1 + requests):
            client.checkpoint(step)
        wall, cpu = time.perf_counter() - began, _cpu_seconds(proc.pid) - cpu
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its output on ^C
            sampler.wait(timeout=30)
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
    return {"cpu_us": cpu / requests * 1e6, "wall_us": wall / requests * 1e6, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.api_server", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="timed checkpoints per run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each API, in turns")
    parser.add_argument("--before", default=None, help="PYTHONPATH of another source tree to compare")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy one extra run; collapsed stacks")
    parser.add_argument("--py-spy", default=None, help="the py-spy binary (default: py-spy on PATH)")
    parser.add_argument(
        "--uvloop", action="store_true", help="also run this tree's API on uvloop (needs uvloop importable)"
    )
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        if os.environ.get("STRATA_BENCH_LOOP") == "uvloop":
            import uvloop  # type: ignore[import-not-found, unused-ignore]

            uvloop.run(serve(args.serve))
        else:
            asyncio.run(serve(args.serve))
        return 0
    trees: dict[str, tuple[str | None, str]] = {"this tree": (None, "asyncio")}
    if args.before is not None:
        trees = {"before": (args.before, "asyncio"), **trees}
    if args.uvloop:
        trees["this tree on uvloop"] = (os.environ.get("PYTHONPATH"), "uvloop")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    load = os.getloadavg()
    for _ in range(args.runs):
        for name, (path, loop) in trees.items():
            results[name].append(one_run(path, args.requests, loop=loop))
    print(
        f"checkpoint API alone (memory store, token check without a review, status patches to nowhere): "
        f"{args.requests} sequential ~1 KiB checkpoints per run, {args.runs} run(s) each; load average "
        f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print("| API | CPU per checkpoint (median; runs) | wall per checkpoint (median) |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        cpus = [r["cpu_us"] for r in runs]
        walls = [r["wall_us"] for r in runs]
        listed = ", ".join(f"{c:.0f}" for c in cpus)
        print(f"| {name} | {statistics.median(cpus):.0f} µs ({listed}) | {statistics.median(walls):.0f} µs |")
    if args.profile is not None:
        binary = args.py_spy or shutil.which("py-spy")
        if binary is None:
            print("--profile needs py-spy (pip install py-spy; or --py-spy PATH)", file=sys.stderr)
            return 2
        from bench.api_path import summarise

        run = one_run(None, args.requests, (binary, args.profile))
        print("\n" + "\n".join(summarise(args.profile, args.requests, run["cpu"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
