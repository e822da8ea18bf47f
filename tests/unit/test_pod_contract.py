"""The pod contract read back: what the operator writes into a pod is what the SDK inside it reads."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.pods import build_pod
from stratarouter_runtime.state.config import config_from_env
from stratarouter_runtime.state.pod_contract import (
    CONTRACT_VARIABLES,
    TOKEN_AUDIENCE,
    PodEnv,
    RunIdentity,
    run_identity,
    token_file,
)

TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "work", "image": "example/work:1"}]}}


def _pod_env(**overrides: Any) -> dict[str, str]:
    kwargs: dict[str, Any] = {
        "namespace": "ns1",
        "name": "train",
        "uid": "uid-1",
        "template": TEMPLATE,
        "attempt": 3,
        "resume_step": 41,
        "api_url": "http://op.svc:8080",
    }
    kwargs.update(overrides)
    (container,) = build_pod(**kwargs)["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize(("resume_step", "compression"), [(41, "zstd"), (None, "none"), (0, None)])
def test_the_sdk_reads_back_what_the_operator_writes(
    resume_step: int | None, compression: str | None
) -> None:
    env = _pod_env(resume_step=resume_step, checkpoint_interval=7, compression=compression)
    assert run_identity(env) == RunIdentity("ns1/train", 3, resume_step)
    config = config_from_env(env)
    assert (config.backend, config.api_url, config.checkpoint_interval) == ("http", "http://op.svc:8080", 7)
    if compression is not None:
        assert config.enable_compression is (compression == "zstd")


def test_the_token_is_read_where_the_pod_mounts_it() -> None:
    pod = build_pod(
        namespace="ns1",
        name="train",
        uid="u",
        template=TEMPLATE,
        attempt=1,
        resume_step=None,
        api_url="http://x",
    )
    (container,) = pod["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["readOnly"]]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    (source,) = volume["projected"]["sources"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert token_file(env) == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"
    assert token_file({}) == token_file(env)
    assert source["serviceAccountToken"]["audience"] == TOKEN_AUDIENCE


def test_every_contract_variable_is_written_when_set() -> None:
    env = _pod_env(checkpoint_interval=7, compression="zstd", on_corrupt="Raise")
    assert set(env) == CONTRACT_VARIABLES == {v.value for v in PodEnv}


@pytest.mark.parametrize(
    ("on_corrupt", "read"), [("Raise", "raise"), ("Previous", "previous"), (None, "raise")]
)
def test_the_sdk_reads_back_spec_recovery_on_corrupt(on_corrupt: str | None, read: str) -> None:
    env = _pod_env(on_corrupt=on_corrupt)
    assert (PodEnv.ON_CORRUPT in env) is (on_corrupt is not None)
    assert config_from_env(env).on_corrupt == read


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (PodEnv.ATTEMPT, "two", "STRATA_ATTEMPT='two' is not an integer"),
        (PodEnv.ATTEMPT, "0", "STRATA_ATTEMPT must be >= 1"),
        (PodEnv.RESUME_STEP, "-1", "STRATA_RESUME_STEP must be >= 0"),
    ],
)
def test_a_malformed_contract_is_refused_by_name(variable: PodEnv, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_identity({**_pod_env(), variable.value: value})
