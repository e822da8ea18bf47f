"""Configuration from STRATA_* variables and the checks on options."""

from __future__ import annotations

import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.state.config import StateConfig, config_from_env
from stratarouter_runtime.state.errors import InvalidArgumentError, StateError
from stratarouter_runtime.state.pod_contract import RunIdentity, run_identity


def test_backend_choice_follows_the_pod_contract() -> None:
    assert config_from_env({}).backend == "memory"
    pg = config_from_env({"STRATA_DB_URL": "postgresql://db/x"})
    assert (pg.backend, pg.db_url) == ("postgresql", "postgresql://db/x")
    http = config_from_env({"STRATA_API_URL": "http://op:8080", "STRATA_DB_URL": "postgresql://db/x"})
    assert (http.backend, http.api_url) == ("http", "http://op:8080")


def test_tuning_variables_are_parsed() -> None:
    cfg = config_from_env(
        {
            "STRATA_CHECKPOINT_INTERVAL": "5",
            "STRATA_CHECKPOINT_RETENTION": "7",
            "STRATA_ENABLE_COMPRESSION": "true",
            "STRATA_RECOVERY_TIMEOUT": "1.5",
            "STRATA_BATCH_WRITES": "",
        }
    )
    assert (cfg.checkpoint_interval, cfg.checkpoint_retention, cfg.enable_compression) == (5, 7, True)
    assert (cfg.recovery_timeout, cfg.batch_writes) == (1.5, False)
    with pytest.raises(InvalidArgumentError, match="STRATA_CHECKPOINT_INTERVAL='ten' is not an integer"):
        config_from_env({"STRATA_CHECKPOINT_INTERVAL": "ten"})
    with pytest.raises(InvalidArgumentError, match="not a boolean"):
        config_from_env({"STRATA_ENABLE_COMPRESSION": "maybe"})


def test_run_identity() -> None:
    assert run_identity({}) == RunIdentity(None, None, None)
    env = {"STRATA_EXECUTION_ID": "ns/run", "STRATA_ATTEMPT": "3", "STRATA_RESUME_STEP": ""}
    assert run_identity(env) == RunIdentity("ns/run", 3, None)
    assert run_identity({**env, "STRATA_RESUME_STEP": "41"}) == RunIdentity("ns/run", 3, 41)
    with pytest.raises(InvalidArgumentError, match="STRATA_ATTEMPT"):
        run_identity({"STRATA_ATTEMPT": "0"})


def test_from_env_exposes_the_run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("STRATA_API_URL", "STRATA_DB_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("STRATA_EXECUTION_ID", "default/train")
    monkeypatch.setenv("STRATA_ATTEMPT", "2")
    monkeypatch.setenv("STRATA_RESUME_STEP", "17")
    state = StateManager.from_env()
    assert (state.backend_name, state.execution_id, state.attempt, state.resume_step) == (
        "memory",
        "default/train",
        2,
        17,
    )


def test_from_env_picks_the_http_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_API_URL", "http://operator.svc:8080")
    monkeypatch.setenv("STRATA_EXECUTION_ID", "default/train")
    monkeypatch.setenv("STRATA_ATTEMPT", "1")
    assert StateManager.from_env().backend_name == "http"


def test_a_missing_backend_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratarouter_runtime.state import backends

    monkeypatch.setitem(
        backends.BACKENDS, "http", ("stratarouter_runtime.state.backends.nothere", "HttpBackend")
    )
    with pytest.raises(StateError, match="backend 'http' is not available"):
        StateManager(config=StateConfig(backend="http", api_url="http://x"))


def test_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError, match="partition_by"):
        StateConfig(partition_by="week")
    with pytest.raises(InvalidArgumentError, match="checkpoint_retention"):
        StateConfig(checkpoint_retention=0)
    monkeypatch.delenv("STRATA_DB_URL", raising=False)
    with pytest.raises(InvalidArgumentError, match="needs db_url"):
        StateManager(backend="postgresql")
