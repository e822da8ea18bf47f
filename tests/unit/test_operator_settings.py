"""Operator settings come from STRATA_* variables; a bad one names itself."""

from __future__ import annotations

import pytest

from stratarouter_runtime.operator.resources.conditions import set_condition
from stratarouter_runtime.operator.settings import OperatorSettings, SettingsError


def test_defaults_and_parsing() -> None:
    s = OperatorSettings.from_env(
        {"STRATA_DB_URL": "postgresql://x/y", "STRATA_WATCH_NAMESPACES": "a, b,,", "STRATA_API_PORT": "9000"}
    )
    assert s.watch_namespaces == ("a", "b")
    assert s.api_port == 9000
    assert s.peering == ""
    assert s.status_patch_interval_seconds == 1.0
    assert s.status_patch_budget_per_second == 50.0


def test_status_patch_budget() -> None:
    s = OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_STATUS_PATCH_BUDGET": "12.5"})
    assert s.status_patch_budget_per_second == 12.5
    for bad in ("0", "-5", "many"):
        with pytest.raises(SettingsError, match="STRATA_STATUS_PATCH_BUDGET"):
            OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_STATUS_PATCH_BUDGET": bad})


def test_missing_db_url() -> None:
    with pytest.raises(SettingsError, match="STRATA_DB_URL"):
        OperatorSettings.from_env({})


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="STRATA_DEFAULT_CHECKPOINT_RETENTION"):
        OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_DEFAULT_CHECKPOINT_RETENTION": "0"})


def test_condition_transition_time_moves_only_on_status_change() -> None:
    from datetime import UTC, datetime

    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    t2 = datetime(2026, 1, 2, tzinfo=UTC)
    conds = set_condition([], "Running", "True", "PodRunning", "up", generation=1, now=t1)
    same = set_condition(conds, "Running", "True", "PodRunning", "still up", generation=2, now=t2)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2
    assert same[0]["message"] == "still up"
    flipped = set_condition(same, "Running", "False", "Suspended", "", generation=2, now=t2)
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    both = set_condition(flipped, "Failed", "True", "InvalidTemplate", "bad", generation=2, now=t2)
    assert [c["type"] for c in both] == ["Running", "Failed"]


def test_older_replicas_get_higher_peering_priority() -> None:
    from stratarouter_runtime.operator.main import seniority_priority

    older = seniority_priority(1_800_000_000_000)
    newer = seniority_priority(1_800_000_000_001)
    assert older > newer > 0


def test_operator_refuses_to_start_without_a_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stratarouter_runtime.cli import main

    monkeypatch.delenv("STRATA_DB_URL", raising=False)
    assert main(["operator", "--", "--standalone"]) == 2
    assert "STRATA_DB_URL is not set" in capsys.readouterr().err


def test_checkpoint_api_limits() -> None:
    s = OperatorSettings.from_env({"STRATA_DB_URL": "x"})
    assert (s.api_max_expensive_requests, s.api_max_history_bytes) == (4, 64 * 1024 * 1024)
    assert (s.api_header_timeout_seconds, s.api_body_timeout_seconds, s.api_keepalive_seconds) == (10, 30, 75)
    assert s.token_review_concurrency == 8
    s = OperatorSettings.from_env(
        {
            "STRATA_DB_URL": "x",
            "STRATA_API_MAX_EXPENSIVE_REQUESTS": "2",
            "STRATA_API_MAX_HISTORY_BYTES": "1048576",
            "STRATA_API_HEADER_TIMEOUT_SECONDS": "2.5",
            "STRATA_API_BODY_TIMEOUT_SECONDS": "9",
            "STRATA_API_KEEPALIVE_SECONDS": "20",
            "STRATA_TOKEN_REVIEW_CONCURRENCY": "3",
        }
    )
    assert (s.api_max_expensive_requests, s.api_max_history_bytes) == (2, 1 << 20)
    assert s.token_review_concurrency == 3
    assert (s.api_header_timeout_seconds, s.api_body_timeout_seconds, s.api_keepalive_seconds) == (2.5, 9, 20)
    with pytest.raises(SettingsError, match="STRATA_API_HEADER_TIMEOUT_SECONDS"):
        OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_API_HEADER_TIMEOUT_SECONDS": "0"})
    with pytest.raises(SettingsError, match="STRATA_API_MAX_HISTORY_BYTES"):
        OperatorSettings.from_env({"STRATA_DB_URL": "x", "STRATA_API_MAX_HISTORY_BYTES": "100"})
