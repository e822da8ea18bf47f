"""The discovery documents of ``view.stratarouter.io``: what ``kubectl`` and the aggregator read first.

Served to any caller the front proxy vouches for (as ``system:discovery`` grants everyone on a cluster):
they say which paths exist, nothing about any Execution.
"""

from __future__ import annotations

from typing import Any

from stratarouter_runtime.operator.view.paths import GROUP, GROUP_VERSION, SUBRESOURCES, VERSION

KINDS = {
    "history": "ExecutionHistory",
    "state": "ExecutionState",
    "diff": "ExecutionDiff",
    "audit": "ExecutionAudit",
    "status": "ExecutionStoreStatus",
}


def group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]}


def resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"executions/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": KINDS[sub],
                "verbs": ["get"],
            }
            for sub in SUBRESOURCES
        ],
    }
