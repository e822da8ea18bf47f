"""Forks without a cluster: spec.startFrom's validation, its match with status.startedFrom, and the
manifest ``kubectl strata fork`` creates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stratarouter_runtime.operator.forks import matches
from stratarouter_runtime.operator.resources.execution import StartedFrom, StartFrom
from stratarouter_runtime.plugin.exits import USAGE, PluginError
from stratarouter_runtime.plugin.fork import manifest


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({}, "exactly one of snapshot and execution"),
        ({"snapshot": "s", "execution": "e"}, "exactly one of snapshot and execution"),
        ({"snapshot": "s", "step": 1}, "startFrom.step needs startFrom.execution"),
        ({"execution": "e", "step": -1}, "greater than or equal to 0"),
    ],
)
def test_start_from_takes_one_source(spec: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        StartFrom.model_validate(spec)


def test_start_from_matches_the_recorded_source() -> None:
    at_3 = StartedFrom(execution="src", step=3)
    assert matches(StartFrom(execution="src", step=3), at_3)
    assert matches(StartFrom(execution="src"), at_3)  # the newest, resolved to 3 at the start
    assert not matches(StartFrom(execution="src", step=4), at_3)
    assert not matches(StartFrom(execution="other", step=3), at_3)
    assert not matches(StartFrom(snapshot="s"), at_3)
    assert matches(StartFrom(snapshot="s"), StartedFrom(execution="src", step=3, snapshot="s"))
    assert not matches(None, at_3)
    assert not matches(StartFrom(execution="src"), None)
    assert matches(None, None)


CONTAINERS = [{"name": "w", "image": "a:1"}, {"name": "s", "image": "b:1"}]
SOURCE: dict[str, Any] = {
    "apiVersion": "stratarouter.io/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "src", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
    "spec": {"template": {"spec": {"containers": CONTAINERS}}, "suspend": True},
    "status": {"phase": "Running"},
}


def test_the_fork_manifest_copies_the_template_and_sets_start_from() -> None:
    body = manifest(SOURCE, "copy", 3, None, "a:2")
    assert body["metadata"] == {"name": "copy", "namespace": "ns"}
    assert body["spec"]["startFrom"] == {"execution": "src", "step": 3}
    images = [c["image"] for c in body["spec"]["template"]["spec"]["containers"]]
    assert images == ["a:2", "b:1"]
    assert SOURCE["spec"]["template"]["spec"]["containers"][0]["image"] == "a:1"  # a copy
    assert "status" not in body
    assert "suspend" not in body["spec"]
    assert manifest(SOURCE, "copy", None, "snap", None)["spec"]["startFrom"] == {"snapshot": "snap"}
    assert manifest(SOURCE, "copy", None, None, None)["spec"]["startFrom"] == {"execution": "src"}
    with pytest.raises(PluginError) as refused:
        manifest({**SOURCE, "spec": {"template": {"spec": {}}}}, "copy", None, None, "x")
    assert refused.value.code == USAGE
