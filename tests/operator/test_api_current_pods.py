"""The checkpoint API's watched view of the Executions' current pods, against the real API server.

No operator here: the test writes ``status.podName``, ``podUID`` and ``attempt`` itself, as the
lifecycle would, and waits for the view to follow (list first, then watch events: create, status
change, delete).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio import config as k8s_config

from stratarouter_runtime.operator.api.current_pods import Current, CurrentPods
from tests.operator.conftest import MERGE_PATCH, Executions

pytestmark = [pytest.mark.cluster]


@pytest.fixture
async def api_client(cluster: Any) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    yield api
    await api.close()


WAIT_SECONDS = 30.0


async def eventually(what: str, probe: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_view_follows_lists_and_watch_events(
    api_client: client.ApiClient, executions: Executions, namespace: str
) -> None:
    listed = executions.create("listed")
    view = CurrentPods(api_client, [namespace])
    view.start()
    try:
        uid = listed["metadata"]["uid"]
        nothing = Current("", "", 0, uid)
        await eventually("the listed Execution", lambda: view.names.current(namespace, "listed") == nothing)

        watched = executions.create("watched")
        await eventually(
            "the created Execution",
            lambda: (
                view.names.current(namespace, "watched") == Current("", "", 0, watched["metadata"]["uid"])
            ),
        )
        executions.kube.request(
            "PATCH",
            executions.path("listed") + "/status",
            {"status": {"podName": "listed-a2", "podUID": "pod-uid-2", "attempt": 2}},
            content_type=MERGE_PATCH,
        )
        await eventually(
            "the new current pod",
            lambda: view.names.current(namespace, "listed") == Current("listed-a2", "pod-uid-2", 2, uid),
        )
        seen = view.names.current(namespace, "listed")
        assert seen is not None
        assert seen.is_pod("pod-uid-2")
        assert not seen.is_pod("another-uid")
        executions.delete("watched")
        await eventually("the deleted one gone", lambda: view.names.current(namespace, "watched") is None)
        assert view.names.current("some-other-namespace", "listed") is None
    finally:
        await view.close()


async def test_a_too_old_resource_version_asks_for_a_relist(
    api_client: client.ApiClient, executions: Executions, namespace: str
) -> None:
    """The API server answers a watch from a compacted/expired resourceVersion with 410: the view must
    re-list (``_watch`` returns None), not fail or resume from the stale version."""
    executions.create("old")
    view = CurrentPods(api_client, [namespace])
    try:
        current = await view._list(namespace)
        assert int(current) > 1
        assert await asyncio.wait_for(view._watch(namespace, "1"), timeout=WAIT_SECONDS) is None
    finally:
        await view.close()
