"""Make a pod on a kwok node end the way a crashed container would.

kwok never runs containers, so a workload cannot crash by itself. What the
operator sees when a real container dies is the pod's status: phase ``Failed``
and ``containerStatuses[].state.terminated.exitCode``. :func:`fail_pod` writes
exactly that through the status subresource, as a kubelet would.

kwok's default pod stages only touch a pod that has no ``podIP`` yet (it then
marks it Running), a Running pod owned by a Job (it marks it Succeeded), and a
pod being deleted (it removes it). A failed pod keeps its podIP, so kwok leaves
it alone; that is why :func:`fail_pod` first waits for kwok to have started it.

From a shell, against ``make cluster-up`` (``--exit-code 0`` ends the pod Succeeded, as a kubelet
would, with reason ``Completed``)::

    python -m stratarouter_dev.pods fail POD -n NAMESPACE --exit-code 137
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_runtime.operator.resources.base import MERGE_PATCH
from stratarouter_runtime.state.pod_contract import TOKEN_AUDIENCE

Pod = dict[str, Any]


#: The audience of the tokens the operator's pods carry (see operator/pods.py).


def request_pod_token(api: KubeApi, pod: Pod, *, audience: str = TOKEN_AUDIENCE, seconds: int = 3600) -> str:
    """A service-account token bound to ``pod``, as the kubelet projects it into the pod's volume.

    For kwok pods, whose processes a test or benchmark plays: on the real node the kubelet does this.
    """
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


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def wait_for_pod(
    api: KubeApi,
    namespace: str,
    name: str,
    condition: Callable[[Pod | None], bool],
    *,
    timeout: float = 30.0,
    what: str = "the expected state",
) -> Pod | None:
    """Poll the pod until ``condition(pod)`` holds (``pod`` is None once it is gone); return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pod: Pod | None = api.get(_pod_path(namespace, name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            pod = None
        if condition(pod):
            return pod
        if time.monotonic() > deadline:
            phase = pod.get("status", {}).get("phase") if pod else "gone"
            raise TimeoutError(f"pod {namespace}/{name} did not reach {what} in {timeout}s (phase: {phase})")
        time.sleep(0.1)


def is_running(pod: Pod | None) -> bool:
    """Running as kwok reports it: phase Running with a pod IP."""
    status = (pod or {}).get("status", {})
    return status.get("phase") == "Running" and bool(status.get("podIP"))


def fail_pod(
    api: KubeApi,
    namespace: str,
    name: str,
    exit_code: int = 1,
    *,
    reason: str | None = None,
    message: str = "",
    timeout: float = 30.0,
) -> Pod:
    """End the pod as if every container exited with ``exit_code``; return the updated pod.

    The phase follows the exit code as a kubelet's would for ``restartPolicy: Never``: Failed, or
    Succeeded for 0 (see :func:`succeed_pod`), and so does the default ``reason``: ``Error``, or
    ``Completed`` for 0. Waits (up to ``timeout``) for the pod to be Running first, so kwok cannot
    overwrite the outcome.
    """
    reason = reason or terminated_reason(exit_code)
    pod = wait_for_pod(api, namespace, name, is_running, timeout=timeout, what="Running")
    assert pod is not None  # is_running(None) is False
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = {s["name"]: s for s in pod["status"].get("containerStatuses", [])}
    statuses = []
    for container in pod["spec"]["containers"]:
        before = previous.get(container["name"], {})
        started = before.get("state", {}).get("running", {}).get("startedAt", now)
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now,
        }
        if message:
            terminated["message"] = message
        statuses.append(
            {
                "name": container["name"],
                "image": container.get("image", before.get("image", "")),
                "imageID": before.get("imageID", ""),
                "ready": False,
                "started": False,
                "restartCount": before.get("restartCount", 0),
                "state": {"terminated": terminated},
            }
        )
    conditions = [
        {
            **c,
            "status": "False",
            "lastTransitionTime": now,
            "reason": "PodCompleted" if exit_code == 0 else "PodFailed",
        }
        if c.get("type") in {"Ready", "ContainersReady"}
        else c
        for c in pod["status"].get("conditions", [])
    ]
    phase = "Succeeded" if exit_code == 0 else "Failed"
    patch = {"status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses}}
    return api.request("PATCH", _pod_path(namespace, name) + "/status", patch, content_type=MERGE_PATCH)


def terminated_reason(exit_code: int) -> str:
    """The kubelet's ``state.terminated.reason`` for a container that exited by itself with ``exit_code``."""
    return "Completed" if exit_code == 0 else "Error"


def succeed_pod(api: KubeApi, namespace: str, name: str, *, timeout: float = 30.0) -> Pod:
    """End the pod Succeeded, every container terminated with exit code 0 (reason Completed)."""
    return fail_pod(api, namespace, name, 0, reason="Completed", timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """``python -m stratarouter_dev.pods fail POD [-n NS] [--exit-code N]`` (uses $KUBECONFIG)."""
    parser = argparse.ArgumentParser(
        prog="stratarouter-dev-pods",
        description="End a kwok pod as a kubelet reports a container that exited: phase Failed, or "
        "Succeeded for exit code 0.",
    )
    parser.add_argument("action", choices=["fail"])
    parser.add_argument("pod")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--exit-code", type=int, default=1, help="default: 1 (0 ends the pod Succeeded)")
    parser.add_argument(
        "--reason",
        default=None,
        help="state.terminated.reason (default: Error, or Completed for exit code 0)",
    )
    args = parser.parse_args(argv)
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        parser.error("set KUBECONFIG (run the export lines printed by `make cluster-up`)")
    api = KubeApi.from_kubeconfig(Path(kubeconfig))
    reason = args.reason or terminated_reason(args.exit_code)
    pod = fail_pod(api, args.namespace, args.pod, args.exit_code, reason=reason)
    phase = pod.get("status", {}).get("phase", "Succeeded" if args.exit_code == 0 else "Failed")
    print(f"pod {args.namespace}/{args.pod} marked {phase}: exit code {args.exit_code}, reason {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
