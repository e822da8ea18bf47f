"""The operator's own integration tests, re-run with the chart's ServiceAccount identity instead of the admin.

The test functions and their fixtures come from tests/operator unchanged; only ``operator_env`` is replaced,
so the operator process authenticates with a TokenRequest token of the ServiceAccount that ``helm install``
created (``tests.chart.identity.operator_identity``) and gets exactly the chart's RBAC. Each test passing
here proves the chart grants enough for what it exercises (create, checkpoint through the API with a
TokenReview, recover, snapshot, restore, TTL deletion); ``test_install.py`` proves it grants no more.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.identity import ServiceAccountIdentity

# Fixtures of the operator tests (imported so that pytest finds them for the tests below).
from tests.operator.conftest import (
    crds,
    executions,
    kube,
    namespace,
    operator,
    operator_environment,
    operator_process,
)
from tests.operator.test_lifecycle import (
    test_full_loop_resumes_from_last_checkpoint,
    test_restore_from_snapshot_once_per_change,
    workload,
)
from tests.operator.test_recovery import (
    test_exit_code_failure_recovers,
    test_pod_deleted_by_someone_else_recovers,
)
from tests.operator.test_retention import test_ttl_deletes_execution_and_state
from tests.operator.test_snapshots import (
    checkpointed,
    snapshots,
    test_snapshot_of_latest_and_of_a_step_then_delete_policies,
)

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

REUSED = (
    crds,
    executions,
    kube,
    namespace,
    operator,
    operator_process,
    workload,
    checkpointed,
    snapshots,
    test_full_loop_resumes_from_last_checkpoint,
    test_restore_from_snapshot_once_per_change,
    test_exit_code_failure_recovers,
    test_pod_deleted_by_someone_else_recovers,
    test_ttl_deletes_execution_and_state,
    test_snapshot_of_latest_and_of_a_step_then_delete_policies,
)


@pytest.fixture
def operator_env(pg_dsn: str, namespace: str, operator_identity: ServiceAccountIdentity) -> dict[str, str]:
    """tests/operator's environment for the operator process, with the chart identity's kubeconfig."""
    return operator_environment(operator_identity.kubeconfig, pg_dsn)


def test_the_operator_runs_as_the_chart_service_account(
    operator_env: dict[str, Any], operator_identity: ServiceAccountIdentity, cluster: Any
) -> None:
    """The kubeconfig handed to the operator really is the ServiceAccount, not the admin."""
    whoami = cluster.run(
        "kubectl", f"--kubeconfig={operator_env['KUBECONFIG']}", "auth", "whoami", "-o", "json"
    )
    assert f'"username": "{operator_identity.username}"' in whoami
