"""``python -m stratarouter_dev.pods fail``: what it says is what it wrote. A fake API, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_dev import pods


class FakeApi:
    """A Running kwok pod; a status PATCH is recorded and returned as the API server would merge it."""

    def __init__(self) -> None:
        self.pod: dict[str, Any] = {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "main", "image": "img"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready"}]},
        }
        self.patches: list[dict[str, Any]] = []

    def get(self, path: str) -> dict[str, Any]:
        return self.pod

    def request(self, method: str, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        assert (method, path) == ("PATCH", "/api/v1/namespaces/ns/pods/p/status")
        self.patches.append(body)
        return {**self.pod, "status": {**self.pod["status"], **body["status"]}}

    def terminated(self) -> list[tuple[str, int, str]]:
        """(phase, exit code, reason) of each patch."""
        out = []
        for patch in self.patches:
            state = patch["status"]["containerStatuses"][0]["state"]["terminated"]
            out.append((patch["status"]["phase"], state["exitCode"], state["reason"]))
        return out


@pytest.mark.parametrize(
    ("argv", "written", "said"),
    [
        (
            ["--exit-code", "0"],
            ("Succeeded", 0, "Completed"),
            "marked Succeeded: exit code 0, reason Completed",
        ),
        ([], ("Failed", 1, "Error"), "marked Failed: exit code 1, reason Error"),
        (
            ["--exit-code", "137", "--reason", "OOMKilled"],
            ("Failed", 137, "OOMKilled"),
            "marked Failed: exit code 137, reason OOMKilled",
        ),
    ],
)
def test_the_message_says_what_was_written(
    argv: list[str],
    written: tuple[str, int, str],
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi()
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.setattr(pods.KubeApi, "from_kubeconfig", staticmethod(lambda path: api))
    assert pods.main(["fail", "p", "-n", "ns", *argv]) == 0
    assert api.terminated() == [written]
    assert capsys.readouterr().out == f"pod ns/p {said}\n"


def test_the_default_reason_follows_the_exit_code() -> None:
    api = FakeApi()
    pods.fail_pod(api, "ns", "p", 0)  # type: ignore[arg-type]
    pods.fail_pod(api, "ns", "p", 2)  # type: ignore[arg-type]
    pods.succeed_pod(api, "ns", "p")  # type: ignore[arg-type]
    assert api.terminated() == [
        ("Succeeded", 0, "Completed"),
        ("Failed", 2, "Error"),
        ("Succeeded", 0, "Completed"),
    ]
