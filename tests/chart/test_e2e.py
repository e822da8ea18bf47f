"""End to end on a kind cluster (``make kind-e2e``, needs Docker): the chart's operator image runs the example
workload (``examples/workload.py``) in real containers, and a killed pod resumes from its last checkpoint.

Skipped unless ``hack/kind-e2e.sh`` points ``STRATA_E2E_KUBECONFIG`` at the kind cluster that
``hack/kind-up.sh`` made; the local control plane of ``make test`` has no container runtime.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client, config

KUBECONFIG = os.environ.get("STRATA_E2E_KUBECONFIG", "")
EXAMPLE_IMAGE = os.environ.get("STRATA_E2E_EXAMPLE_IMAGE", "stratarouter-example:dev")
GROUP, VERSION, PLURAL = "stratarouter.io", "v1alpha1", "executions"
WAIT_SECONDS = 300.0

pytestmark = pytest.mark.skipif(not KUBECONFIG, reason="kind only: run `make kind-e2e` where Docker exists")


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)


def _execution(name: str, steps: int, step_seconds: float) -> dict[str, Any]:
    env = [{"name": "STEPS", "value": str(steps)}, {"name": "STEP_SECONDS", "value": str(step_seconds)}]
    container = {"name": "workload", "image": EXAMPLE_IMAGE, "imagePullPolicy": "Never", "env": env}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Execution",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [container]}},
            "recovery": {"maxRestarts": 3, "backoffSeconds": 1},
        },
    }


async def _status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    status: dict[str, Any] = obj.get("status") or {}
    return status


async def _wait_for(
    api: client.ApiClient, namespace: str, name: str, what: str, check: Any
) -> dict[str, Any]:
    """Poll the Execution's status until ``check(status)``; fail with the last status after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await _status(api, namespace, name)
        if check(status):
            return status
        assert status.get("phase") != "Failed", status
        await asyncio.sleep(1)
    raise AssertionError(f"{namespace}/{name} never reached {what}; last status: {status}")


async def test_example_workload_runs_to_success(api: client.ApiClient, namespace: str) -> None:
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _execution("count", steps=5, step_seconds=0.2)
    )
    status = await _wait_for(api, namespace, "count", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert status["lastCheckpoint"]["step"] == 5
    assert status.get("restarts", 0) == 0


async def test_killed_pod_resumes_from_its_last_checkpoint(api: client.ApiClient, namespace: str) -> None:
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _execution("resume", steps=30, step_seconds=1.0)
    )
    running = await _wait_for(
        api, namespace, "resume", "step 3", lambda s: (s.get("lastCheckpoint") or {}).get("step", 0) >= 3
    )
    await client.CoreV1Api(api).delete_namespaced_pod(running["podName"], namespace, grace_period_seconds=0)
    status = await _wait_for(api, namespace, "resume", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert status["restarts"] >= 1
    assert status["attempt"] >= 2
    assert status["lastCheckpoint"]["step"] == 30
    pod = await client.CoreV1Api(api).read_namespaced_pod(status["podName"], namespace)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert int(env["STRATA_RESUME_STEP"]) >= 3, env
