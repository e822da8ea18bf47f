"""The pod of one attempt, built from ``spec.template`` plus the pod contract (pure, no I/O).

Every workload container gets the contract's variables (``state/pod_contract.py``: the run, the
attempt, the step to resume after, the checkpoint API and the token's path), and the pod gets a
projected service-account token with the contract's audience: that is all
``StateManager.from_env()`` needs inside the pod.
"""

from __future__ import annotations

import copy
from typing import Any

from stratarouter_runtime.operator.resources.base import API_VERSION, GROUP, KIND_EXECUTION
from stratarouter_runtime.state.pod_contract import (
    CONTRACT_VARIABLES,
    TOKEN_AUDIENCE,
    TOKEN_DIR,
    contract_env,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "stratarouter"
EXECUTION_LABEL = f"{GROUP}/execution"
ATTEMPT_LABEL = f"{GROUP}/attempt"
POD_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

TOKEN_VOLUME = "stratarouter-token"
#: The projected token's default life; the kubelet replaces it at 80% of it. Kubernetes' minimum is 600.
TOKEN_EXPIRATION_SECONDS = 3600
MIN_TOKEN_EXPIRATION_SECONDS = 600

MAX_POD_NAME = 253


class InvalidTemplateError(ValueError):
    """``spec.template`` cannot become a pod; the message says what to change."""


def pod_name(execution: str, attempt: int) -> str:
    """Deterministic name of an attempt's pod: a re-created one gets 409, never a duplicate."""
    return f"{execution}-a{attempt}"


def execution_id(namespace: str, name: str) -> str:
    """The store's id of an Execution's current run (``STRATA_EXECUTION_ID``; snapshots are kept under it)."""
    return f"{namespace}/{name}"


def archived_execution_id(namespace: str, name: str, run: str) -> str:
    """Where a run of an earlier Execution of this name is kept once it is over (``run``: that
    Execution's uid), so a new Execution of the name starts empty and the old history stays readable."""
    return f"{execution_id(namespace, name)}@{run}"


def pod_selector(execution: str) -> str:
    """Label selector of every pod of one Execution."""
    return f"{POD_SELECTOR},{EXECUTION_LABEL}={execution}"


def build_pod(
    *,
    namespace: str,
    name: str,
    uid: str,
    template: dict[str, Any],
    attempt: int,
    resume_step: int | None,
    api_url: str,
    checkpoint_interval: int | None = None,
    compression: str | None = None,
    on_corrupt: str | None = None,
    token_seconds: int = TOKEN_EXPIRATION_SECONDS,
) -> dict[str, Any]:
    """The pod manifest of ``attempt``; ``template`` is the raw ``spec.template`` (unknown fields kept).
    ``on_corrupt`` is ``spec.recovery.onCorrupt`` (Raise, Previous); the SDK reads it lower-case."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    pname = pod_name(name, attempt)
    if len(pname) > MAX_POD_NAME:
        raise InvalidTemplateError(f"execution name too long: pod name {pname!r} exceeds {MAX_POD_NAME}")
    spec = _pod_spec(template.get("spec") or {})
    spec["volumes"] = [*_user_volumes(spec), _token_volume(token_seconds)]
    env = contract_env(
        execution_id=execution_id(namespace, name),
        attempt=attempt,
        resume_step=resume_step,
        api_url=api_url,
        checkpoint_interval=checkpoint_interval,
        enable_compression=None if compression is None else compression == "zstd",
        on_corrupt=None if on_corrupt is None else on_corrupt.lower(),
    )
    spec["containers"] = [_with_contract(c, index, env) for index, c in enumerate(spec["containers"])]
    tmeta: dict[str, Any] = template.get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": pname,
        "namespace": namespace,
        "labels": {
            **(tmeta.get("labels") or {}),
            MANAGED_BY_LABEL: MANAGED_BY,
            EXECUTION_LABEL: name,
            ATTEMPT_LABEL: str(attempt),
        },
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND_EXECUTION,
                "name": name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _pod_spec(template_spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template's pod spec, checked for what an attempt's pod must be."""
    spec = copy.deepcopy(template_spec)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InvalidTemplateError("spec.template.spec.containers must list at least one container")
    restart_policy = spec.get("restartPolicy", "Never")
    if restart_policy != "Never":
        raise InvalidTemplateError(
            f"spec.template.spec.restartPolicy must be Never (got {restart_policy!r}): "
            "the operator restarts failed pods itself, from the last checkpoint"
        )
    spec["restartPolicy"] = "Never"
    return spec


def _user_volumes(spec: dict[str, Any]) -> list[Any]:
    volumes = list(spec.get("volumes") or [])
    if any(v.get("name") == TOKEN_VOLUME for v in volumes if isinstance(v, dict)):
        raise InvalidTemplateError(f"volume name {TOKEN_VOLUME!r} is reserved for the stratarouter token")
    return volumes


def _token_volume(token_seconds: int) -> dict[str, Any]:
    """The projected service-account token the checkpoint API accepts (its audience, its lifetime)."""
    token = {"audience": TOKEN_AUDIENCE, "expirationSeconds": token_seconds, "path": "token"}
    return {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}


def _with_contract(container: Any, index: int, env: list[dict[str, str]]) -> dict[str, Any]:
    """The container with the contract's variables (replacing the template's own values of them)
    and the token mounted read-only."""
    if not isinstance(container, dict) or not container.get("name"):
        raise InvalidTemplateError(f"spec.template.spec.containers[{index}] needs a name")
    user_env = [e for e in container.get("env") or [] if e.get("name") not in CONTRACT_VARIABLES]
    mounts = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") != TOKEN_DIR]
    return {
        **container,
        "env": user_env + copy.deepcopy(env),
        "volumeMounts": [*mounts, {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}],
    }
