"""The attacker's token matrix: each kind of hostile token gets its documented refusal, and writes nothing.

Every row runs against the real API server, PostgreSQL and operator process. The scene is the same for
each: Execution ``job`` runs its pod ``job-a1``, which checkpointed step 1 with its own token. The row
then makes a hostile token (the steps are in its function's docstring) and sends it to every write
route (checkpoint, save, complete, fail). Each must get the row's HTTP status and ``error``, and the
stored execution (its status, step, attempt, state and history) must be as it was before. The README's
checkpoint API section lists the same refusals.

Another namespace is its own test (it needs a second operator): there a pod of an Execution of the
same name writes only its own Execution, and a pod that is not its current one is refused.

Covered elsewhere and not repeated here: a forged ``stratarouter.io/attempt`` label and an impostor
pre-created (or swapped in) under the attempt's name with a correct owner reference
(``test_api_identity.py``); garbage, ``alg: none`` and re-signed-by-nobody tokens
(``test_api_limits.py``); a pod labelled for an Execution its namespace does not have, and a pod of no
Execution (``test_api.py``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.pods import request_pod_token
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import (
    GROUP_PATH,
    MERGE_PATCH,
    Executions,
    OperatorProcess,
    operator_environment,
    wait_until,
)
from tests.operator.test_api import call, running_execution, token_for
from tests.operator.test_api_identity import impostor_pod
from tests.operator.test_api_limits import reviews_sent

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

TARGET = "job"
POD = f"{TARGET}-a1"
CACHE_SECONDS = 4
"""The token cache of the rows that wait for it to run out (the default, 300 s, is too long to wait)."""
SLACK = 1.5
"""How late (or, for an expiry, early) a refusal that is due may come: reads poll every 0.2 s."""
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/checkpoint", {"step": 2, "state": {"by": "attacker"}}),
    ("/v1/save", {"step": 3, "state": {"by": "attacker"}}),
    ("/v1/complete", {}),
    ("/v1/fail", {"error": "written by an attacker"}),
]


# -- the scene ---------------------------------------------------------------------------------------
@dataclass
class Scene:
    """What a row may use to make its token: the running Execution ``job`` and the cluster behind it."""

    cluster: LocalCluster
    kube: KubeApi
    executions: Executions
    operator: OperatorProcess
    token: str
    """The token ``job-a1`` checkpointed step 1 with: its review is cached by the API."""

    def pod(self, name: str) -> dict[str, Any]:
        body = self.executions.pod(name)
        assert body is not None, f"pod {name} missing"
        return body

    def reviewed(self, token: str) -> bool:
        """Whether the API server itself (TokenReview as the cluster admin) accepts ``token`` for us."""
        body = {"spec": {"token": token, "audiences": ["stratarouter"]}}
        status = self.kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)["status"]
        return bool(status.get("authenticated"))

    def token_request(self, spec: dict[str, Any]) -> str:
        """A token of the namespace's ``default`` service account (TokenRequest ``spec``, 10 minutes)."""
        path = f"/api/v1/namespaces/{self.executions.namespace}/serviceaccounts/default/token"
        body = {"spec": {"expirationSeconds": 600, **spec}}
        token: str = self.kube.request("POST", path, body)["status"]["token"]
        return token

    def delete_pod(self, name: str) -> None:
        """Delete a pod at once (grace 0) and wait until the API server stops accepting its tokens."""
        token = token_for(self.kube, self.executions, name)
        self.kube.request("DELETE", self.executions.pod_path(name), {"gracePeriodSeconds": 0})
        wait_until(f"pod {name} gone", lambda: self.executions.pod(name) is None)
        wait_until(f"pod {name}'s tokens voided", lambda: not self.reviewed(token))

    def replace_attempt(self, *, keep_old_pod: bool = False, kept_failed: bool = False) -> None:
        """Fail ``job-a1``: the operator records the failure, then runs attempt 2 (``job-a2``).

        With ``recovery.keepFailedPods: 0`` the operator deletes the failed pod before it creates the
        next one; ``kept_failed``: the row keeps it (terminated, for its logs). ``keep_old_pod`` takes
        the old pod out of the operator's sight during the recovery's backoff (drops its
        ``app.kubernetes.io/managed-by`` label, which anyone allowed to patch pods can do), so it
        outlives its replacement.
        """
        self.executions.fail(POD, 1)
        if keep_old_pod:
            self.executions.wait_status(
                TARGET, "the failure recorded", lambda s: (s.get("recovery") or {}).get("failedAttempt") == 1
            )
            self.kube.request(
                "PATCH",
                self.executions.pod_path(POD),
                {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}},
                content_type=MERGE_PATCH,
            )
        self.executions.wait_status(TARGET, "attempt 2 named", lambda s: s.get("podName") == f"{TARGET}-a2")
        self.executions.wait_pod_running(f"{TARGET}-a2")
        assert (self.executions.pod(POD) is not None) == (keep_old_pod or kept_failed)


