"""Fixtures of the chart tests: the helm binary, offline (render/lint) and against the local cluster.

helm comes from ``$STRATA_HELM`` if set (any helm 3 binary), else ``$STRATA_TOOLS_BIN/helm``, else the tools
cache that ``hack/build-tools.sh`` fills.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratarouter_dev.tools import tools_bin_dir
from tests.chart.helm import Helm
from tests.chart.identity import operator_identity  # noqa: F401 - the session fixture, for tests/chart


def _helm_binary() -> Path:
    explicit = os.environ.get("STRATA_HELM", "").strip()
    if explicit:
        return Path(explicit)
    bin_dir = os.environ.get("STRATA_TOOLS_BIN", "").strip()
    return (Path(bin_dir) if bin_dir else tools_bin_dir()) / "helm"


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    path = _helm_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"no helm binary at {path}; run `make tools` or set STRATA_HELM")
    return path


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for offline work (template, lint, package): its cache/config dirs in a temp dir, no cluster."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # Offline renders must never reach a cluster by accident (lookup() returns nothing then).
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return Helm(helm_binary, env)
