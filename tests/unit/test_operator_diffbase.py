"""The slim diff-base storage builds exactly the essence kopf's own storage builds."""

from __future__ import annotations

import copy
from typing import Any, cast

import kopf

from stratarouter_runtime.operator.diffbase import SlimDiffBaseStorage, slim_body

KEY = "last-handled-configuration"


def execution() -> dict[str, Any]:
    return {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {
            "name": "e1",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"team": "a"},
            "annotations": {
                "note": "kept",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "stratarouter.io/last-handled-configuration": '{"spec":{"suspend":false}}\n',
            },
            "finalizers": ["stratarouter.io/finalizer"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}, "suspend": True},
        "status": {"phase": "Running", "lastCheckpoint": {"step": 7}, "conditions": [{"type": "Running"}]},
    }


def wrap(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def test_same_essence_as_kopf() -> None:
    body = execution()
    ours = SlimDiffBaseStorage(prefix="stratarouter.io", key=KEY)
    theirs = kopf.AnnotationsDiffBaseStorage(prefix="stratarouter.io", key=KEY)
    for extra in ([], [("spec",)], ["spec.suspend"]):
        assert ours.build(body=wrap(body), extra_fields=extra) == theirs.build(
            body=wrap(body), extra_fields=extra
        )


def test_status_field_handlers_fall_back_to_the_full_body() -> None:
    body = execution()
    ours = SlimDiffBaseStorage(prefix="stratarouter.io", key=KEY)
    essence = ours.build(body=wrap(body), extra_fields=["status.phase"])
    assert essence["status"] == {"phase": "Running"}


def test_slim_body_leaves_the_object_alone() -> None:
    body = execution()
    before = copy.deepcopy(body)
    slim = slim_body(body)
    assert "status" not in slim
    assert "managedFields" not in slim["metadata"]
    assert body == before