def sign(cluster: LocalCluster, template: str, **claims: Any) -> str:
    """A token as the API server would issue it: ``template``'s header and claims with ``claims``
    changed, signed with the cluster's service-account key (ES256, P-256) by ``openssl``."""
    head, body, _ = template.split(".")
    # a credential id of its own, as every TokenRequest's token has
    payload = {**json.loads(unb64(body)), **claims, "jti": str(uuid.uuid4())}
    signing_input = f"{head}.{b64(json.dumps(payload).encode())}"
    der = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(cluster.pki.service_account_key)],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return f"{signing_input}.{b64(raw_signature(der))}"


def raw_signature(der: bytes) -> bytes:
    """An ECDSA signature as DER (SEQUENCE of INTEGER r, INTEGER s) -> JWS's r || s, 32 bytes each."""
    assert der[0] == 0x30, "a DER SEQUENCE"
    assert der[1] < 0x80, "short enough for a one-byte length, as every P-256 signature is"
    at, raw = 2, b""
    for _ in range(2):
        assert der[at] == 0x02, "an INTEGER"
        size = der[at + 1]
        raw += int.from_bytes(der[at + 2 : at + 2 + size], "big").to_bytes(32, "big")
        at += 2 + size
    return raw


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def refused_after(scene: Scene, token: str, since: float, within: float) -> float:
    """Seconds from ``since`` until the API first refuses ``token`` on a read (GET, writes nothing)."""
    status, answer = wait_until(
        "the token refused",
        lambda: None if (got := call(scene.operator, "GET", "/v1/state", token))[0] == 200 else got,
        timeout=within,
        every=0.2,
    )
    assert status == 401, answer
    return time.monotonic() - since


# -- the rows: how each hostile token is made -----------------------------------------------------------
def deleted_pod_new_token(scene: Scene) -> str:
    """A token of ``job-a1``, requested while it ran and never shown to the API; then the pod is
    deleted. Its TokenReview now fails."""
    token = token_for(scene.kube, scene.executions, POD)
    scene.delete_pod(POD)
    return token


def deleted_pod_cached_token(scene: Scene) -> str:
    """The token ``job-a1`` checkpointed with (its review cached); then the pod is deleted. The
    Execution waits out a long recovery backoff, so status still names ``job-a1``: only the token
    cache decides, and it is re-checked (and refused) within ``STRATA_TOKEN_CACHE_SECONDS``."""
    deleted = time.monotonic()
    scene.delete_pod(POD)
    executions = scene.executions
    executions.wait_status(TARGET, "phase Recovering", lambda s: s.get("phase") == "Recovering")
    assert executions.status(TARGET)["attempt"] == 1
    took = refused_after(scene, scene.token, deleted, within=CACHE_SECONDS + 10)
    print(f"the deleted pod's cached token was refused {took:.1f}s after the deletion")
    assert took <= CACHE_SECONDS + SLACK, f"a deleted pod's cached token was accepted for {took:.1f}s"
    return scene.token


def old_attempt_cached_token(scene: Scene) -> str:
    """The token ``job-a1`` checkpointed with (its review cached); then attempt 2 replaces it."""
    scene.replace_attempt()
    return scene.token


