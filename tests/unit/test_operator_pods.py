"""The attempt pod built from spec.template carries the pod contract and nothing of the user is lost."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.pods import (
    InvalidTemplateError,
    build_pod,
    pod_name,
    pod_selector,
)

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}},
    "spec": {
        "serviceAccountName": "runner",
        "containers": [
            {
                "name": "work",
                "image": "example/work:1",
                "env": [{"name": "USER_VAR", "value": "1"}, {"name": "STRATA_ATTEMPT", "value": "forged"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "side", "image": "example/side:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    },
}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _build(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "namespace": "ns1",
        "name": "train",
        "uid": "uid-1",
        "template": TEMPLATE,
        "attempt": 2,
        "resume_step": 41,
        "api_url": "http://op.svc:8080",
    }
    kwargs.update(overrides)
    return build_pod(**kwargs)


def test_contract_env_labels_owner_and_token() -> None:
    pod = _build(checkpoint_interval=30, compression="zstd")
    assert pod["metadata"]["name"] == "train-a2" == pod_name("train", 2)
    assert pod["metadata"]["labels"] == {
        "team": "ml",
        "app.kubernetes.io/managed-by": "stratarouter",
        "stratarouter.io/execution": "train",
        "stratarouter.io/attempt": "2",
    }
    assert pod["metadata"]["annotations"] == {"note": "x"}
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "uid-1"
    assert owner["controller"] is True
    assert owner["kind"] == "Execution"
    for container in pod["spec"]["containers"]:
        env = _env(container)
        assert env["STRATA_EXECUTION_ID"] == "ns1/train"
        assert env["STRATA_ATTEMPT"] == "2"
        assert env["STRATA_RESUME_STEP"] == "41"
        assert env["STRATA_API_URL"] == "http://op.svc:8080"
        assert env["STRATA_TOKEN_FILE"] == "/var/run/secrets/stratarouter/token"
        assert env["STRATA_CHECKPOINT_INTERVAL"] == "30"
        assert env["STRATA_ENABLE_COMPRESSION"] == "true"  # what the SDK's from_env() reads
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/var/run/secrets/stratarouter"]["readOnly"] is True
    assert _env(pod["spec"]["containers"][0])["USER_VAR"] == "1"
    token = next(v for v in pod["spec"]["volumes"] if v["name"] == "stratarouter-token")
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source == {"audience": "stratarouter", "expirationSeconds": 3600, "path": "token"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "runner"


def test_first_run_has_empty_resume_step_and_template_is_untouched() -> None:
    before = repr(TEMPLATE)
    pod = _build(attempt=1, resume_step=None)
    assert _env(pod["spec"]["containers"][0])["STRATA_RESUME_STEP"] == ""
    assert "STRATA_CHECKPOINT_INTERVAL" not in _env(pod["spec"]["containers"][0])
    assert "STRATA_ENABLE_COMPRESSION" not in _env(pod["spec"]["containers"][0])
    assert _env(_build(compression="none")["spec"]["containers"][0])["STRATA_ENABLE_COMPRESSION"] == "false"
    assert repr(TEMPLATE) == before


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"spec": {"containers": []}}, "at least one container"),
        ({"spec": {}}, "at least one container"),
        ({"spec": {"containers": [{"name": "a", "image": "i"}], "restartPolicy": "Always"}}, "Never"),
        (
            {"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "stratarouter-token"}]}},
            "reserved",
        ),
        ({"spec": {"containers": [{"image": "i"}]}}, "needs a name"),
    ],
)
def test_invalid_templates_say_what_to_fix(template: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTemplateError, match=message):
        _build(template=template)


def test_selector_names_only_our_pods() -> None:
    assert (
        pod_selector("train") == "app.kubernetes.io/managed-by=stratarouter,stratarouter.io/execution=train"
    )


def test_the_projected_token_lives_as_long_as_the_operator_says() -> None:
    from stratarouter_runtime.operator.settings import OperatorSettings, SettingsError

    pod = build_pod(
        namespace="ns", name="run", uid="u1", template=TEMPLATE, attempt=1, resume_step=None,
        api_url="http://api", token_seconds=600,
    )  # fmt: skip
    token = next(v for v in pod["spec"]["volumes"] if v["name"] == "stratarouter-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 600
    assert (
        OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_POD_TOKEN_SECONDS": "600"}).pod_token_seconds
        == 600
    )
    with pytest.raises(SettingsError, match=r"STRATA_POD_TOKEN_SECONDS|pod_token_seconds"):
        OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_POD_TOKEN_SECONDS": "599"})
