"""The README's curl examples of the checkpoint API work as written, against a real operator.

The Execution runs on a kwok node (no container), so the test plays its process: the in-pod block runs
with ``STRATA_API_URL`` and ``STRATA_TOKEN_FILE`` as the pod contract sets them, the token made by the
README's own ``kubectl create token`` line. The workstation block runs as written except for its
``kubectl port-forward`` line: the operator runs on this host, so ``localhost:8080`` is its API address.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.docs.samples import ROOT
from tests.operator.conftest import Executions, OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

EXECUTION = "count-to-twenty"


def readme_curl_blocks() -> tuple[str, str]:
    """(in the pod, from a workstation): the ```bash blocks of the checkpoint API section that call curl."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The checkpoint API") :]
    section = section[: section.index("\n## ", 1)]
    blocks = [b for b in re.findall(r"^```bash\n(.*?)^```$", section, re.S | re.M) if "curl" in b]
    inside = next(b for b in blocks if "STRATA_TOKEN_FILE" in b)
    outside = next(b for b in blocks if "kubectl create token" in b)
    return inside, outside


def bash(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"exit {done.returncode}\n{script}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    )
    return done.stdout


def answers(out: str) -> list[Any]:
    """The JSON answers curl printed one after the other (they end without a newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(out.rstrip()):
        value, at = decoder.raw_decode(out, at)
        found.append(value)
        while at < len(out) and out[at].isspace():
            at += 1
    return found


def test_readme_curl_examples(
    cluster: Any, operator: OperatorProcess, executions: Executions, namespace: str, tmp_path: Path
) -> None:
    inside, outside = readme_curl_blocks()
    executions.create(EXECUTION)
    status = executions.wait_status(EXECUTION, "a pod", lambda s: bool(s.get("podName")))
    executions.wait_pod_running(status["podName"])

    kubeconfig = tmp_path / "kubeconfig"  # the README's kubectl lines use the context's namespace
    shutil.copy(cluster.kubeconfig, kubeconfig)
    env = {**cluster.env, "KUBECONFIG": str(kubeconfig)}
    bash(f"kubectl config set-context --current --namespace={namespace}", env)

    # The workstation's token line, as written, makes the token the kubelet would have projected.
    token_lines = [line for line in outside.splitlines() if line.startswith(("POD=", "SA=", "TOKEN="))]
    token = bash("\n".join([*token_lines, 'printf %s "$TOKEN"']), env)
    token_file = tmp_path / "token"
    token_file.write_text(token)

    pod_env = {**env, "STRATA_API_URL": operator.api_url, "STRATA_TOKEN_FILE": str(token_file)}
    out = bash(inside, pod_env)
    first, checkpointed, completed = answers(out)
    assert first["error"] == "CheckpointNotFound", out  # a first run has no state yet
    assert checkpointed["step"] == 7, out
    assert completed["status"] == "completed", out

    script = "\n".join(line for line in outside.splitlines() if "port-forward" not in line)
    out = bash(script.replace("localhost:8080", operator.api_url), env)
    state, history = answers(out)
    assert state["step"] == 7, out
    assert state["state"] == {"rows": 7000}, out
    assert [c["step"] for c in history["checkpoints"]] == [7], out