def old_attempt_new_token(scene: Scene) -> str:
    """A token of ``job-a1`` requested while it ran and never shown to the API; then attempt 2
    replaces it (the operator deleted the pod, which voids the token)."""
    token = token_for(scene.kube, scene.executions, POD)
    scene.replace_attempt()
    return token


def old_attempt_pod_kept(scene: Scene) -> str:
    """``job-a1`` is kept out of the operator's sight and outlives its replacement, attempt 2; a fresh
    token of it (the API server still accepts it: the pod exists)."""
    scene.replace_attempt(keep_old_pod=True)
    token = token_for(scene.kube, scene.executions, POD)
    assert scene.reviewed(token)
    return token


def old_attempt_kept_failed_pod(scene: Scene) -> str:
    """``job-a1`` failed and is kept, terminated, for its logs (``recovery.keepFailedPods``); a fresh
    token of it (the pod exists, so the API server still accepts it)."""
    scene.replace_attempt(kept_failed=True)
    token = token_for(scene.kube, scene.executions, POD)
    assert scene.reviewed(token)
    return token


def expired_token(scene: Scene) -> str:
    """``job-a1``'s token re-signed with the cluster's service-account key, its ``exp`` 30 s ago. The
    API server accepts that (it allows a minute of clock skew); the checkpoint API does not."""
    now = int(time.time())
    token = sign(scene.cluster, scene.token, iat=now - 700, nbf=now - 700, exp=now - 30)
    assert scene.reviewed(token), "the API server takes a token up to a minute past its exp"
    return token


def token_expired_while_cached(scene: Scene) -> str:
    """A token signed like ``expired_token`` that is good for 12 s more: accepted, its review cached,
    then refused from its ``exp`` on, however long the cache (300 s) would keep it."""
    exp = int(time.time()) + 12
    token = sign(scene.cluster, scene.token, iat=exp - 700, nbf=exp - 700, exp=exp)
    assert call(scene.operator, "GET", "/v1/state", token)[0] == 200
    since = time.monotonic()
    took = refused_after(scene, token, since, within=30)
    late = time.time() - exp
    print(f"the token was refused {late:+.1f}s from its exp, {took:.1f}s after its review was cached")
    assert -SLACK <= late <= SLACK, f"refused {late:+.1f}s from its exp ({took:.1f}s)"
    return token


def other_audience(scene: Scene) -> str:
    """A TokenRequest bound to ``job-a1`` for audience ``not-stratarouter``."""
    return request_pod_token(scene.kube, scene.pod(POD), audience="not-stratarouter")


def api_server_audience(scene: Scene) -> str:
    """A TokenRequest bound to ``job-a1`` for the API server's own audience (as in ``kube-api-access``)."""
    uid = scene.pod(POD)["metadata"]["uid"]
    return scene.token_request(
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": POD, "uid": uid}}
    )


def unbound_token(scene: Scene) -> str:
    """A TokenRequest for audience ``stratarouter`` of the ``default`` service account (the one
    ``job-a1`` runs as), bound to no pod: anyone allowed to create ``serviceaccounts/token`` can."""
    return scene.token_request({"audiences": ["stratarouter"]})


def audience_edited(scene: Scene) -> str:
    """The ``not-stratarouter`` token with its ``aud`` claim rewritten to ``stratarouter`` (so its
    signature no longer matches)."""
    head, body, sig = other_audience(scene).split(".")
    claims = {**json.loads(unb64(body)), "aud": ["stratarouter"]}
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def other_executions_pod_relabelled(scene: Scene) -> str:
    """The current pod of another Execution (``other``) relabels itself ``stratarouter.io/execution:
    job``; a fresh token of it (so the API reads the forged label)."""
    pod, _ = running_execution(scene.executions, "other")
    scene.kube.request(
        "PATCH",
        scene.executions.pod_path(pod),
        {"metadata": {"labels": {"stratarouter.io/execution": TARGET}}},
        content_type=MERGE_PATCH,
    )
    return token_for(scene.kube, scene.executions, pod)


def impostor_of_the_next_attempt(scene: Scene) -> str:
    """A pod pre-created as ``job-a2`` with the operator's labels and an owner reference to ``job``."""
    execution = scene.executions.get(TARGET)
    assert execution is not None
    return request_pod_token(scene.kube, impostor_pod(scene.executions, execution, f"{TARGET}-a2"))


