"""The ``stratarouter`` command: operator, migrate, crds.

Each subcommand imports its implementation lazily, so ``stratarouter migrate``
works with the SDK alone (no ``[operator]`` extra installed), and so does
``stratarouter operator --help`` (its options are built from the operator's
settings model, which needs pydantic only).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from stratarouter_runtime.operator.settings import OperatorSettings, SettingsError
from stratarouter_runtime.state.migrations import DEFAULT_SCHEMA

OPERATOR_DESCRIPTION = """\
Run the StrataRouter operator: the kopf handlers of Executions and Snapshots, and the checkpoint API
(with /healthz and /metrics) that the workload pods write through. It runs until SIGTERM or SIGINT.

Every option below except the logging ones, --liveness and --check sets the STRATA_* environment
variable named in its help, and the environment supplies whatever the command line leaves out: the Helm
chart sets the variables, and its operator.extraArgs adds options to this command line. Only the
PostgreSQL URL is required (--db-url or STRATA_DB_URL)."""

OPERATOR_EPILOG = """\
Nothing is passed through to kopf: every `kopf run` option this operator can use has its own option
here (-n, -A, --standalone, --peering, --peering-priority for --priority, --liveness, -v, -d), and
the rest (-m/--module, file paths, --dev, --log-refkey, --log-prefix) do not apply to built-in
handlers. An unknown option, like a bad value, stops the command with exit code 2 and a message.
A `--` before the options, as older command lines and charts wrote it, is accepted and ignored.

examples:
  stratarouter operator -n team-a -n team-b --verbose
  stratarouter operator -A --peering stratarouter --log-format json
  STRATA_DB_URL=postgresql://localhost/strata stratarouter operator --check"""

# A namespace name: a DNS-1123 label (kopf's globs and exclusions are not supported: the chart grants
# rights per named namespace, and named namespaces switch kopf's cluster-wide namespace scanning off).
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# `kopf run` spellings someone may carry over, and what to write here instead.
KOPF_ONLY_OPTIONS = {
    "-P": "--peering",
    "-p": "--peering-priority",
    "--priority": "--peering-priority",
    "-L": "--liveness",
    "--dev": "--peering-priority 666",
    "-q": "nothing (warnings and errors only is the default)",
    "--quiet": "nothing (warnings and errors only is the default)",
    "-m": "nothing (the handlers are built in)",
    "--module": "nothing (the handlers are built in)",
    "--log-refkey": "nothing (not supported)",
    "--log-prefix": "nothing (not supported)",
    "--no-log-prefix": "nothing (not supported)",
}


@dataclass(frozen=True)
class SettingOption:
    """One command-line option that sets one ``STRATA_*`` variable, i.e. one OperatorSettings field."""

    field: str
    env: str
    flags: tuple[str, ...]
    help: str
    group: str
    metavar: str = ""
    unset: str = ""
    """How the help shows a default of None."""


GROUPS = {
    "store": "store (PostgreSQL)",
    "namespaces": "namespaces",
    "api": "checkpoint API",
    "tokens": "workload pods' tokens",
    "view": "view API (view.stratarouter.io, the aggregated API users read runs through; docs/plugin.md)",
    "status": "status patches and retention",
    "peering": "several replicas (kopf peering; default: standalone)",
    "handlers": "handlers",
}

