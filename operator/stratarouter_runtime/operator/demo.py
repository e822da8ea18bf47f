"""``stratarouter demo`` (``make demo``): a run that crashes mid-way and resumes from its last checkpoint.

On this machine alone: a throwaway Kubernetes control plane (kwok nodes), a throwaway PostgreSQL, the
operator as a subprocess, and the sample Execution of ``examples/execution.yaml``. kwok pods run no
containers, so a small driver plays each pod's process: it reads the pod's contract env from the pod
spec, gets the pod a token bound to it (TokenRequest, audience ``stratarouter``), and runs
``examples/workload.py`` with that env, the same code a user puts in the image. Midway the demo
kills the workload and marks the pod Failed (exit 137, as after an OOM kill); the operator creates
attempt 2, which loads the state of the last checkpoint and continues at the next step. When the
workload exits 0 the driver marks the pod Succeeded and the Execution ends Succeeded.

Everything is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from stratarouter_runtime.dev.kubeapi import MERGE_PATCH, KubeApi, KubeApiError
from stratarouter_runtime.dev.pods import fail_pod, is_running, wait_for_pod
from stratarouter_runtime.dev.ports import free_port

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
GROUP_PATH = "/apis/stratarouter.io/v1alpha1"
NAMESPACE = "stratarouter-demo"
AUDIENCE = "stratarouter"
FAIL_AT_STEP = 6

Obj = dict[str, Any]


class DemoError(RuntimeError):
    """A step of the demo did not happen in time; the message says which."""


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# -- the pod driver: plays a pod's container on a kwok node -------------------------------------------


def pod_env(pod: Obj, container: int = 0) -> dict[str, str]:
    """The literal env of a pod's container (what the kubelet would hand the process)."""
    spec = pod["spec"]["containers"][container]
    return {e["name"]: str(e.get("value", "")) for e in spec.get("env", []) if "valueFrom" not in e}


def request_pod_token(api: KubeApi, pod: Obj, *, audience: str = AUDIENCE, seconds: int = 3600) -> str:
    """A service-account token bound to ``pod`` (what the kubelet projects into the pod's volume)."""
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience],
            "expirationSeconds": seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    answer = api.request("POST", path, body)
    token: str = answer["status"]["token"]
    return token


def mark_pod_succeeded(api: KubeApi, namespace: str, name: str) -> None:
    """Play the kubelet after every container exited 0: one status write, phase Succeeded."""
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {
                "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
            },
        }
        for c in pod["spec"]["containers"]
    ]
    patch = {"status": {"phase": "Succeeded", "containerStatuses": statuses}}
    api.request(
        "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", patch, content_type=MERGE_PATCH
    )


@dataclass
class PodProcess:
    """The workload running on behalf of one pod."""

    pod: str
    proc: subprocess.Popen[str]
    token_file: Path

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            yield line.rstrip("\n")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(FileNotFoundError):
            self.token_file.unlink()


