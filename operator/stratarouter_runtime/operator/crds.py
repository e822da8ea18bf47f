"""Generate the CRD YAML from the pydantic models (``stratarouter crds``, ``make crds``).

``model_json_schema()`` speaks JSON Schema 2020-12; the API server wants a structural OpenAPI v3 schema:
``$defs`` inlined, ``nullable`` instead of ``anyOf [..., null]``, no titles, ``enum`` instead of ``const``,
and ``x-kubernetes-preserve-unknown-fields`` wherever the model passes unknown keys through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stratarouter_runtime.operator.resources import Execution, Snapshot
from stratarouter_runtime.operator.resources.base import GROUP, VERSION, Resource

RESOURCES: tuple[type[Resource], ...] = (Execution, Snapshot)
_DROP = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline ``$ref``s and translate one schema node (recursively) to the API server's dialect."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [opt for opt in node["anyOf"] if opt != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1 and len(options) < len(node["anyOf"]):
            if rest.get("default", 0) is None:
                del rest["default"]
            return _resolve({**options[0], **rest, "nullable": True}, defs)
        raise ValueError(f"cannot express anyOf {node['anyOf']!r} in a structural schema")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "description" and isinstance(value, str):
            out[key] = value.replace("``", "")
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
            continue
        if key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _resolve(value, defs)
            continue
        out[key] = _resolve(value, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type[Resource]) -> dict[str, Any]:
    """The structural ``openAPIV3Schema`` of one resource model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    body = _resolve({k: v for k, v in raw.items() if k != "$defs"}, defs)
    properties = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **body["properties"],
    }
    properties["status"].pop("nullable", None)
    schema: dict[str, Any] = {"type": "object", "required": ["spec"], "properties": properties}
    if model.__doc__:
        schema["description"] = model.__doc__.strip().splitlines()[0]
    limit = model.crd.max_name_length
    if limit is not None:
        schema["x-kubernetes-validations"] = [
            {
                "rule": f"size(self.metadata.name) <= {limit}",
                "message": f"metadata.name must be at most {limit} characters (it is a label value of "
                "the resource's pods)",
            }
        ]
    return schema


def crd_manifest(model: type[Resource]) -> dict[str, Any]:
    """The full CustomResourceDefinition of one resource model."""
    info = model.crd
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.name,
            "labels": {"app.kubernetes.io/part-of": "stratarouter"},
        },
        "spec": {
            "group": GROUP,
            "scope": info.scope,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in info.printer_columns],
                    "schema": {"openAPIV3Schema": openapi_schema(model)},
                }
            ],
        },
    }


def render(model: type[Resource]) -> str:
    """YAML text of one CRD, with a header saying it is generated."""
    header = "# Generated from the pydantic models by `stratarouter crds` (make crds). Do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(model), sort_keys=False, width=110)


def write_crds(output: str | Path, chart: str | Path | None = None) -> list[Path]:
    """Write ``<output>/<plural>.<group>.yaml`` for each kind, and the chart's copy when the chart exists."""
    targets = [Path(output)]
    if chart is not None and Path(chart).is_dir():
        targets.append(Path(chart) / "files" / "crds")
    written: list[Path] = []
    for directory in targets:
        directory.mkdir(parents=True, exist_ok=True)
        for model in RESOURCES:
            path = directory / f"{model.crd.name}.yaml"
            path.write_text(render(model), encoding="utf-8")
            written.append(path)
    return written