SETTING_OPTIONS: tuple[SettingOption, ...] = (
    SettingOption(
        "db_url",
        "STRATA_DB_URL",
        ("--db-url",),
        "PostgreSQL URL of the store (required; a URL with a password is visible in `ps`: prefer the "
        "variable)",
        "store",
        "URL",
    ),
    SettingOption(
        "db_schema",
        "STRATA_DB_SCHEMA",
        ("--db-schema",),
        "PostgreSQL schema of the store's tables (the first migration creates it)",
        "store",
        "SCHEMA",
    ),
    SettingOption(
        "run_migrations",
        "STRATA_RUN_MIGRATIONS",
        ("--run-migrations",),
        "create or upgrade the schema at start (--no-run-migrations: `stratarouter migrate` did)",
        "store",
    ),
    SettingOption(
        "default_checkpoint_retention",
        "STRATA_DEFAULT_CHECKPOINT_RETENTION",
        ("--default-checkpoint-retention",),
        "checkpoints kept per Execution whose spec.checkpoint.retention is unset",
        "store",
        "N",
        unset="every checkpoint",
    ),
    SettingOption(
        "watch_namespaces",
        "STRATA_WATCH_NAMESPACES",
        ("-n", "--namespace"),
        "handle the Executions and Snapshots of this namespace; repeat for several (the variable: "
        "comma-separated)",
        "namespaces",
        "NAMESPACE",
        unset="the whole cluster",
    ),
    SettingOption(
        "api_host",
        "STRATA_API_HOST",
        ("--api-host",),
        "address the checkpoint API, /healthz and /metrics listen on",
        "api",
        "HOST",
    ),
    SettingOption("api_port", "STRATA_API_PORT", ("--api-port",), "their port", "api", "PORT"),
    SettingOption(
        "api_url_for_pods",
        "STRATA_API_URL_FOR_PODS",
        ("--api-url-for-pods",),
        "URL the workload pods reach the checkpoint API at (the chart: its Service)",
        "api",
        "URL",
        unset="",
    ),
    SettingOption(
        "api_max_expensive_requests",
        "STRATA_API_MAX_EXPENSIVE_REQUESTS",
        ("--api-max-expensive-requests",),
        "requests that may need much memory (history pages, reads, bodies over 1 MiB) served at once; "
        "one more waits 1 s, then gets 503",
        "api",
        "N",
    ),
    SettingOption(
        "api_max_history_bytes",
        "STRATA_API_MAX_HISTORY_BYTES",
        ("--api-max-history-bytes",),
        "states' bytes in one GET /v1/history page (at least 65536)",
        "api",
        "BYTES",
    ),
    SettingOption(
        "api_header_timeout_seconds",
        "STRATA_API_HEADER_TIMEOUT_SECONDS",
        ("--api-header-timeout-seconds",),
        "time a connection has to send its request line and headers",
        "api",
        "SECONDS",
    ),
    SettingOption(
        "api_body_timeout_seconds",
        "STRATA_API_BODY_TIMEOUT_SECONDS",
        ("--api-body-timeout-seconds",),
        "time a request body has to arrive (then 408), and a history page to be sent",
        "api",
        "SECONDS",
    ),
    SettingOption(
        "api_keepalive_seconds",
        "STRATA_API_KEEPALIVE_SECONDS",
        ("--api-keepalive-seconds",),
        "how long an idle keep-alive connection stays open",
        "api",
        "SECONDS",
    ),
    SettingOption(
        "view_enabled",
        "STRATA_VIEW_ENABLED",
        ("--view-enabled",),
        "serve the view API (TLS; an APIService makes the API server proxy users' reads to it)",
        "view",
    ),
    SettingOption("view_host", "STRATA_VIEW_HOST", ("--view-host",), "address it listens on", "view", "HOST"),
    SettingOption("view_port", "STRATA_VIEW_PORT", ("--view-port",), "its port", "view", "PORT"),
    SettingOption(
        "view_tls_cert_file",
        "STRATA_VIEW_TLS_CERT_FILE",
        ("--view-tls-cert-file",),
        "its serving certificate (PEM; required with --view-enabled)",
        "view",
        "FILE",
    ),
    SettingOption(
        "view_tls_key_file",
        "STRATA_VIEW_TLS_KEY_FILE",
        ("--view-tls-key-file",),
        "its private key (PEM)",
        "view",
        "FILE",
    ),
    SettingOption(
        "view_authz_cache_seconds",
        "STRATA_VIEW_AUTHZ_CACHE_SECONDS",
        ("--view-authz-cache-seconds",),
        "how long a SubjectAccessReview's answer is reused per user and Execution",
        "view",
        "SECONDS",
    ),
    SettingOption(
        "pod_token_seconds",
        "STRATA_POD_TOKEN_SECONDS",
        ("--pod-token-seconds",),
        "life of the token projected into workload pods (600-86400)",
        "tokens",
        "SECONDS",
    ),
    SettingOption(
        "token_cache_seconds",
        "STRATA_TOKEN_CACHE_SECONDS",
        ("--token-cache-seconds",),
        "how long a pod token's TokenReview is reused, never past the token's expiry",
        "tokens",
        "SECONDS",
    ),
    SettingOption(
        "token_review_concurrency",
        "STRATA_TOKEN_REVIEW_CONCURRENCY",
        ("--token-review-concurrency",),
        "TokenReviews in flight at once",
        "tokens",
        "N",
    ),
    SettingOption(
        "status_patch_interval_seconds",
        "STRATA_STATUS_PATCH_INTERVAL_SECONDS",
        ("--status-patch-interval-seconds",),
        "at most one lastCheckpoint status patch per Execution per this many seconds",
        "status",
        "SECONDS",
    ),
    SettingOption(
        "status_patch_budget_per_second",
        "STRATA_STATUS_PATCH_BUDGET",
        ("--status-patch-budget",),
        "most status patches a second, all Executions together (each costs the API server ~7.5 ms CPU)",
        "status",
        "PER_SECOND",
    ),
    SettingOption(
        "default_ttl_seconds_after_finished",
        "STRATA_DEFAULT_TTL_SECONDS_AFTER_FINISHED",
        ("--default-ttl-seconds-after-finished",),
        "seconds a finished Execution lives when its spec.retention.ttlSecondsAfterFinished is unset",
        "status",
        "SECONDS",
        unset="kept",
    ),
    SettingOption(
        "retention_interval_seconds",
        "STRATA_RETENTION_INTERVAL_SECONDS",
        ("--retention-interval-seconds",),
        "how often the retention timer runs",
        "status",
        "SECONDS",
    ),
    SettingOption(
        "peering",
        "STRATA_PEERING",
        ("--peering",),
        "the kopf peering object through which the replicas agree which one runs the handlers (all of "
        "them serve the checkpoint API)",
        "peering",
        "NAME",
        unset="empty (standalone)",
    ),
    SettingOption(
        "peering_priority",
        "STRATA_PEERING_PRIORITY",
        ("--peering-priority",),
        "kopf peering priority; the highest runs the handlers",
        "peering",
        "N",
        unset="higher the earlier a replica started",
    ),
    SettingOption(
        "peering_lifetime_seconds",
        "STRATA_PEERING_LIFETIME_SECONDS",
        ("--peering-lifetime-seconds",),
        "how long a replica's peering record counts without a refresh (15-3600)",
        "peering",
        "SECONDS",
    ),
    SettingOption(
        "handler_retries",
        "STRATA_HANDLER_RETRIES",
        ("--handler-retries",),
        "failed reconciles in a row after which each is logged as an error, not a warning",
        "handlers",
        "N",
    ),
    SettingOption(
        "handler_backoff_seconds",
        "STRATA_HANDLER_BACKOFF_SECONDS",
        ("--handler-backoff-seconds",),
        "first retry delay of a failed handler (doubling for reconciles)",
        "handlers",
        "SECONDS",
    ),
)