def start_pod_process(
    api: KubeApi,
    namespace: str,
    pod_name: str,
    command: list[str],
    *,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> PodProcess:
    """Run ``command`` as the pod's process: its contract env, and a bound token in STRATA_TOKEN_FILE."""
    pod = api.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
    env = {**os.environ, **pod_env(pod), **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    fd, token_path = tempfile.mkstemp(prefix=f"{pod_name}-token-", dir=workdir)
    with os.fdopen(fd, "w") as fh:
        fh.write(request_pod_token(api, pod))
    env["STRATA_TOKEN_FILE"] = token_path
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
    )
    return PodProcess(pod_name, proc, Path(token_path))


# -- the demo ------------------------------------------------------------------------------------------


class Demo:
    """Owns every process and directory the demo starts, and removes them in :meth:`close`."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="strata-demo-"))
        self.cluster: Any = None
        self.postgres: Any = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.operator_log = self.workdir / "operator.log"
        self.api_port = free_port()
        self.pod_procs: list[PodProcess] = []

    # infrastructure
    def start_infrastructure(self) -> None:
        from stratarouter_runtime.dev.cluster import LocalCluster
        from stratarouter_runtime.dev.postgres import PostgresServer

        say("Starting a throwaway Kubernetes control plane (etcd, kube-apiserver, scheduler, kwok nodes)")
        started = time.monotonic()
        self.cluster = LocalCluster.start(die_with_parent=True)
        print(f"    API server at {self.cluster.server}, up in {time.monotonic() - started:.1f}s")
        say("Starting a throwaway PostgreSQL (the checkpoint store)")
        self.postgres = PostgresServer.start()
        print(f"    {self.postgres.dsn}")

    @property
    def api(self) -> KubeApi:
        api: KubeApi = self.cluster.api
        return api

    def kubectl(self, *args: str) -> str:
        out: str = self.cluster.kubectl(*args)
        return out

    def apply_crds(self) -> None:
        from stratarouter_runtime.operator.crds import write_crds

        say("Installing the CRDs: executions.stratarouter.io, snapshots.stratarouter.io")
        for path in write_crds(self.workdir / "crds", chart=None):
            self.kubectl("apply", "--server-side", "-f", str(path))
        for name in ("executions", "snapshots"):
            self.kubectl(
                "wait", "--for=condition=Established", f"crd/{name}.stratarouter.io", "--timeout=60s"
            )
        self.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        wait_until(
            "the namespace's default service account",
            lambda: self.api.exists(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"),
        )

    def start_operator(self, *, verbose: bool = True) -> None:
        say("Starting the operator: `stratarouter operator` (kopf handlers + checkpoint API on 127.0.0.1)")
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "STRATA_DB_URL": self.postgres.dsn,
            "STRATA_API_HOST": "127.0.0.1",
            "STRATA_API_PORT": str(self.api_port),
            "STRATA_API_URL_FOR_PODS": f"http://127.0.0.1:{self.api_port}",
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [sys.executable, "-m", "stratarouter_runtime.cli", "operator", "--", "--standalone"]
        cmd += ["-n", NAMESPACE] + (["--verbose"] if verbose else [])
        with self.operator_log.open("ab") as log:
            self.operator = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until("the operator's /healthz", self._operator_healthy, timeout=90, every=0.3)
        print(f"    healthy; log: {self.operator_log}")

    def _operator_healthy(self) -> bool:
        if self.operator is not None and self.operator.poll() is not None:
            raise DemoError(f"the operator exited with {self.operator.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    # the run
    def execution(self, name: str) -> Obj:
        return self.api.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions/{name}")

    def show(self) -> None:
        print("    $ kubectl get executions -n", NAMESPACE)
        for line in self.kubectl("get", "executions", "-n", NAMESPACE).rstrip().splitlines():
            print(f"    {line}")

    def apply_execution(self) -> str:
        manifest = EXAMPLES / "execution.yaml"
        say(f"Applying the sample Execution ({manifest.relative_to(REPO)})")
        self.kubectl("apply", "-n", NAMESPACE, "-f", str(manifest))
        name: str = yaml.safe_load(manifest.read_text())["metadata"]["name"]
        return name

    def wait_current_pod(self, name: str, attempt: int) -> str:
        """Wait until the Execution names attempt ``attempt``'s pod and kwok runs it."""

        def current() -> str | None:
            status = self.execution(name).get("status") or {}
            pod = status.get("podName")
            return pod if pod and int(status.get("attempt") or 0) >= attempt else None

        pod: str = wait_until(f"attempt {attempt}'s pod", current, timeout=90)
        wait_for_pod(self.api, NAMESPACE, pod, is_running, timeout=60, what="Running")
        return pod

    def run_pod(self, pod: str, *, stop_at_step: int | None) -> int | None:
        """Run the workload as ``pod``'s process; kill it after ``stop_at_step`` (None: run to the end)."""
        workload = EXAMPLES / "workload.py"
        proc = start_pod_process(
            self.api, NAMESPACE, pod, [sys.executable, str(workload)], workdir=self.workdir
        )
        self.pod_procs.append(proc)
        for line in proc.lines():
            print(f"    [{pod}] {line}", flush=True)
            if stop_at_step is not None and f"step {stop_at_step}/" in line:
                proc.kill()
                return None
        return proc.proc.wait(timeout=30)

    def history(self, name: str) -> None:
        from stratarouter_runtime.state import StateManager

        async def read() -> None:
            async with StateManager(backend="postgresql", db_url=self.postgres.dsn) as store:
                execution_id = f"{NAMESPACE}/{name}"
                record = await store.get_execution(execution_id)
                history = await store.get_history(execution_id)
                if record is not None:
                    print(
                        f"    store: status={record.status.value} attempt={record.attempt} "
                        f"last_checkpoint_step={record.last_checkpoint_step}"
                    )
                print("    STEP  ATTEMPT  TOTAL  WRITTEN AT")
                for cp in history:
                    at = cp.timestamp.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
                    print(f"    {cp.step:>4}  {cp.attempt:>7}  {cp.state_data['total']:>5}  {at}")

        asyncio.run(read())

    def close(self) -> None:
        for proc in self.pod_procs:
            proc.close()
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(timeout=10)
        if self.cluster is not None:
            self.cluster.stop()
        if self.postgres is not None:
            self.postgres.stop()
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)


