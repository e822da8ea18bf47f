"""``kubectl strata`` against a real run on the real control plane, as users with their own certificates.

The plugin is the installed ``kubectl-strata`` executable, found by kubectl's plugin mechanism on PATH
(``kubectl strata ...``), and every user is a kubeconfig of their own (a client certificate of the
cluster's CA), so the plugin's calls are refused or allowed by RBAC exactly as that user's kubectl is.
Every command's output and exit code is checked, and written to a transcript (``transcript.txt`` in the
test's directory, and to ``$PLUGIN_TRANSCRIPT`` when set).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_runtime.operator.view.paths import UI_PATH
from stratarouter_runtime.plugin import exits
from tests.operator.conftest import Executions, wait_until
from tests.operator.test_view_rbac import (  # noqa: F401 - fixtures
    CREATE_SNAPSHOTS,
    GET_EXECUTIONS,
    WRITE_EXECUTIONS,
    View,
    kwok_run,
    role,
    view,
    view_env,
    view_gate,
)

READ_EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}
READ_LOGS = {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}
PLUGIN = Path(sys.executable).with_name("kubectl-strata")


@dataclass
class Strata:
    """Runs ``kubectl strata`` as one of the test's users; keeps the transcript."""

    view: View
    tmp: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    path: str = ""

    def user(self, name: str, groups: tuple[str, ...] = ()) -> None:
        """A kubeconfig for ``name``: a client certificate (CN=name, O=groups) and the test's namespace."""
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={name}"
        pair = self.view.cluster.pki.issue(f"plugin-{self.view.namespace}-{name}", subject, client=True)
        config = json.loads(self.view.cluster.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": {"client-certificate": str(pair.cert),
                                                   "client-key": str(pair.key)}}]  # fmt: skip
        context = config["contexts"][0]["context"]
        context["user"] = name
        context["namespace"] = self.view.namespace
        self.kubeconfigs[name] = self.tmp / f"{name}.kubeconfig"
        self.kubeconfigs[name].write_text(json.dumps(config))

    def env(self, user: str) -> dict[str, str]:
        env = {**self.view.cluster.env, "KUBECONFIG": str(self.kubeconfigs[user])}
        env["PATH"] = self.path or f"{self.view.cluster.bin_dir}{os.pathsep}{PLUGIN.parent}"
        return env

    def __call__(self, user: str, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        """``kubectl strata ARGS`` as ``user``; asserts its exit code is ``code``."""
        done = subprocess.run(
            ["kubectl", "strata", *args], capture_output=True, text=True, env=self.env(user), timeout=120
        )
        self.record(user, args, done)
        assert done.returncode == code, f"exit {done.returncode}, wanted {code}:\n{done.stdout}{done.stderr}"
        return done

    def record(self, user: str, args: tuple[str, ...] | list[str], done: Any) -> None:
        self.transcript.append(
            f"$ kubectl strata {' '.join(args)}    # as {user}\n"
            f"{done.stdout}{done.stderr}[exit {done.returncode}]\n"
        )

    def save(self) -> str:
        text = "\n".join(self.transcript)
        (self.tmp / "transcript.txt").write_text(text)
        if os.environ.get("PLUGIN_TRANSCRIPT"):  # one file for the session: each test appends its part
            with Path(os.environ["PLUGIN_TRANSCRIPT"]).open("a") as out:
                out.write(f"##### {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\n{text}\n")
        return text


@pytest.fixture
def strata(view: View, tmp_path: Path) -> Any:  # noqa: F811 - the imported fixture
    assert PLUGIN.exists(), f"{PLUGIN} is not installed (pip install -e . puts it beside python)"
    s = Strata(view, tmp_path)
    s.user("reader")
    s.user("writer")
    s.user("nobody")
    role(view, "reader", [GET_EXECUTIONS, READ_EVENTS], "reader")
    role(view, "writer", [WRITE_EXECUTIONS, CREATE_SNAPSHOTS, READ_EVENTS, READ_LOGS], "writer")
    yield s
    print(s.save())


def lines(done: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [line.split() for line in done.stdout.splitlines() if line.strip()]


def test_every_command_against_a_run(strata: Strata, executions: Executions, pg_dsn: str) -> None:
    kwok_run(executions, pg_dsn, "train")
    ns = strata.view.namespace

    # kubectl finds the plugin on PATH
    found = subprocess.run(
        ["kubectl", "plugin", "list"], capture_output=True, text=True, env=strata.env("reader")
    )
    assert "kubectl-strata" in found.stdout, found

    # -- status: the store's live step and attempt
    done = strata("reader", "status", "train")
    header, row = lines(done)
    assert header == ["NAME", "PHASE", "STORE", "STEP", "CHECKPOINT", "ATTEMPT", "UPDATED", "ERROR"]
    assert row[:6] == ["train", "Running", "running", "5", "5", "2"]
    store = json.loads(strata("reader", "status", "train", "-o", "json").stdout)["store"]
    assert (store["attempt"], store["lastCheckpointStep"], store["currentStep"]) == (2, 5, 5)
    assert (
        yaml.safe_load(strata("reader", "-n", ns, "status", "train", "-o", "yaml").stdout)["phase"]
        == "Running"
    )

    # --kubeconfig and --context go to kubectl: nobody's environment, reader's kubeconfig, reader's rights
    strata("nobody", "--kubeconfig", str(strata.kubeconfigs["reader"]), "status", "train")
    done = strata("reader", "status", "train", "--context", "elsewhere", code=exits.FAILED)
    assert "context elsewhere" in done.stderr, done.stderr  # kubectl's own message names it

    # -- history: checkpoints, the attempts, the failure between them and its cause
    done = strata("reader", "history", "train")
    rows = lines(done)
    assert rows[0] == ["TIME", "STEP", "ATTEMPT", "SIZE", "WHAT", "DETAIL"]
    cps = [(r[1], r[2]) for r in rows if len(r) > 4 and r[4] == "checkpoint"]
    assert cps == [("1", "1"), ("2", "1"), ("3", "1"), ("4", "2"), ("5", "2")]
    assert [r[2] for r in rows if len(r) > 4 and r[4] == "started"] == ["1", "2"]
    # in time order: attempt 1 starts, checkpoints 1-3, its failure, attempt 2 starts, checkpoints 4-5
    text = [" ".join(r) for r in rows[1:]]
    failure = next(i for i, line in enumerate(text) if "Warning Recovering: pod train-a1 failed" in line)
    started = [i for i, r in enumerate(rows[1:]) if len(r) > 4 and r[4] == "started"]
    step3 = next(i for i, r in enumerate(rows[1:]) if r[4:5] == ["checkpoint"] and r[1] == "3")
    assert started[0] < step3 < failure < started[1], done.stdout
    assert "last failure: attempt 1 (pod train-a1) ExitCode (exit code 137)" in done.stdout
    assert "5 checkpoint(s); attempt 2, phase Running" in done.stdout
    as_yaml = yaml.safe_load(strata("reader", "history", "train", "-o", "yaml").stdout)
    assert [c["step"] for c in as_yaml["checkpoints"]] == [1, 2, 3, 4, 5]
    assert as_yaml["lastFailure"]["failedPod"] == "train-a1"
    assert any("train-a1" in (e["message"] or "") for e in as_yaml["events"]), as_yaml["events"]

    # -- show and diff
    assert json.loads(strata("reader", "show", "train", "--step", "2").stdout) == {
        "loss": 0.8,
        "seen": [1, 2],
    }
    assert json.loads(strata("reader", "show", "train").stdout)["done"] is True
    full = json.loads(strata("reader", "show", "train", "--step", "4", "-o", "json").stdout)
    assert (full["step"], full["attempt"], full["state"]["loss"]) == (4, 2, 0.6)
    done = strata("reader", "diff", "train", "2", "3")
    assert lines(done)[:3] == [["OP", "PATH", "VALUE"], ["replace", "/loss", "0.7"], ["add", "/seen/-", "3"]]
    assert "2 change(s) from step 2 to step 3" in done.stdout
    ops = json.loads(strata("reader", "diff", "train", "1", "5", "-o", "json").stdout)["operations"]
    assert {"op": "add", "path": "/done", "value": True} in ops

    # -- writes: refused to the get-only reader by RBAC itself, done for the writer
    done = strata("reader", "snapshot", "train", "--step", "3", "--name", "s3", code=exits.FORBIDDEN)
    assert 'User "reader" cannot create resource "snapshots" in API group "stratarouter.io"' in done.stderr
    done = strata("writer", "snapshot", "train", "--step", "3", "--name", "s3", "--wait", "60")
    assert done.stdout.strip() == "snapshot.stratarouter.io/s3 created"
    assert (
        executions.kube.get(f"/apis/stratarouter.io/v1alpha1/namespaces/{ns}/snapshots/s3")["status"]["phase"]
        == "Ready"
    )

    done = strata("reader", "suspend", "train", code=exits.FORBIDDEN)
    assert 'User "reader" cannot patch resource "executions" in API group "stratarouter.io"' in done.stderr
    done = strata("writer", "suspend", "train")
    assert done.stdout.strip() == "execution.stratarouter.io/train patched"
    assert executions.get("train")["spec"]["suspend"] is True
    executions.wait_status("train", "Suspended", lambda s: s.get("phase") == "Suspended")
    strata("writer", "resume", "train")
    assert executions.get("train")["spec"]["suspend"] is False

    done = strata("reader", "restore", "train", "s3", code=exits.FORBIDDEN)
    assert 'User "reader" cannot patch resource "executions" in API group "stratarouter.io"' in done.stderr
    done = strata("writer", "restore", "train", "missing", code=exits.NOT_FOUND)
    assert 'snapshot "missing" not found' in done.stderr
    strata("writer", "restore", "train", "s3")
    assert executions.get("train")["spec"]["restoreFrom"] == {"snapshot": "s3"}
    executions.wait_status(
        "train", "restored s3", lambda s: (s.get("restoredFrom") or {}).get("snapshot") == "s3"
    )
    live = json.loads(strata("reader", "status", "train", "-o", "json").stdout)["store"]
    assert live["currentStep"] == 3, live  # the run goes on from the snapshot's step

    # -- logs: the attempt's pod by name; RBAC on pods/log; a missing attempt named
    done = strata("reader", "logs", "train", "--attempt", "2", code=exits.FORBIDDEN)
    assert 'User "reader" cannot get resource "pods" in API group ""' in done.stderr
    done = strata("writer", "logs", "train", "--attempt", "9", code=exits.NOT_FOUND)
    assert 'pod "train-a9" of attempt 9 not found' in done.stderr

    # -- errors name the missing object or permission
    done = strata("nobody", "status", "train", code=exits.FORBIDDEN)
    assert 'User "nobody" cannot get resource "executions" in API group "stratarouter.io"' in done.stderr
    done = strata("reader", "status", "absent", code=exits.NOT_FOUND)
    assert "not found" in done.stderr
    done = strata("reader", "show", "train", "--step", "99", code=exits.NOT_FOUND)
    assert "step 99" in done.stderr or "99" in done.stderr
    strata("reader", "diff", "train", "1", code=exits.USAGE)


def test_logs_names_the_attempts_pod(
    strata: Strata, executions: Executions, pg_dsn: str, tmp_path: Path
) -> None:
    """kwok pods have no kubelet to serve logs: a kubectl stand-in answers ``logs`` (and records the
    argv) and passes every other call to the real kubectl, so the Execution is still read for real."""
    kwok_run(executions, pg_dsn, "logged")
    fake = tmp_path / "bin"
    fake.mkdir()
    real = strata.view.cluster.bin_dir / "kubectl"
    calls = tmp_path / "calls"
    (fake / "kubectl").write_text(
        "#!/bin/sh\n"
        f'case "$1" in logs) echo "$@" >> {calls}; echo "log line of $2"; exit 0;; esac\n'
        f'exec {real} "$@"\n'
    )
    (fake / "kubectl").chmod(0o755)
    strata.path = f"{fake}{os.pathsep}{PLUGIN.parent}"
    done = strata("writer", "logs", "logged")
    assert done.stdout.strip() == "log line of logged-a2"  # the current attempt by default
    done = strata("writer", "logs", "logged", "--attempt", "1", "--tail", "5")
    assert done.stdout.strip() == "log line of logged-a1"
    recorded = calls.read_text().splitlines()
    ns = strata.view.namespace
    assert recorded == [
        f"logs logged-a2 -n {ns} --all-containers",
        f"logs logged-a1 -n {ns} --all-containers --tail=5",
    ]


def test_ui_and_the_exit_codes_of_a_missing_view_api(
    strata: Strata, executions: Executions, pg_dsn: str
) -> None:
    kwok_run(executions, pg_dsn, "seen")
    proc = subprocess.Popen(
        ["kubectl", "strata", "ui"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=strata.env("reader"),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("web timeline: http://127.0.0.1:"), first
        url = first.split()[2]
        assert url.endswith(UI_PATH)
        with urllib.request.urlopen(url, timeout=20) as resp:
            assert resp.status == 200
            assert "text/html" in resp.headers["Content-Type"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    strata.record("reader", ["ui"], type("Done", (), {"stdout": first + out, "stderr": err,
                                                    "returncode": proc.returncode}))  # fmt: skip
    assert proc.returncode == 0, err

    # kubectl missing from PATH: 6
    done = subprocess.run([str(PLUGIN), "status", "seen"], capture_output=True, text=True,
                          env={**strata.env("reader"), "PATH": str(PLUGIN.parent)})  # fmt: skip
    strata.record("reader", ["status", "seen", "(PATH without kubectl)"], done)
    assert done.returncode == exits.NO_KUBECTL
    assert "'kubectl' is not on PATH" in done.stderr
    assert shutil.which("kubectl", path=str(PLUGIN.parent)) is None

    # the view API unregistered: 5, with the hint
    strata.view.cluster.kubectl("delete", "apiservice", "v1alpha1.view.stratarouter.io")
    wait_until(
        "the view API to be gone from discovery",
        lambda: "view.stratarouter.io" not in strata.view.kubectl("api-versions").stdout,
    )
    done = strata("reader", "status", "seen", code=exits.UNAVAILABLE)
    assert "the view API is not registered" in done.stderr
