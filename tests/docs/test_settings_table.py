"""docs/settings.md cannot go stale: its one table names every setting the code has, with the code's
default, variable and chart value, and names nothing the code does not have.

The sources: ``StateConfig`` fields, ``StateManager.__init__``'s run arguments and ``config._ENV_FIELDS``
(SDK); ``OperatorSettings`` fields and the variable ``OperatorSettings.from_env`` reads for each (taken
from its source), and the chart's deployment template (operator); ``ExecutionSpec``'s fields, walked
down to the leaves (Execution); ``state.pod_contract.PodEnv`` (the pod's variables).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stratarouter_runtime import StateManager
from stratarouter_runtime.operator import settings
from stratarouter_runtime.operator.resources.execution import ExecutionSpec, PodTemplate
from stratarouter_runtime.state import config, pod_contract
from stratarouter_runtime.state.backends import http
from tests.docs.samples import ROOT

TABLE = ROOT / "docs" / "settings.md"
CHART = ROOT / "charts" / "stratarouter-operator" / "templates"
REQUIRED = object()
NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Row:
    section: str
    setting: str
    variables: tuple[str, ...]
    chart: tuple[str, ...]
    default: Any


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def parse_default(cell: str) -> Any:
    """``required``, ``unset`` or the first code span read as a literal (true/false as in YAML)."""
    text = cell.strip()
    if text.startswith("required"):
        return REQUIRED
    if text.startswith("unset"):
        return None
    found = spans(text)
    if not found:
        return NO_DEFAULT
    literal = found[0]
    if literal in ("true", "false"):
        return literal == "true"
    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal


def table() -> list[Row]:
    rows: list[Row] = []
    section = ""
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):  # the development tools' variables: not settings of the product
            break
        if not line.startswith("| ") or line.startswith("| Setting ") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, line
        heading = re.fullmatch(r"\*\*(\w+)\*\*", cells[0])
        if heading:
            section = heading[1]
            continue
        (setting,) = spans(cells[0]) or [cells[0]]
        variables = tuple(v for v in spans(cells[1]) if v.startswith("STRATA_"))
        rows.append(Row(section, setting, variables, tuple(spans(cells[2])), parse_default(cells[3])))
    return rows


ROWS = table()


def section(name: str) -> dict[str, Row]:
    found = [row for row in ROWS if row.section == name]
    names = [row.setting for row in found]
    assert len(names) == len(set(names)), f"{name}: a setting listed twice: {names}"
    return {row.setting: row for row in found}


def same(documented: Any, actual: Any) -> bool:
    """Defaults compare as values: 30 == 30.0, an empty tuple is an empty (comma-separated) string."""
    if isinstance(actual, tuple):
        actual = ",".join(actual)
    if isinstance(documented, bool) or isinstance(actual, bool):
        return documented is actual
    return bool(documented == actual)


def check(rows: dict[str, Row], expected: dict[str, Any], where: str) -> None:
    missing = sorted(set(expected) - set(rows))
    stale = sorted(set(rows) - set(expected))
    assert not missing, f"docs/settings.md lacks a row for {where} {missing}"
    assert not stale, f"docs/settings.md lists {stale}, which {where} does not have"
    wrong = {
        name: (rows[name].default, value)
        for name, value in expected.items()
        if not same(rows[name].default, value)
    }
    assert not wrong, f"{where}: defaults in the table differ from the code's (table, code): {wrong}"


def test_the_table_has_its_three_sections() -> None:
    assert {row.section for row in ROWS} == {"SDK", "Operator", "Execution"}
    assert all(row.default is not NO_DEFAULT for row in ROWS), [
        r.setting for r in ROWS if r.default is NO_DEFAULT
    ]


def sdk_expected() -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for f in dataclasses.fields(config.StateConfig):
        if f.default is not dataclasses.MISSING:
            expected[f.name] = f.default
        else:
            assert f.default_factory is not dataclasses.MISSING
            expected[f.name] = f.default_factory()
    params = inspect.signature(StateManager.__init__).parameters
    for name, param in params.items():
        if name in ("self", "backend", "db_url", "config", "options"):
            continue
        expected[name] = param.default
    expected['extra["token_file"]'] = pod_contract.TOKEN_FILE
    expected['extra["not_current_grace_seconds"]'] = http.NOT_CURRENT_GRACE_SECONDS
    return expected


def test_sdk_rows_match_state_config_and_state_manager() -> None:
    rows = section("SDK")
    check(rows, sdk_expected(), "StateConfig / StateManager(...)")
    variables = {f"STRATA_{suffix}": name for suffix, name in config._ENV_FIELDS.items()}
    variables |= {
        "STRATA_DB_URL": "db_url",
        "STRATA_API_URL": "api_url",
        "STRATA_EXECUTION_ID": "execution_id",
        "STRATA_ATTEMPT": "attempt",
        "STRATA_RESUME_STEP": "resume_step",
        "STRATA_TOKEN_FILE": 'extra["token_file"]',
    }
    for variable, name in variables.items():
        assert variable in rows[name].variables, f"{name}'s row should name {variable}"
    for row in rows.values():
        for variable in row.variables:
            assert variables.get(variable) == row.setting or row.setting == "backend", (
                f"{row.setting}'s row names {variable}, which sets {variables.get(variable)}"
            )


def operator_variables() -> dict[str, str]:
    """field -> variable, from the ``names`` mapping in ``OperatorSettings.from_env``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(settings.OperatorSettings.from_env)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "names" for t in node.targets
        ):
            mapping = ast.literal_eval(node.value)
            assert isinstance(mapping, dict)
            return mapping
    raise AssertionError("no `names = {...}` mapping in OperatorSettings.from_env")