def run_demo(demo: Demo) -> None:
    demo.start_infrastructure()
    demo.apply_crds()
    demo.start_operator()
    name = demo.apply_execution()

    pod1 = demo.wait_current_pod(name, 1)
    say(f"The operator created pod {pod1}; kwok schedules it but runs no container, so the driver runs")
    print(f"    examples/workload.py with the pod's env and a token bound to {pod1} (TokenRequest).")
    demo.show()
    demo.run_pod(pod1, stop_at_step=FAIL_AT_STEP)
    say(f"Crash! Killed the workload after step {FAIL_AT_STEP} and marked {pod1} Failed (exit code 137)")
    fail_pod(demo.api, NAMESPACE, pod1, 137, reason="OOMKilled")
    demo.show()

    pod2 = demo.wait_current_pod(name, 2)
    status = demo.execution(name)["status"]
    resume = pod_env(demo.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod2}")).get("STRATA_RESUME_STEP")
    say(f"The operator recreated the run as {pod2} (restarts={status.get('restarts')})")
    print(f"    its env says STRATA_RESUME_STEP={resume}: the step of the last durable checkpoint")
    demo.show()
    code = demo.run_pod(pod2, stop_at_step=None)
    if code != 0:
        raise DemoError(f"attempt 2's workload exited {code}")
    say(f"The workload exited 0; marking {pod2} Succeeded (as the kubelet would)")
    mark_pod_succeeded(demo.api, NAMESPACE, pod2)
    wait_until(
        "phase Succeeded", lambda: (demo.execution(name).get("status") or {}).get("phase") == "Succeeded"
    )
    demo.show()
    say(f"History of {NAMESPACE}/{name} in the store")
    print(f"    attempt 1 wrote steps 1-{FAIL_AT_STEP}; attempt 2 resumed at step {FAIL_AT_STEP + 1}")
    demo.history(name)
    say("Demo finished: the run survived a crash and resumed from its last checkpoint. Cleaning up.")


def main() -> int:
    """Entry point of ``stratarouter demo``; returns the exit code."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    demo = Demo()
    try:
        run_demo(demo)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (DemoError, KubeApiError, subprocess.SubprocessError, OSError, RuntimeError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        if demo.operator_log.exists():
            tail = demo.operator_log.read_text(errors="replace").splitlines()[-40:]
            print("--- operator log (last 40 lines) ---\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
