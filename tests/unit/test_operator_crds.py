"""The checked-in CRDs are exactly what the pydantic models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stratarouter_runtime.operator.crds import RESOURCES, crd_manifest, render, write_crds

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crds_are_up_to_date() -> None:
    for model in RESOURCES:
        path = ROOT / "crds" / f"{model.crd.name}.yaml"
        assert path.exists(), f"{path} missing: run `make crds`"
        assert path.read_text(encoding="utf-8") == render(model), f"{path} is stale: run `make crds`"


def _walk(node: Any, where: str = "") -> list[str]:
    """Problems that make a schema non-structural (or that the API server would reject)."""
    problems: list[str] = []
    if isinstance(node, dict):
        for bad in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
            if bad in node:
                problems.append(f"{where}: {bad}")
        if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
            problems.append(f"{where}: numeric exclusiveMinimum")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{where}: properties without type object")
        for key, value in node.items():
            problems.extend(_walk(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems.extend(_walk(value, f"{where}[{i}]"))
    return problems


def test_schemas_are_structural() -> None:
    for model in RESOURCES:
        schema = crd_manifest(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema) == []


def test_execution_crd_names_columns_and_rules() -> None:
    from stratarouter_runtime.operator.resources import Execution

    crd = crd_manifest(Execution)
    spec = crd["spec"]
    assert spec["names"]["shortNames"] == ["exec"]
    assert spec["names"]["categories"] == ["stratarouter"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    top = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert top == ["PHASE", "STEP", "RESTARTS", "POD", "AGE"]
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    recovery = props["recovery"]
    assert recovery["default"] == {
        "maxRestarts": 3,
        "backoffSeconds": 10,
        "maxBackoffSeconds": 300,
        "nonRetryableExitCodes": [],
        "keepFailedPods": 3,
        "onCorrupt": "Raise",
    }
    assert recovery["properties"]["onCorrupt"]["enum"] == ["Raise", "Previous"]
    assert recovery["properties"]["maxRestarts"] == {
        "default": 3,
        "description": "Recoveries allowed before Failed/BackoffLimitExceeded.",
        "maximum": 1000,
        "minimum": 0,
        "type": "integer",
    }
    assert any("maxBackoffSeconds" in rule["rule"] for rule in recovery["x-kubernetes-validations"])
    containers = props["template"]["properties"]["spec"]["properties"]["containers"]
    assert containers["minItems"] == 1
    assert containers["items"]["x-kubernetes-preserve-unknown-fields"] is True
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason"}


def test_snapshot_spec_is_immutable_by_cel() -> None:
    from stratarouter_runtime.operator.resources import Snapshot

    version = crd_manifest(Snapshot)["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert crd_manifest(Snapshot)["spec"]["names"]["shortNames"] == ["esnap"]


def test_write_crds_refreshes_the_chart_copy(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    written = write_crds(tmp_path / "crds", chart=chart)
    assert len(written) == 2 * len(RESOURCES)
    for path in written:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["kind"] == "CustomResourceDefinition"
    assert sorted(p.name for p in (chart / "files" / "crds").iterdir()) == sorted(
        f"{m.crd.name}.yaml" for m in RESOURCES
    )


def test_write_crds_without_chart_directory(tmp_path: Path) -> None:
    written = write_crds(tmp_path / "out", chart=tmp_path / "missing")
    assert all(p.parent == tmp_path / "out" for p in written)
