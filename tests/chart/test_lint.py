"""helm lint --strict on the default values and on the other supported shapes of the chart."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helm import Helm

SHAPES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-ha": {"watchNamespaces": ["team-a"], "replicas": 2},
    "external-db-everything-on": {
        "postgresql": {"enabled": False},
        "database": {"existingSecret": "prod-db"},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_helm_lint_strict(helm: Helm, shape: str) -> None:
    out = helm.lint(SHAPES[shape])
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out
