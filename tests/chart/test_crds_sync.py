"""The chart's copy of the CRDs is the generator's output, like crds/ at the repository root."""

from __future__ import annotations

from pathlib import Path

from stratarouter_runtime.operator.crds import write_crds
from tests.chart.helm import CHART

ROOT_CRDS = CHART.parents[1] / "crds"
CHART_CRDS = CHART / "files" / "crds"


def _texts(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.glob("*.yaml"))}


def test_chart_crds_equal_root_crds() -> None:
    chart = _texts(CHART_CRDS)
    assert chart, f"{CHART_CRDS} is empty: run `make crds`"
    assert chart == _texts(ROOT_CRDS), (
        "charts/stratarouter-operator/files/crds differs from crds/: run `make crds`"
    )


def test_chart_crds_equal_the_generator_output(tmp_path: Path) -> None:
    write_crds(tmp_path, chart=None)
    assert _texts(CHART_CRDS) == _texts(tmp_path), "the chart's CRDs are stale: run `make crds`"
