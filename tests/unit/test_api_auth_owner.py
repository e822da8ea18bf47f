"""Why a pod that is not the current one is refused, when its owner reference names another Execution
than its label: an earlier Execution of the same name, or another Execution whose pod was relabelled
(``tests/operator/test_api_token_matrix.py`` does that to a real pod). The answer is 403
``NotCurrentPod`` either way; only the message differs, and it must not call the other Execution an
earlier one of this name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from stratarouter_runtime.operator.api.auth import (
    AuthError,
    PodClaims,
    PodIdentity,
    foreign_owner,
    owner_execution,
)
from stratarouter_runtime.operator.api.current_pods import PodNames
from tests.unit.test_api_auth_current import NS, Scripted, execution, jwt

RELABELLED = PodClaims(
    ident=PodIdentity(namespace=NS, pod_name="eval-a1", pod_uid="q1", service_account="default"),
    labels={"stratarouter.io/execution": "train"},
    owner_uid="e7",
    owner_name="eval",
)


def test_the_owner_reference_gives_the_executions_name_and_uid() -> None:
    meta = {
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r"},
            {"apiVersion": "stratarouter.io/v1alpha1", "kind": "Execution", "name": "eval", "uid": "e7"},
        ]
    }
    assert owner_execution(meta) == ("eval", "e7")
    assert owner_execution({}) == ("", "")


@pytest.mark.parametrize(
    ("owner_name", "says"),
    [
        ("train", "belongs to an earlier Execution team-a/train (uid e7, now e1)"),
        ("", "belongs to an earlier Execution team-a/train (uid e7, now e1)"),  # a name-less reference
        ("eval", "belongs to Execution team-a/eval (uid e7), not to team-a/train (uid e1)"),
    ],
)
def test_the_message_names_the_owner(owner_name: str, says: str) -> None:
    claims = PodClaims(
        ident=RELABELLED.ident, labels=RELABELLED.labels, owner_uid="e7", owner_name=owner_name
    )
    err = foreign_owner(claims.ident, "train", claims, "e1")
    assert (err.status, err.reason) == (403, "NotCurrentPod")
    assert says in err.message


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    await api.close()


async def test_another_executions_pod_relabelled_is_refused_as_that_executions(
    api: client.ApiClient,
) -> None:
    names = PodNames()
    names.replace(NS, [execution("train-a1")])
    auth = Scripted(api, names, [0.0])
    auth.claims["eval"] = RELABELLED
    with pytest.raises(AuthError) as err:
        await auth.authenticate(f"Bearer {jwt('eval')}")
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")
    assert "belongs to Execution team-a/eval" in err.value.message
    assert "earlier" not in err.value.message
