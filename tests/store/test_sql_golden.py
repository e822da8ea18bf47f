"""The PostgreSQL backend's statements, as they run, are checked in: ``tests/store/golden/NAME.sql``
is ``postgres_sql.NAME`` rendered. Read them there; after changing a statement, rewrite them with
``.venv/bin/python -m tests.store.test_sql_golden`` and review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratarouter_runtime.state.backends import postgres_sql

GOLDEN = Path(__file__).parent / "golden"


def statements() -> dict[str, str]:
    """Every statement constant of postgres_sql (upper-case names), rendered."""
    return {
        name: value.strip() + "\n"
        for name, value in vars(postgres_sql).items()
        if name.isupper()
        and not name.startswith("_")
        and not name.endswith("COLUMNS")
        and isinstance(value, str)
    }


@pytest.mark.parametrize("name", sorted(statements()))
def test_a_statement_reads_as_its_golden_file(name: str) -> None:
    golden = GOLDEN / f"{name}.sql"
    assert golden.exists(), f"{golden} missing: run python -m tests.store.test_sql_golden"
    assert statements()[name] == golden.read_text(), f"{name} differs from {golden.name}"


def test_every_golden_file_is_a_statement() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(statements())


def write_golden() -> None:
    """Rewrite the golden files from the statements."""
    for stale in GOLDEN.glob("*.sql"):
        stale.unlink()
    for name, text in statements().items():
        (GOLDEN / f"{name}.sql").write_text(text)


if __name__ == "__main__":
    write_golden()
