"""``make demo`` (``python -m stratarouter_dev.demo``): a run dies for real and resumes from its checkpoint.

On this machine alone: a throwaway Kubernetes control plane with one real node (a kubelet with
containerd and runc, images built without Docker), a throwaway PostgreSQL, the operator as a process
on the host (its checkpoint API on the pod bridge's gateway, where pods reach it), and the sample
Execution of ``examples/execution.yaml``. ``examples/workload.py`` runs in a real container with the
token the kubelet projects. After step 6 of its first attempt it allocates memory until its memory
limit OOM-kills it; the kubelet reports ``OOMKilled``, the operator creates attempt 2, and a new
container loads the state of the last checkpoint and continues at the next step.

Everything is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.node import pod_placement
from stratarouter_dev.operator_process import OperatorProcess, operator_environment
from stratarouter_runtime.operator.resources.base import GROUP_PATH

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NAMESPACE = "stratarouter-demo"
FAIL_AT_STEP = 6
#: Enough for the workload's Python; its deliberate allocation after step 6 overruns it.
MEMORY_LIMIT = "96Mi"
#: How long the operator may take to answer /healthz (imports, login, CRD discovery on a busy machine).
OPERATOR_START_SECONDS = 90.0

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


def on_the_real_node(manifest: Obj, *, fail_at_step: int) -> Obj:
    """The sample Execution, placed on the real node, with a memory limit its first attempt overruns."""
    execution = copy.deepcopy(manifest)
    pod = execution["spec"]["template"]["spec"]
    pod.update(pod_placement())
    container = pod["containers"][0]
    container.setdefault("resources", {}).setdefault("limits", {})["memory"] = MEMORY_LIMIT
    container["env"] = [
        *container.get("env", []),
        {"name": "FAIL_AT_STEP", "value": str(fail_at_step)},
        {"name": "FAIL_HOW", "value": "oom"},
    ]
    return execution


# -- the demo ------------------------------------------------------------------------------------------


class Demo:
    """Owns every process and directory the demo starts, and removes them in :meth:`close`."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="strata-demo-"))
        self.cluster: Any = None
        self.postgres: Any = None
        self.operator: OperatorProcess | None = None
        self.operator_log = self.workdir / "operator.log"
        self.log_followers: list[subprocess.Popen[str]] = []

    # infrastructure
    def start_infrastructure(self, *, real_node: bool = True) -> None:
        from stratarouter_dev.cluster import LocalCluster
        from stratarouter_dev.postgres import PostgresServer

        say(
            "Starting a throwaway Kubernetes cluster: etcd, kube-apiserver, scheduler, kwok and one real node"
        )
        print(
            "    (the real node is a kubelet with containerd and runc; its images are built without Docker)"
        )
        started = time.monotonic()
        self.cluster = LocalCluster.start(die_with_parent=True, real_node=real_node)
        print(f"    API server at {self.cluster.server}, up in {time.monotonic() - started:.1f}s")
        say("Starting a throwaway PostgreSQL (the checkpoint store)")
        self.postgres = PostgresServer.start()
        print(f"    {self.postgres.dsn}")

    @property
    def api(self) -> KubeApi:
        api: KubeApi = self.cluster.api
        return api

    @property
    def api_host(self) -> str:
        """Where the checkpoint API listens: the pod bridge's gateway, which pods on the real node reach
        and nothing off the machine does; loopback when there is no real node."""
        return self.cluster.node.gateway if self.cluster.node is not None else "127.0.0.1"

    @property
    def api_url(self) -> str:
        """The operator's checkpoint API (where pods reach it)."""
        if self.operator is None:
            raise DemoError("the operator is not started")
        return self.operator.api_url

    def kubectl(self, *args: str, input: str | None = None) -> str:
        out: str = self.cluster.kubectl(*args, input=input)
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
        env = operator_environment(self.cluster.kubeconfig, self.postgres.dsn, api_host=self.api_host)
        self.operator = OperatorProcess(env, NAMESPACE, self.operator_log, verbose=verbose)
        say(f"Starting the operator: `stratarouter operator` (handlers + checkpoint API on {self.api_url})")
        self.operator.start(timeout=OPERATOR_START_SECONDS)
        print(f"    healthy; log: {self.operator_log}")

    # the run
    def execution(self, name: str) -> Obj:
        return self.api.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions/{name}")

    def show(self, *what: str) -> None:
        for kind in what or ("executions",):
            scope = () if kind == "nodes" else ("-n", NAMESPACE)  # nodes belong to no namespace
            args = ("get", kind, *scope) + (("-o", "wide") if kind in ("pods", "nodes") else ())
            print(f"    $ kubectl {' '.join(args)}")
            for line in self.kubectl(*args).rstrip().splitlines():
                print(f"    {line}")

    def apply_execution(self) -> str:
        manifest = EXAMPLES / "execution.yaml"
        say(f"Applying the sample Execution ({manifest.relative_to(REPO)}) on the real node")
        print(
            f"    with a node selector and toleration for the real node, a {MEMORY_LIMIT} memory limit, and"
            f" FAIL_AT_STEP={FAIL_AT_STEP} FAIL_HOW=oom:\n    its first attempt allocates memory after step"
            f" {FAIL_AT_STEP} until the kernel OOM-kills it"
        )
        execution = on_the_real_node(yaml.safe_load(manifest.read_text()), fail_at_step=FAIL_AT_STEP)
        self.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(execution))
        name: str = execution["metadata"]["name"]
        return name

    def wait_current_pod(self, name: str, attempt: int) -> str:
        """Wait until the Execution names attempt ``attempt``'s pod and its container runs."""

        def current() -> str | None:
            status = self.execution(name).get("status") or {}
            pod = status.get("podName")
            return pod if pod and int(status.get("attempt") or 0) >= attempt else None

        pod: str = wait_until(f"attempt {attempt}'s pod", current, timeout=90)
        wait_until(f"pod {pod} running", lambda: self._phase(pod) in ("Running", "Succeeded", "Failed"), 90)
        return pod

    def _pod(self, pod: str) -> Obj | None:
        try:
            return self.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _phase(self, pod: str) -> str | None:
        body = self._pod(pod)
        return None if body is None else (body.get("status") or {}).get("phase")

    def follow_logs(self, pod: str) -> subprocess.Popen[str]:
        """``kubectl logs -f POD``: the container's output through the API server and the kubelet."""
        proc = subprocess.Popen(
            [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}", "logs", "-f",
             "-n", NAMESPACE, pod],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.cluster.env,
        )  # fmt: skip
        self.log_followers.append(proc)
        return proc

    def print_logs(self, pod: str, follower: subprocess.Popen[str]) -> None:
        out, _ = follower.communicate(timeout=60)
        print(f"    $ kubectl logs -n {NAMESPACE} {pod}")
        for line in out.rstrip().splitlines():
            print(f"    {line}")

    def wait_terminated(self, pod: str) -> Obj:
        """The terminated state of the pod's container, as the kubelet reported it."""

        def terminated() -> Obj | None:
            body = self._pod(pod) or {}
            for status in (body.get("status") or {}).get("containerStatuses") or []:
                state = (status.get("state") or {}).get("terminated")
                if state:
                    return dict(state)
            return None

        found: Obj = wait_until(f"pod {pod}'s container to terminate", terminated, timeout=120)
        return found

    def describe_termination(self, pod: str) -> None:
        """The lines of ``kubectl describe pod`` that say how the container ended (if it still exists)."""
        with contextlib.suppress(RuntimeError):
            described = self.kubectl("describe", "pod", "-n", NAMESPACE, pod)
            print(f"    $ kubectl describe pod -n {NAMESPACE} {pod}   (excerpt)")
            keep = ("State:", "Reason:", "Exit Code:", "Started:", "Finished:", "Last State:", "Node:", "IP:")
            for line in described.splitlines():
                if line.strip().startswith(keep):
                    print(f"    {line.rstrip()}")

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
        for follower in self.log_followers:
            if follower.poll() is None:
                follower.kill()
                follower.wait(timeout=10)
        if self.operator is not None:
            self.operator.stop()
        if self.cluster is not None:
            self.cluster.stop()
        if self.postgres is not None:
            self.postgres.stop()
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)


