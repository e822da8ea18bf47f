"""The operator of a chaos run as a subprocess that can be SIGKILLed and started again at any moment.

Like ``make demo`` runs it (``stratarouter operator -- --standalone -n NS``), but with the
store's DSN given by the run: it points at the loopback proxy that the run cuts. Each start is a new
*generation*; its metrics count from zero, so the run remembers when the last one started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stratarouter_dev.ports import free_port

START_TIMEOUT = 120.0
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


class OperatorExitedError(RuntimeError):
    """The operator process ended by itself (the run never stops it that way)."""


class OperatorProcess:
    """``stratarouter operator`` for one namespace; its checkpoint API on ``api_host`` (loopback, or the
    real node's bridge gateway when pods in real containers must reach it)."""

    def __init__(
        self, kubeconfig: Path, db_url: str, namespace: str, log_path: Path, api_host: str = "127.0.0.1"
    ) -> None:
        self.port = free_port()
        self.host = api_host
        self.namespace = namespace
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "STRATA_DB_URL": db_url,
            "STRATA_API_HOST": api_host,
            "STRATA_API_PORT": str(self.port),
            "STRATA_API_URL_FOR_PODS": self.api_url,
            "STRATA_HANDLER_BACKOFF_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.started_at = 0.0
        """``time.time()`` just before the current generation's process was started."""
        self.kills = 0
        self.downtime = 0.0

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start a new generation and wait until its /healthz answers."""
        assert self.proc is None or self.proc.poll() is not None, "the operator is already running"
        self.generation += 1
        cmd = [sys.executable, "-m", "stratarouter_runtime.cli", "operator", "--", "--standalone"]
        cmd += ["-n", self.namespace]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== chaos: operator generation {self.generation} =====\n".encode())
            log.flush()
            self.started_at = time.time()
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator was not healthy within {START_TIMEOUT:.0f}s")
            time.sleep(0.2)

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise OperatorExitedError(
                f"the operator exited with {self.proc.returncode} (log: {self.log_path})"
            )
        try:
            with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed operator pod; returns once the process is gone."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise OperatorExitedError(f"the operator had exited with {self.proc.returncode} before the kill")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.api_url}/metrics", timeout=10) as resp:
            text: str = resp.read().decode()
        return text


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` (with labels) in a Prometheus text page."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        found.append((labels, float(match["value"])))
    return found
