"""``stratarouter operator``'s command line: parsing, the STRATA_* variables it sets, errors, help. No I/O."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from stratarouter_runtime import cli
from stratarouter_runtime.operator.settings import OperatorSettings

DB = {"STRATA_DB_URL": "postgresql://localhost/strata"}

# A valid value for every option that takes one, and the setting it must produce.
SAMPLES: dict[str, tuple[str, object]] = {
    "db_url": ("postgresql://other/db", "postgresql://other/db"),
    "db_schema": ("team_store", "team_store"),
    "default_checkpoint_retention": ("7", 7),
    "api_host": ("127.0.0.1", "127.0.0.1"),
    "api_port": ("9000", 9000),
    "api_url_for_pods": ("http://strata.svc:8080", "http://strata.svc:8080"),
    "api_max_expensive_requests": ("2", 2),
    "api_max_history_bytes": ("1048576", 1048576),
    "api_header_timeout_seconds": ("2.5", 2.5),
    "api_body_timeout_seconds": ("12", 12.0),
    "api_keepalive_seconds": ("20", 20.0),
    "view_host": ("127.0.0.1", "127.0.0.1"),
    "view_port": ("9443", 9443),
    "view_tls_cert_file": ("/tls/tls.crt", "/tls/tls.crt"),
    "view_tls_key_file": ("/tls/tls.key", "/tls/tls.key"),
    "view_authz_cache_seconds": ("5", 5.0),
    "pod_token_seconds": ("1200", 1200),
    "token_cache_seconds": ("0", 0.0),
    "token_review_concurrency": ("3", 3),
    "status_patch_interval_seconds": ("0.5", 0.5),
    "status_patch_budget_per_second": ("12.5", 12.5),
    "default_ttl_seconds_after_finished": ("3600", 3600),
    "retention_interval_seconds": ("5", 5.0),
    "peering": ("strata", "strata"),
    "peering_priority": ("100", 100),
    "peering_lifetime_seconds": ("30", 30),
    "handler_retries": ("3", 3),
    "handler_backoff_seconds": ("0.5", 0.5),
}
# flags without a value: tested one by one below
SPECIAL = {"watch_namespaces", "run_migrations", "view_enabled"}
BY_FIELD = {option.field: option for option in cli.SETTING_OPTIONS}


def parse(*argv: str) -> argparse.Namespace:
    return cli.parse_args(["operator", *argv])


def settings(*argv: str, environ: dict[str, str] | None = None) -> OperatorSettings:
    return cli.operator_settings(parse(*argv), DB if environ is None else environ)


def operator_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["operator", "--help"])
    assert exc.value.code == 0
    out: str = capsys.readouterr().out
    return out


def test_every_setting_has_exactly_one_option() -> None:
    fields = [option.field for option in cli.SETTING_OPTIONS]
    assert sorted(fields) == sorted(OperatorSettings.model_fields)
    assert len(set(fields)) == len(fields)
    assert set(SAMPLES) | SPECIAL == set(fields)


def test_each_option_is_named_after_its_variable() -> None:
    """STRATA_API_PORT is --api-port, and so on; only the namespaces are spelt as kubectl spells them."""
    for option in cli.SETTING_OPTIONS:
        expected = "--namespace" if option.field == "watch_namespaces" else None
        expected = expected or "--" + option.env.removeprefix("STRATA_").lower().replace("_", "-")
        assert option.flags[-1] == expected


@pytest.mark.parametrize("field", sorted(SAMPLES))
def test_each_option_sets_its_variable(field: str) -> None:
    option = BY_FIELD[field]
    raw, expected = SAMPLES[field]
    args = parse(option.flags[-1], raw)
    assert cli.operator_environment(args) == {option.env: raw}
    # The variable it names is the one the settings read: the same value through the environment alone.
    assert getattr(OperatorSettings.from_env({**DB, option.env: raw}), field) == expected
    assert getattr(cli.operator_settings(args, DB), field) == expected


def test_no_options_set_nothing_and_the_environment_decides() -> None:
    assert cli.operator_environment(parse()) == {}
    env = {**DB, "STRATA_API_PORT": "9000", "STRATA_WATCH_NAMESPACES": "a,b", "STRATA_PEERING": "p"}
    ours = settings(environ=env)
    assert (ours.api_port, ours.watch_namespaces, ours.peering) == (9000, ("a", "b"), "p")
    assert settings() == OperatorSettings.from_env(DB)


def test_an_option_wins_over_its_variable() -> None:
    env = {**DB, "STRATA_API_PORT": "9000", "STRATA_WATCH_NAMESPACES": "a,b", "STRATA_PEERING": "p"}
    assert settings("--api-port", "9100", environ=env).api_port == 9100
    assert settings("-n", "c", environ=env).watch_namespaces == ("c",)
    assert settings("-A", environ=env).watch_namespaces == ()
    assert settings("--standalone", environ=env).peering == ""
    assert settings("--peering", "q", environ=env).peering == "q"
    assert settings("--db-url", "postgresql://cli/db").db_url == "postgresql://cli/db"


def test_namespaces_repeat_in_order_without_duplicates() -> None:
    args = parse("-n", "team-b", "--namespace", "team-a", "-n", "team-b")
    assert cli.operator_environment(args) == {"STRATA_WATCH_NAMESPACES": "team-b,team-a"}
    assert cli.operator_settings(args, DB).watch_namespaces == ("team-b", "team-a")
    assert cli.operator_environment(parse("-A")) == {"STRATA_WATCH_NAMESPACES": ""}


def test_migrations_on_and_off() -> None:
    assert cli.operator_environment(parse("--no-run-migrations")) == {"STRATA_RUN_MIGRATIONS": "false"}
    assert settings("--no-run-migrations").run_migrations is False
    off = {**DB, "STRATA_RUN_MIGRATIONS": "false"}
    assert settings("--run-migrations", environ=off).run_migrations is True


def test_view_api_on_and_off() -> None:
    assert cli.operator_environment(parse("--view-enabled")) == {"STRATA_VIEW_ENABLED": "true"}
    assert settings("--view-enabled").view_enabled is True
    on = {**DB, "STRATA_VIEW_ENABLED": "true"}
    assert settings(environ=on).view_enabled is True
    assert settings("--no-view-enabled", environ=on).view_enabled is False
    assert settings().view_enabled is False


def test_logging_and_health_options() -> None:
    args = parse()
    assert (args.verbose, args.debug, args.log_format, args.liveness, args.check) == (
        False,
        False,
        "text",
        None,
        False,
    )
    args = parse("-v", "-d", "--log-format", "json", "--liveness", "http://0.0.0.0:8081/healthz")
    assert (args.verbose, args.debug, args.log_format) == (True, True, "json")
    assert args.liveness == "http://0.0.0.0:8081/healthz"
    assert cli.operator_environment(args) == {}


def test_the_old_separator_is_ignored() -> None:
    """`operator -- OPTIONS`, as the demo, the tests and older charts wrote it, means `operator OPTIONS`."""
    old = cli.parse_args(["operator", "--", "--standalone", "-n", "ns", "--verbose"])
    new = cli.parse_args(["operator", "--standalone", "-n", "ns", "--verbose"])
    internals = ("parser", "func")
    assert {k: v for k, v in vars(old).items() if k not in internals} == {
        k: v for k, v in vars(new).items() if k not in internals
    }
    assert (new.standalone, new.namespace, new.verbose) == (True, ["ns"], True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "Team"], "argument -n/--namespace: not a namespace name: 'Team'"),
        (["-n", "a,b"], "repeat -n for several namespaces"),
        (["-n", "a", "-A"], "argument -A/--all-namespaces: not allowed with argument -n/--namespace"),
        (["--standalone", "--peering", "p"], "argument --peering: not allowed with argument --standalone"),
        (
            ["--api-port", "70000"],
            "argument --api-port: input should be less than or equal to 65535: '70000'",
        ),
        (["--api-port", "http"], "argument --api-port: input should be a valid integer"),
        (
            ["--pod-token-seconds", "60"],
            "argument --pod-token-seconds: input should be greater than or equal",
        ),
        (["--default-checkpoint-retention", "0"], "argument --default-checkpoint-retention: input should"),
        (
            ["--db-schema", "Team-Store"],
            "argument --db-schema: value error, db_schema must be a lowercase SQL",
        ),
        (["--status-patch-budget", "0"], "argument --status-patch-budget: input should be greater than 0"),
        (["--run-migrations=maybe"], "ignored explicit argument 'maybe'"),
        (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        (["--liveness", "https://0.0.0.0:8081/healthz"], "argument --liveness: not an http://HOST:PORT/PATH"),
        (["--liveness", "http://0.0.0.0:port/healthz"], "argument --liveness: not an http://HOST:PORT/PATH"),
        (["--verb"], "unrecognized arguments: --verb"),  # no abbreviations: extraArgs are an interface
        (["stray"], "unrecognized arguments: stray"),
        (["--dev"], "--dev (options of `kopf run` are not passed through; --dev: use --peering-priority"),
        (["--priority", "5"], "--priority: use --peering-priority"),
        (["-m", "handlers"], "-m: use nothing (the handlers are built in)"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: stratarouter operator ")
    assert "\nstratarouter operator: error: " in err
    assert message in err


def test_help_lists_every_option_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(operator_help(capsys).split())
    parser = cli.parse_args(["operator"]).parser
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text, flag
    for option in cli.SETTING_OPTIONS:
        assert f"[{option.env}" in text, option.env
    assert "Nothing is passed through to kopf" in text
    assert "memo." not in text  # no internal docstring
    assert "kopf settings, login" not in text
    assert "kopf_args" not in text


def test_help_shows_the_settings_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(operator_help(capsys).split())
    assert "[STRATA_API_PORT; default: 8080]" in text
    assert "[STRATA_RETENTION_INTERVAL_SECONDS; default: 30]" in text
    assert "[STRATA_RUN_MIGRATIONS; default: true]" in text
    assert "[STRATA_DB_URL]" in text  # required: no default


def test_the_top_level_help_names_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    assert "stratarouter operator --help" in " ".join(capsys.readouterr().out.split())


def test_bad_environment_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.os, "environ", {"STRATA_API_PORT": "many"})
    assert cli.main(["operator", "--check"]) == 2
    assert "STRATA_DB_URL is not set" in capsys.readouterr().err
    monkeypatch.setattr(cli.os, "environ", {**DB, "STRATA_API_PORT": "many"})
    assert cli.main(["operator", "--check"]) == 2
    assert "stratarouter operator: invalid operator settings: STRATA_API_PORT" in capsys.readouterr().err
    monkeypatch.setattr(cli.os, "environ", {**DB, "STRATA_WATCH_NAMESPACES": "a,B"})
    assert cli.main(["operator", "--check"]) == 2
    assert "STRATA_WATCH_NAMESPACES: not a namespace name: 'B'" in capsys.readouterr().err


def test_check_prints_the_settings_and_where_each_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"STRATA_DB_URL": "postgresql://strata:s3cret@db:5432/strata", "STRATA_API_PORT": "9000"}
    monkeypatch.setattr(cli.os, "environ", environ)
    assert cli.main(["operator", "-n", "a", "--check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(cli.SETTING_OPTIONS)
    assert "STRATA_DB_URL=postgresql://strata:***@db:5432/strata  # environment" in lines
    assert "STRATA_API_PORT=9000  # environment" in lines
    assert "STRATA_WATCH_NAMESPACES=a  # command line" in lines
    assert "STRATA_API_HOST=0.0.0.0  # default" in lines
    assert "STRATA_DEFAULT_CHECKPOINT_RETENTION=  # default (every checkpoint)" in lines
    assert environ == {
        "STRATA_DB_URL": "postgresql://strata:s3cret@db:5432/strata",
        "STRATA_API_PORT": "9000",
    }


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u:p%40ss@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
    ],
)
def test_masked_url(url: str, masked: str) -> None:
    assert cli.masked_url(url) == masked


def test_run_gets_the_settings_and_the_environment_gets_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratarouter_runtime.operator import main as operator_main

    calls: list[tuple[OperatorSettings, dict[str, Any]]] = []

    def fake_run(ours: OperatorSettings, **kwargs: Any) -> int:
        calls.append((ours, kwargs))
        return 0

    environ = dict(DB)
    monkeypatch.setattr(cli.os, "environ", environ)
    monkeypatch.setattr(operator_main, "run_operator", fake_run)
    argv = [
        "operator",
        "--",
        "-n",
        "a",
        "-v",
        "--retention-interval-seconds",
        "2",
        "--liveness",
        "http://127.0.0.1:8081/h",
    ]
    assert cli.main(argv) == 0
    ((ours, kwargs),) = calls
    assert ours.watch_namespaces == ("a",)
    assert ours.retention_interval_seconds == 2.0
    assert kwargs == {"log_level": logging.INFO, "log_format": "text", "liveness": "http://127.0.0.1:8081/h"}
    # Read at handler registration, before the settings exist: the option must be in the environment.
    assert environ["STRATA_RETENTION_INTERVAL_SECONDS"] == "2"
    assert environ["STRATA_WATCH_NAMESPACES"] == "a"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["--debug"], logging.DEBUG),
        (["-v", "-d"], logging.DEBUG),
    ],
)
def test_log_levels(argv: list[str], level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from stratarouter_runtime.operator import main as operator_main

    levels: list[int] = []
    monkeypatch.setattr(cli.os, "environ", dict(DB))
    monkeypatch.setattr(operator_main, "run_operator", lambda ours, **kw: levels.append(kw["log_level"]) or 0)
    assert cli.main(["operator", *argv]) == 0
    assert levels == [level]


def test_migrate_without_a_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STRATA_DB_URL", raising=False)
    assert cli.main(["migrate"]) == 2
    assert "no database; pass --db-url or set STRATA_DB_URL" in capsys.readouterr().err


def test_migrate_targets_the_operators_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATA_DB_SCHEMA", raising=False)
    assert cli.parse_args(["migrate"]).db_schema == "stratarouter"
    monkeypatch.setenv("STRATA_DB_SCHEMA", "team_store")
    assert cli.parse_args(["migrate"]).db_schema == "team_store"
    assert cli.parse_args(["migrate", "--db-schema", "other"]).db_schema == "other"


def test_migrate_refuses_a_bad_schema_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "--db-url", "postgresql://unused/db", "--db-schema", "Bad-Name"]) == 2
    assert "stratarouter migrate: --db-schema: db_schema must be a lowercase SQL identifier" in (
        capsys.readouterr().err
    )
