"""The ``stratarouter`` command: operator, migrate, demo, crds.

Each subcommand imports its implementation lazily, so ``stratarouter migrate``
works with the SDK alone (no ``[operator]`` extra installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _migrate(args: argparse.Namespace) -> int:
    from stratarouter_runtime.state.errors import SchemaTooNewError
    from stratarouter_runtime.state.migrations import migrate_url

    try:
        applied = asyncio.run(migrate_url(args.db_url))
    except SchemaTooNewError as exc:
        print(f"stratarouter migrate: {exc}", file=sys.stderr)
        return 1
    print(f"schema up to date ({applied} migration(s) applied)")
    return 0


def _operator(args: argparse.Namespace) -> int:
    from stratarouter_runtime.operator.main import run

    return run(args.kopf_args)


def _crds(args: argparse.Namespace) -> int:
    from stratarouter_runtime.operator.crds import write_crds

    for path in write_crds(args.output, chart=args.chart):
        print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stratarouter_runtime.operator.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratarouter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema")
    migrate.add_argument("--db-url", default=os.environ.get("STRATA_DB_URL"), help="default: $STRATA_DB_URL")
    migrate.set_defaults(func=_migrate)

    op = sub.add_parser("operator", help="run the Kubernetes operator (extra args go to kopf run)")
    op.add_argument("kopf_args", nargs=argparse.REMAINDER)
    op.set_defaults(func=_operator)

    crds = sub.add_parser("crds", help="write the CRD YAML generated from the pydantic models")
    crds.add_argument("--output", default="crds")
    crds.add_argument("--chart", default="charts/stratarouter-operator", help="also refresh the chart's copy")
    crds.set_defaults(func=_crds)

    demo = sub.add_parser(
        "demo", help="local cluster + PostgreSQL + operator: a run that crashes and resumes"
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "migrate" and not args.db_url:
        print("stratarouter migrate: no database; pass --db-url or set STRATA_DB_URL", file=sys.stderr)
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
