"""The bounded chaos run of ``make test``: 20 Executions on kwok through the real checkpoint API while
every kind of fault of ``make chaos`` happens at least once; every invariant must hold.

It starts a cluster and a PostgreSQL of its own (it restarts kube-apiserver and PostgreSQL, which the
session's shared ones must not see) and takes about two minutes.
"""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stratarouter_runtime.dev.chaos.faults import KINDS, FaultPlan
from stratarouter_runtime.dev.chaos.run import ChaosConfig, run_chaos

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(420)]

BOUNDED = ChaosConfig(
    executions=20,
    waves=2,
    wave_gap=20.0,
    steps=40,
    interval=1.0,
    crash_share=0.25,
    faults=FaultPlan(
        operator_kills=3,
        postgres_fast=1,
        postgres_immediate=1,
        apiserver_restarts=1,
        cuts=1,
        cut_seconds=10.0,
        start=10.0,
        end=45.0,
    ),
    seed=7,  # spreads the faults over the time both waves run (the schedule is a pure function of it)
)


def test_bounded_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    result = run_chaos(dataclasses.replace(BOUNDED, log_dir=tmp_path))
    print(result.summary())
    assert result.violations == [], result.summary()
    assert result.succeeded == BOUNDED.executions
    injected = result.fault_counts()
    assert {kind: injected[kind] for kind in KINDS} == {
        "operator SIGKILL": 3,
        "PostgreSQL restart -m fast": 1,
        "PostgreSQL restart -m immediate": 1,
        "kube-apiserver restart": 1,
        "operator cut off from PostgreSQL": 1,
    }
    assert result.crashes == 5
    assert result.acks >= BOUNDED.executions * BOUNDED.steps  # each step acknowledged at least once
    # the fence was put to the test: zombies wrote on, and were refused once their attempt was replaced
    assert sum(n for reason, n in result.refusals.items() if reason.startswith(("409", "401", "403"))) >= 1


def test_a_token_review_while_the_api_server_is_down_is_answered_503(tmp_path: Path) -> None:
    """What the bounded and full runs saw during kube-apiserver restarts (``GET /v1/state: 500``: a
    connection error escaped the TokenReview), made deterministic: a pod's first request while the API
    server is away must be retryable (503)."""
    from stratarouter_runtime.dev.chaos.operator import OperatorProcess
    from stratarouter_runtime.dev.chaos.run import GROUP_PATH, execution_body
    from stratarouter_runtime.dev.pods import is_running, request_pod_token, wait_for_pod
    from stratarouter_runtime.operator.demo import NAMESPACE, Demo

    demo = Demo()
    operator: OperatorProcess | None = None
    answers: list[int] = []
    try:
        demo.start_infrastructure(real_node=False)
        demo.apply_crds()
        operator = OperatorProcess(demo.cluster.kubeconfig, demo.postgres.dsn, NAMESPACE, tmp_path / "op.log")
        operator.start()
        demo.api.request("POST", f"{GROUP_PATH}/namespaces/{NAMESPACE}/executions", execution_body("probe"))
        pod = wait_for_pod(demo.api, NAMESPACE, "probe-a1", is_running, timeout=60, what="Running")
        assert pod is not None
        token = request_pod_token(demo.api, pod)  # never shown to the checkpoint API before the outage
        url = f"{operator.api_url}/v1/state"

        def first_request() -> None:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    answers.append(resp.status)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)

        demo.cluster.restart("kube-apiserver", while_down=first_request)
    finally:
        if operator is not None:
            operator.stop()
        demo.close()
    assert answers == [503]
