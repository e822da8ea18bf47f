"""``stratarouter operator`` as a process on the host, which can be killed and started again at any moment.

The demo, the chaos suite and the operator's tests all run it this way: a test SIGKILLs it like a
crashed or OOM-killed operator pod and starts the next *generation*; each generation's metrics count
from zero, so callers remember when the current one started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from stratarouter_dev.ports import free_port

START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
LOG_TAIL_CHARS = 4000


class OperatorExitedError(RuntimeError):
    """The operator process ended by itself; the message carries the end of its log."""


def operator_environment(
    kubeconfig: Path, db_url: str, *, api_host: str = "127.0.0.1", **settings: str
) -> dict[str, str]:
    """The environment of an operator that logs in with ``kubeconfig`` and stores in ``db_url``.

    Its checkpoint API listens on a free port of ``api_host``: loopback for kwok pods (a test plays
    their processes on the host), the real node's bridge gateway for pods in real containers.
    ``settings`` are further ``STRATA_*`` variables.
    """
    port = free_port()
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "STRATA_DB_URL": db_url,
        "STRATA_API_HOST": api_host,
        "STRATA_API_PORT": str(port),
        "STRATA_API_URL_FOR_PODS": f"http://{api_host}:{port}",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


class OperatorProcess:
    """One namespace's operator; standalone unless ``STRATA_PEERING`` is in its environment."""

    def __init__(
        self, env: Mapping[str, str], namespace: str, log_path: Path, *, verbose: bool = True
    ) -> None:
        self.env = dict(env)
        self.namespace = namespace
        self.log_path = log_path
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.started_at = 0.0
        """``time.time()`` just before the current generation's process was started."""
        self.kills = 0
        self.downtime = 0.0
        """Seconds without a healthy operator after kills, summed by whoever measures them."""

    @property
    def api_port(self) -> int:
        return int(self.env["STRATA_API_PORT"])

    @property
    def api_url(self) -> str:
        return f"http://{self.env['STRATA_API_HOST']}:{self.api_port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the operator was never started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "stratarouter_runtime.cli", "operator"]
        if not self.env.get("STRATA_PEERING"):
            cmd.append("--standalone")
        cmd += ["-n", self.namespace]
        return cmd + (["--verbose"] if self.verbose else [])

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the next generation and wait until its /healthz answers."""
        if self.running:
            raise RuntimeError("the operator is already running")
        self.generation += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== operator generation {self.generation} =====\n".encode())
            log.flush()
            self.started_at = time.time()
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the operator was not healthy within {timeout:.0f}s (log: {self.log_path})"
                )
            time.sleep(0.2)

    def healthy(self) -> bool:
        """Whether /healthz answers 200; raises if the process has exited by itself."""
        if self.proc is not None and self.proc.poll() is not None:
            raise OperatorExitedError(
                f"the operator exited with {self.proc.returncode} (log: {self.log_path}):\n"
                f"{self.logs()[-LOG_TAIL_CHARS:]}"
            )
        try:
            with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.api_url}/metrics", timeout=10) as resp:
            text: str = resp.read().decode()
        return text

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL: a crashed pod) to the running operator; returns once it is gone.

        Raises if it had exited by itself: a kill that finds nothing to kill hides a crash."""
        if self.proc is None:
            raise RuntimeError("the operator was never started")
        if self.proc.poll() is not None:
            raise OperatorExitedError(f"the operator had exited with {self.proc.returncode} before the kill")
        self.proc.send_signal(sig)
        self._wait_or_kill()
        self.kills += 1

    def stop(self) -> None:
        """A clean shutdown (SIGTERM; SIGKILL after 20 s); nothing if it is not running."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            self._wait_or_kill()

    def _wait_or_kill(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