def run_demo(demo: Demo) -> None:
    demo.start_infrastructure()
    demo.show("nodes")
    demo.apply_crds()
    demo.start_operator()
    name = demo.apply_execution()

    pod1 = demo.wait_current_pod(name, 1)
    logs1 = demo.follow_logs(pod1)
    say(f"The operator created pod {pod1}; the kubelet runs it in a container on the real node")
    demo.show("executions", "pods")
    state = demo.wait_terminated(pod1)
    say(
        f"Crash! The kernel killed {pod1}'s container: reason {state.get('reason')}, "
        f"exit code {state.get('exitCode')}"
    )
    demo.describe_termination(pod1)
    demo.show()
    demo.print_logs(pod1, logs1)

    pod2 = demo.wait_current_pod(name, 2)
    logs2 = demo.follow_logs(pod2)
    status = demo.execution(name)["status"]
    body = demo._pod(pod2) or {"spec": {"containers": [{}]}}
    env = {e["name"]: e.get("value", "") for e in body["spec"]["containers"][0].get("env", [])}
    say(f"The operator recreated the run as {pod2} (restarts={status.get('restarts')})")
    resume = env.get("STRATA_RESUME_STEP")
    print(f"    its env says STRATA_RESUME_STEP={resume}: the step of its last durable write")
    demo.show("executions", "pods")
    wait_until(
        "phase Succeeded",
        lambda: (demo.execution(name).get("status") or {}).get("phase") == "Succeeded",
        timeout=120,
    )
    say(f"{pod2}'s container exited 0 and the Execution is Succeeded")
    demo.show()
    demo.print_logs(pod2, logs2)
    say(f"History of {NAMESPACE}/{name} in the store")
    print(f"    attempt 1 wrote steps 1-{FAIL_AT_STEP}; attempt 2 resumed at step {FAIL_AT_STEP + 1}")
    demo.history(name)
    say("Demo finished: the run survived a real OOM kill and resumed from its last checkpoint. Cleaning up.")


def main() -> int:
    """Entry point of ``make demo``; returns the exit code."""

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