@dataclass(frozen=True)
class Row:
    make: Callable[[Scene], str]
    status: int
    error: str | tuple[str, ...]
    """The ``error`` of every answer (of a tuple: any one, the same in every answer)."""
    says: str
    """Words every answer's ``message`` holds."""
    reviews: int | None = None
    """TokenReviews the four refused writes may cost (None: not checked)."""
    env: dict[str, str] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=lambda: {"backoffSeconds": 0, "keepFailedPods": 0})


LONG_BACKOFF = {"backoffSeconds": 3600, "maxBackoffSeconds": 3600, "keepFailedPods": 0}
"""Status keeps naming a deleted pod while the Execution waits to recover."""
BRIEF_BACKOFF = {"backoffSeconds": 5, "keepFailedPods": 0}
"""Time to take the failed pod out of the operator's sight before it clears the old pods."""
SHORT_CACHE = {"STRATA_TOKEN_CACHE_SECONDS": str(CACHE_SECONDS)}
REVIEW_FAILED = "rejected by the API server"
NOT_OURS = "not issued for audience 'stratarouter'"
REPLACED = "replaced by attempt 2"
ROWS = {
    "deleted pod, new token": Row(
        deleted_pod_new_token, 401, "InvalidToken", REVIEW_FAILED, reviews=1, recovery=LONG_BACKOFF
    ),
    # PodGone while the API server's own cache of successful reviews (10 s) still passes the token
    "deleted pod, cached token": Row(
        deleted_pod_cached_token, 401, ("PodGone", "InvalidToken"), "", env=SHORT_CACHE, recovery=LONG_BACKOFF
    ),
    "old attempt, cached token": Row(old_attempt_cached_token, 409, "StaleAttempt", REPLACED, reviews=0),
    "old attempt, new token": Row(old_attempt_new_token, 401, "InvalidToken", REVIEW_FAILED, reviews=1),
    "old attempt, its pod kept": Row(
        old_attempt_pod_kept, 409, "StaleAttempt", REPLACED, reviews=1, recovery=BRIEF_BACKOFF
    ),
    "old attempt, kept after it failed": Row(
        old_attempt_kept_failed_pod,
        409,
        "StaleAttempt",
        REPLACED,
        reviews=1,
        recovery={"backoffSeconds": 0, "keepFailedPods": 1},
    ),
    "expired": Row(expired_token, 401, "InvalidToken", "expired", reviews=0),
    "expired while cached": Row(token_expired_while_cached, 401, "InvalidToken", "expired", reviews=0),
    "wrong audience": Row(other_audience, 401, "InvalidToken", NOT_OURS, reviews=0),
    "API server's audience": Row(api_server_audience, 401, "InvalidToken", NOT_OURS, reviews=0),
    "audience edited": Row(audience_edited, 401, "InvalidToken", REVIEW_FAILED, reviews=1),
    "bound to no pod": Row(unbound_token, 403, "NotPodBound", "not bound to a pod", reviews=1),
    "other Execution's pod relabelled": Row(
        other_executions_pod_relabelled, 403, "NotCurrentPod", "/other (uid", reviews=1
    ),
    "impostor of the next attempt": Row(
        impostor_of_the_next_attempt, 403, "NotCurrentPod", "is not the current pod", reviews=1
    ),
}


