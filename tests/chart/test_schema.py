"""values.schema.json: bad values are refused before anything is rendered, with a message naming them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, Helm, HelmError

BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "zero replicas": ({"replicas": 0}, "replicas"),
    "misspelt top-level key": ({"replica": 2}, "replica"),
    "misspelt nested key": ({"postgresql": {"enable": True}}, "enable"),
    "namespace with capitals": ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    "duplicate namespace": ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
    "no database at all": ({"postgresql": {"enabled": False}}, "existingSecret"),
    "unknown pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    "zero checkpoint retention": (
        {"operator": {"defaultCheckpointRetention": 0}},
        "defaultCheckpointRetention",
    ),
    "retention as text": (
        {"operator": {"defaultTtlSecondsAfterFinished": "1h"}},
        "defaultTtlSecondsAfterFinished",
    ),
    "password needing URL escapes": ({"postgresql": {"auth": {"password": "p@ss word"}}}, "password"),
    "scrape interval in words": ({"serviceMonitor": {"interval": "often"}}, "interval"),
    "privileged API port": ({"operator": {"port": 80}}, "port"),
    "bad digest": ({"image": {"digest": "latest"}}, "digest"),
    "zero status patch budget": (
        {"operator": {"statusPatchBudgetPerSecond": 0}},
        "statusPatchBudgetPerSecond",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_with_a_readable_message(helm: Helm, case: str) -> None:
    values, key = BAD_VALUES[case]
    with pytest.raises(HelmError) as caught:
        helm.template(values)
    message = caught.value.stderr
    assert "values don't meet the specifications of the schema" in message
    assert key in message, message
    # Readable: a few lines naming the problem, not a wall of text.
    assert len(message.splitlines()) <= 8, message


def test_both_databases_at_once_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"either database\.existingSecret or postgresql\.enabled"):
        helm.template({"database": {"existingSecret": "db"}})


def test_kubernetes_older_than_1_29_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match="kubeVersion"):
        helm.template(kube_version="1.28.9")


def test_schema_covers_every_value() -> None:
    """Every key in values.yaml is declared in the schema (so additionalProperties: false bites)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> list[str]:
        missing: list[str] = []
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
            for key, sub in value.items():
                if key not in node["properties"]:
                    missing.append(f"{path}.{key}")
                else:
                    missing += walk(sub, node["properties"][key], f"{path}.{key}")
        return missing

    assert walk(values, schema, "") == []
    for key, node in schema["properties"].items():
        assert node.get("description") or node.get("type") == "object", f"{key} has no description"
