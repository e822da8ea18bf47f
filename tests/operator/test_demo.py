"""`make demo` end to end, exactly as `make demo` runs it: it must succeed and tell the story."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(600)]


def test_demo_crashes_resumes_and_cleans_up(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob("strata-demo-*"))
    result = subprocess.run(
        [sys.executable, "-m", "stratarouter_dev.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed:\n{out[-4000:]}\n{result.stderr[-4000:]}"
    # the real node ran the pods: Ready beside the kwok nodes, pod IPs on its bridge
    assert re.search(r"^\s+real-node\s+Ready\s", out, re.M)
    assert re.search(r"count-to-twenty-a1\s.*\s10\.89\.\d+\.\d+\s+real-node\s", out)
    # attempt 1 ran from the start in a real container and the kernel OOM-killed it after step 6
    assert "attempt 1: starting" in out
    assert re.search(r"step 6/\d+: total=21", out)
    assert "reason OOMKilled, exit code 137" in out
    assert re.search(r"Reason:\s+OOMKilled", out)
    assert re.search(r"Exit Code:\s+137", out)
    # both attempts' container logs came through `kubectl logs`
    assert "kubectl logs -n stratarouter-demo count-to-twenty-a1" in out
    assert "kubectl logs -n stratarouter-demo count-to-twenty-a2" in out
    # attempt 2 resumed at step 7 with the state of step 6 (total 1+...+6 = 21)
    assert "attempt 2: resuming" in out
    assert "at step 7 with total=21" in out
    assert "step 7/" in out
    assert "STRATA_RESUME_STEP=6" in out
    # ran to the end: 1+...+20 = 210, Succeeded, and the history shows both attempts
    assert "done: total=210" in out
    assert re.search(r"Succeeded", out)
    history = out.split("History of", 1)[1]
    assert re.search(r"^\s+6\s+1\s+21\s", history, re.M)
    assert re.search(r"^\s+7\s+2\s+28\s", history, re.M)
    assert re.search(r"^\s+20\s+2\s+210\s", history, re.M)
    # cleaned up: no demo directory left behind
    assert set(Path("/tmp").glob("strata-demo-*")) <= before
