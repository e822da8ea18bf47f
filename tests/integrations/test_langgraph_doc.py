"""docs/langgraph.md's Python samples run as written, each as ``python sample.py`` (memory backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.samples import Sample, samples

SAMPLES = samples("docs/langgraph.md")


def test_the_page_has_samples() -> None:
    assert SAMPLES, "no ```python sample found in docs/langgraph.md"


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample_runs(sample: Sample, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(sample.code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRATA_")}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "langgraph/notes-1 5" in done.stdout, done.stdout