LOG_LEVELS = {"warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _help(option: SettingOption) -> str:
    field = OperatorSettings.model_fields[option.field]
    if field.is_required():
        shown = ""
    elif field.default in (None, "", ()):
        shown = f"; default: {option.unset}" if option.unset else ""
    else:
        shown = f"; default: {_format_value(field.default)}"
    # (argparse %-formats help texts: a literal percent sign in one would need doubling)
    return f"{option.help} [{option.env}{shown}]"


def _value_checker(option: SettingOption) -> Callable[[str], str]:
    """An argparse ``type``: the value exactly as the settings model would accept it from the variable."""

    def check(raw: str) -> str:
        values = {"db_url": "unused", option.field: raw.strip()}
        try:
            OperatorSettings.model_validate(values)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise argparse.ArgumentTypeError(f"{msg[:1].lower()}{msg[1:]}: {raw!r}") from None
        return raw.strip()

    return check


def namespace_name(raw: str) -> str:
    """An argparse ``type``: an exact namespace name."""
    if len(raw) > 63 or not NAMESPACE_RE.fullmatch(raw):
        raise argparse.ArgumentTypeError(
            f"not a namespace name: {raw!r} (lowercase letters, digits and '-', at most 63 characters; "
            "repeat -n for several namespaces)"
        )
    return raw


def liveness_url(raw: str) -> str:
    """An argparse ``type``: an endpoint kopf can serve its liveness probe at (``http://host:port/path``)."""
    parts = urllib.parse.urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1 or not parts.path.startswith("/"):
        raise argparse.ArgumentTypeError(f"not an http://HOST:PORT/PATH URL: {raw!r}")
    return raw


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of ``stratarouter operator``, grouped as ``--help`` shows them."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    peering_choice = groups["peering"].add_mutually_exclusive_group()
    for option in SETTING_OPTIONS:
        group: argparse._ActionsContainer = groups[option.group]
        if option.field == "watch_namespaces":
            scope = group.add_mutually_exclusive_group()
            scope.add_argument(
                *option.flags,
                dest="namespace",
                action="append",
                type=namespace_name,
                metavar=option.metavar,
                help=_help(option),
            )
            scope.add_argument(
                "-A",
                "--all-namespaces",
                action="store_true",
                help=f"the whole cluster, even if {option.env} names namespaces (sets it empty)",
            )
            continue
        if option.field in ("run_migrations", "view_enabled"):
            group.add_argument(
                *option.flags,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help(option),
            )
            continue
        if option.field == "peering":
            peering_choice.add_argument(
                "--standalone",
                action="store_true",
                help=f"one replica, no peering, even if {option.env} is set (sets it empty)",
            )
            group = peering_choice
        group.add_argument(
            *option.flags,
            dest=option.field,
            type=_value_checker(option),
            metavar=option.metavar,
            help=_help(option),
        )
    out = parser.add_argument_group("logging, health, checks (no environment variables)")
    out.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO (the default logs warnings and errors only)"
    )
    out.add_argument("-d", "--debug", action="store_true", help="log at DEBUG (kopf's and ours)")
    out.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line with the object each message is about (default: text)",
    )
    out.add_argument(
        "--liveness",
        type=liveness_url,
        metavar="URL",
        help="also serve kopf's own liveness probe at this endpoint, e.g. http://0.0.0.0:8081/healthz "
        "(the chart probes the checkpoint API's /healthz)",
    )
    out.add_argument(
        "--check",
        action="store_true",
        help="validate the options and variables, print the settings they make (the password masked) "
        "and exit without connecting anywhere",
    )


