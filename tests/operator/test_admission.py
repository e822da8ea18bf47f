"""What the API server refuses before the operator ever sees it (the CRD's schema and CEL rules)."""

from __future__ import annotations

import pytest

from stratarouter_dev.kubeapi import KubeApiError
from tests.operator.conftest import Executions

pytestmark = pytest.mark.cluster


def test_an_execution_name_longer_than_a_label_value_is_refused_at_admission(executions: Executions) -> None:
    with pytest.raises(KubeApiError) as refused:
        executions.create("x" * 64)
    assert refused.value.status == 422
    assert "metadata.name must be at most 63 characters" in str(refused.value)
    assert executions.get("x" * 64) is None
    executions.create("y" * 63)  # the longest a label value may be is fine
    assert executions.get("y" * 63) is not None