def chart_values() -> dict[str, set[str]]:
    """variable -> the ``.Values`` paths the deployment template sets it from (through helpers too)."""
    helpers = (CHART / "_helpers.tpl").read_text(encoding="utf-8")

    def values_of(text: str) -> set[str]:
        found = set(re.findall(r"\.Values\.([\w.]+)", text))
        for helper in re.findall(r'include "([\w.]+)"', text):
            body = re.search(rf'define "{re.escape(helper)}"(.*?){{{{-? end -?}}}}', helpers, re.S)
            if body:
                found |= values_of(body[1])
        return found

    lines = (CHART / "deployment.yaml").read_text(encoding="utf-8").splitlines()
    result: dict[str, set[str]] = {}
    for i, line in enumerate(lines):
        named = re.match(r"\s*- name: (STRATA_\w+)\s*$", line)
        if not named:
            continue
        context = [lines[i - 1]] if lines[i - 1].strip().startswith("{{- with") else []
        for after in lines[i + 1 :]:
            if re.match(r"\s*(- name:|\{\{-? (end|with)|#)", after):
                break
            context.append(after)
        result[named[1]] = values_of("\n".join(context))
    return result


def test_operator_rows_match_operator_settings_and_the_chart() -> None:
    rows = section("Operator")
    expected = {
        name: REQUIRED if field.default is PydanticUndefined else field.default
        for name, field in settings.OperatorSettings.model_fields.items()
    }
    check(rows, expected, "OperatorSettings")
    variables = operator_variables()
    chart = chart_values()
    for name, row in rows.items():
        assert row.variables == (variables[name],), (
            f"{name} is read from {variables[name]}, not {row.variables}"
        )
        from_chart = chart.get(variables[name], set())
        if row.chart:
            assert row.chart[0] in from_chart, (
                f"{variables[name]} is set from {from_chart}, not {row.chart[0]}"
            )
        else:
            assert not from_chart, f"{name}'s row lacks its chart value, one of {sorted(from_chart)}"


def spec_leaves(model: type[BaseModel], prefix: str, *, optional: bool = False) -> dict[str, Any]:
    """camelCase paths of the spec's settings with their defaults; nested models are walked, the pod
    template is one setting. Inside an optional model (``restoreFrom``) nothing is required."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        annotation = field.annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if (
            inspect.isclass(annotation)
            and issubclass(annotation, BaseModel)
            and annotation is not PodTemplate
        ):
            found |= spec_leaves(annotation, path, optional=optional or field.default is None)
        elif field.default_factory is not None:
            found[path] = field.default_factory()  # type: ignore[call-arg]
        elif field.default is PydanticUndefined:
            found[path] = None if optional else REQUIRED
        else:
            found[path] = field.default
    return found


def test_execution_rows_match_execution_spec() -> None:
    check(section("Execution"), spec_leaves(ExecutionSpec, "spec"), "ExecutionSpec")


@pytest.mark.parametrize("variable", [v.value for v in pod_contract.PodEnv])
def test_every_pod_contract_variable_has_a_row(variable: str) -> None:
    assert any(variable in row.variables for row in ROWS), f"docs/settings.md does not name {variable}"


def test_settings_table_is_linked() -> None:
    for doc in ("README.md", "docs/sdk.md"):
        assert "settings.md" in Path(ROOT / doc).read_text(encoding="utf-8"), doc


def test_every_strata_variable_is_in_the_page() -> None:
    """Any ``STRATA_*`` name the package, the chart or the Makefile mentions is on the page (in the
    table, or among the development tools' variables)."""
    page = TABLE.read_text(encoding="utf-8")
    sources = [
        *(ROOT / "operator" / "stratarouter_runtime").rglob("*.py"),
        *(ROOT / "charts").rglob("*.yaml"),
    ]
    sources.append(ROOT / "Makefile")
    named = {
        name for path in sources for name in re.findall(r"\bSTRATA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    missing = sorted(name for name in named if f"`{name}`" not in page)
    assert not missing, f"docs/settings.md does not name {missing}"
