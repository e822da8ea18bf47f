"""The alerts' metrics from a real operator process on a real API server and PostgreSQL: the store probe
reports the store reachable and its real size, and an Execution that uses up its recoveries is counted as
Failed/BackoffLimitExceeded exactly once."""

from __future__ import annotations

import re

import pytest

from stratarouter_dev.operator_process import OperatorProcess
from tests.operator.conftest import Executions, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

BACKOFF = 'stratarouter_executions_finished_total{phase="Failed",reason="BackoffLimitExceeded"}'


def value(metrics: str, series: str) -> float | None:
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.M)
    return None if found is None else float(found.group(1))


def test_store_probe_and_backoff_limit_exceeded(operator: OperatorProcess, executions: Executions) -> None:
    up = wait_until("the first store probe", lambda: value(operator.metrics(), "stratarouter_store_up") == 1)
    assert up
    metrics = operator.metrics()
    size = value(metrics, "stratarouter_store_bytes")
    assert size is not None
    assert size > 0  # the migrated schema's tables and indexes take pages even when empty
    assert value(metrics, BACKOFF) == 0  # exported before the first one, so Prometheus sees it increase

    executions.create("flaky", recovery={"backoffSeconds": 0, "maxRestarts": 0})
    executions.wait_pod_running("flaky-a1")
    executions.fail("flaky-a1", exit_code=1)
    status = executions.wait_phase("flaky", "Failed")
    assert status["reason"] == "BackoffLimitExceeded"
    assert wait_until("the ending counted", lambda: value(operator.metrics(), BACKOFF) == 1)
    assert (
        value(
            operator.metrics(), 'stratarouter_executions_finished_total{phase="Succeeded",reason="Succeeded"}'
        )
        == 0
    )