def operator_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``STRATA_*`` variables the given options set (options not given set nothing)."""
    env: dict[str, str] = {}
    for option in SETTING_OPTIONS:
        if option.field == "watch_namespaces":
            if args.all_namespaces:
                env[option.env] = ""
            elif args.namespace:
                env[option.env] = ",".join(dict.fromkeys(args.namespace))
            continue
        if option.field == "peering" and args.standalone:
            env[option.env] = ""
            continue
        value = getattr(args, option.field)
        if value is not None:
            env[option.env] = _format_value(value)
    return env


def operator_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> OperatorSettings:
    """The settings the options and ``environ`` make; :class:`SettingsError` names a bad variable."""
    settings = OperatorSettings.from_env({**environ, **operator_environment(args)})
    for ns in settings.watch_namespaces:
        if len(ns) > 63 or not NAMESPACE_RE.fullmatch(ns):
            raise SettingsError(f"STRATA_WATCH_NAMESPACES: not a namespace name: {ns!r}")
    return settings


def masked_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def describe_settings(
    settings: OperatorSettings, args: argparse.Namespace, environ: Mapping[str, str]
) -> list[str]:
    """``VAR=value  # where it came from`` for every setting, as ``--check`` prints them."""
    given = operator_environment(args)
    lines = []
    for option in SETTING_OPTIONS:
        value = _format_value(getattr(settings, option.field))
        if option.field == "db_url":
            value = masked_url(value)
        if option.env in given:
            source = "command line"
        elif (environ.get(option.env) or "").strip():
            source = "environment"
        else:
            source = f"default ({option.unset})" if option.unset and not value else "default"
        lines.append(f"{option.env}={value}  # {source}")
    return lines