# -- the test ---------------------------------------------------------------------------------------
async def stored(pg_dsn: str, execution_id: str) -> dict[str, Any]:
    """All the store holds of an execution that a write could change."""
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        record = await store.get_execution(execution_id)
        assert record is not None
        history = await store.get_history(execution_id)
        return {
            "record": record.model_dump(exclude={"updated_at"}),
            "state": await store.load(execution_id),
            "history": [(cp.step, cp.attempt, cp.state_data) for cp in history],
        }


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_a_hostile_token_is_refused_and_writes_nothing(
    row: Row,
    operator_process: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
    cluster: LocalCluster,
    pg_dsn: str,
) -> None:
    operator_process.env.update(row.env)
    operator_process.start()
    running_execution(executions, TARGET, recovery=row.recovery)
    own = token_for(kube, executions, POD)
    assert call(operator_process, "POST", "/v1/checkpoint", own, {"step": 1, "state": {"n": 1}})[0] == 200
    scene = Scene(cluster, kube, executions, operator_process, own)

    token = row.make(scene)
    execution_id = f"{executions.namespace}/{TARGET}"
    before = await stored(pg_dsn, execution_id)
    assert before["history"][0][:2] == (1, 1)
    reviews = reviews_sent(operator_process)
    answers = {path: call(operator_process, "POST", path, token, body) for path, body in WRITES}
    errors = {(status, answer.get("error")) for status, answer in answers.values()}
    assert len(errors) == 1, answers
    status, error = errors.pop()
    assert status == row.status, answers
    assert error in (row.error if isinstance(row.error, tuple) else (row.error,)), answers
    assert all(row.says in answer["message"] for _, answer in answers.values()), answers
    if row.reviews is not None:
        assert reviews_sent(operator_process) - reviews == row.reviews
    assert await stored(pg_dsn, execution_id) == before


@pytest.fixture
def other_namespace(kube: KubeApi, cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """Namespace B, beside the test's namespace A."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    try:
        cluster.kubectl("wait", "--for=create", "--timeout=30s", "-n", name, "serviceaccount/default")
        yield name
    finally:
        path = f"{GROUP_PATH}/namespaces/{name}/executions"
        for item in kube.get(path).get("items", []):  # B's operator is gone: drop its finalizers
            patch = {"metadata": {"finalizers": None}}
            kube.request("PATCH", f"{path}/{item['metadata']['name']}", patch, content_type=MERGE_PATCH)
        kube.request("DELETE", f"/api/v1/namespaces/{name}")


async def test_a_pod_of_another_namespace_writes_only_its_own_execution(
    operator: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
    cluster: LocalCluster,
    pg_dsn: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    """Namespaces A and B each run an Execution ``job`` (B's by a second operator, on the same store).
    B's current pod, calling A's operator, writes B's ``job`` and never A's: the Execution comes from
    the token's pod. A pod in B with B's ``job`` labels that is not its current pod is refused."""
    env_b = operator_environment(cluster.kubeconfig, pg_dsn)
    operator_b = OperatorProcess(env_b, other_namespace, tmp_path / "operator-b.log")
    try:
        operator_b.start()
        in_b = Executions(kube, other_namespace)
        running_execution(executions, TARGET)
        running_execution(in_b, TARGET)
        own = token_for(kube, executions, POD)
        assert call(operator, "POST", "/v1/checkpoint", own, {"step": 1, "state": {"n": 1}})[0] == 200
        id_a, id_b = f"{executions.namespace}/{TARGET}", f"{other_namespace}/{TARGET}"
        before = await stored(pg_dsn, id_a)

        token_b = token_for(kube, in_b, POD)
        status, answer = call(operator, "POST", "/v1/checkpoint", token_b, {"step": 7, "state": {"ns": "b"}})
        assert (status, answer.get("executionId"), answer.get("attempt")) == (200, id_b, 1), answer
        assert (await stored(pg_dsn, id_b))["history"] == [(7, 1, {"ns": "b"})]

        impostor = kube.request(
            "POST",
            f"/api/v1/namespaces/{other_namespace}/pods",
            {
                "metadata": {
                    "name": "job-impostor",
                    "labels": {"stratarouter.io/execution": TARGET, "stratarouter.io/attempt": "1"},
                },
                "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
            },
        )
        token = request_pod_token(kube, impostor)
        for path, body in WRITES:
            status, answer = call(operator, "POST", path, token, body)
            assert (status, answer.get("error")) == (403, "NotCurrentPod"), (path, answer)
        assert await stored(pg_dsn, id_a) == before
        assert (await stored(pg_dsn, id_b))["history"] == [(7, 1, {"ns": "b"})]
    finally:
        operator_b.stop()
        print(f"--- operator B log ---\n{operator_b.logs()[-4000:]}")