def _operator(args: argparse.Namespace) -> int:
    try:
        settings = operator_settings(args, os.environ)
    except SettingsError as exc:
        print(f"stratarouter operator: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("\n".join(describe_settings(settings, args, os.environ)))
        return 0
    # Everything that reads a variable itself (handler options fixed when the handlers are registered)
    # sees the command line too.
    os.environ.update(operator_environment(args))
    from stratarouter_runtime.operator.main import run_operator

    level = "debug" if args.debug else "info" if args.verbose else "warning"
    return run_operator(
        settings, log_level=LOG_LEVELS[level], log_format=args.log_format, liveness=args.liveness
    )


def _migrate(args: argparse.Namespace) -> int:
    from stratarouter_runtime.state.errors import InvalidArgumentError, StateError
    from stratarouter_runtime.state.migrations import migrate_url, move_store_url, schema_name

    if not args.db_url:
        print("stratarouter migrate: no database; pass --db-url or set STRATA_DB_URL", file=sys.stderr)
        return 2
    for option, value in (("--db-schema", args.db_schema), ("--move-from", args.move_from)):
        try:
            if value is not None:
                schema_name(value)
        except InvalidArgumentError as exc:
            print(f"stratarouter migrate: {option}: {exc}", file=sys.stderr)
            return 2
    schema = args.db_schema
    try:
        if args.move_from is not None:
            moved = asyncio.run(move_store_url(args.db_url, args.move_from, schema))
            print(f"moved the store from schema {args.move_from} to {schema}: {len(moved)} objects")
        applied = asyncio.run(migrate_url(args.db_url, schema))
    except InvalidArgumentError as exc:  # nothing to move, or the target holds a store already
        print(f"stratarouter migrate: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:  # a schema too new, a store left in public, a pooler without search_path
        print(f"stratarouter migrate: {exc}", file=sys.stderr)
        return 1
    print(f"schema {schema} up to date ({applied} migration(s) applied)")
    return 0


def _crds(args: argparse.Namespace) -> int:
    from stratarouter_runtime.operator.crds import write_crds

    for path in write_crds(args.output, chart=args.chart):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stratarouter",
        description="StrataRouter Runtime: run the operator, migrate the store's schema, or write the CRDs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the PostgreSQL schema",
        description="Create or upgrade the store's tables in its PostgreSQL schema, ahead of the first "
        "StateManager or operator start (which otherwise migrate by themselves, under an advisory lock).",
    )
    migrate.add_argument("--db-url", default=os.environ.get("STRATA_DB_URL"), help="default: $STRATA_DB_URL")
    migrate.add_argument(
        "--db-schema",
        default=os.environ.get("STRATA_DB_SCHEMA", "").strip() or DEFAULT_SCHEMA,
        help=f"the store's PostgreSQL schema (default: $STRATA_DB_SCHEMA, else {DEFAULT_SCHEMA})",
    )
    migrate.add_argument(
        "--move-from",
        metavar="SCHEMA",
        help="first move the store an earlier release made in this schema (public) into --db-schema, "
        "with its data, in one transaction",
    )
    migrate.set_defaults(func=_migrate, parser=migrate)

    op = sub.add_parser(
        "operator",
        help="run the Kubernetes operator (see `stratarouter operator --help`)",
        description=OPERATOR_DESCRIPTION,
        epilog=OPERATOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # the chart's extraArgs are an interface: no prefix may stand for an option
    )
    add_operator_arguments(op)
    op.set_defaults(func=_operator, parser=op)

    crds = sub.add_parser("crds", help="write the CRD YAML generated from the pydantic models")
    crds.add_argument("--output", default="crds")
    crds.add_argument("--chart", default="charts/stratarouter-operator", help="also refresh the chart's copy")
    crds.set_defaults(func=_crds, parser=crds)

    return parser


def _without_separator(argv: Sequence[str]) -> list[str]:
    """``operator -- OPTIONS`` (the old pass-through spelling) read as ``operator OPTIONS``."""
    args = list(argv)
    if args[:1] == ["operator"] and "--" in args:
        args.remove("--")
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; exits 2 with a message (and a hint for a `kopf run` option) when it is bad."""
    args, unknown = build_parser().parse_known_args(
        _without_separator(sys.argv[1:] if argv is None else argv)
    )
    if unknown:
        message = f"unrecognized arguments: {' '.join(unknown)}"
        if args.command == "operator":
            hints = [
                f"{arg}: use {KOPF_ONLY_OPTIONS[arg.split('=', 1)[0]]}"
                for arg in unknown
                if arg.split("=", 1)[0] in KOPF_ONLY_OPTIONS
            ]
            if hints:
                message += " (options of `kopf run` are not passed through; " + "; ".join(hints) + ")"
        args.parser.error(message)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
