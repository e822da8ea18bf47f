"""The pod contract: what the operator puts into a workload container and the SDK reads back.

The operator writes it into every container of an attempt's pod (``operator/pods.py``); inside the
pod ``StateManager.from_env()`` and the http backend read it. Both sides use this module, so each
variable's name and format, the token's audience and its path are defined here once. It lives in the
SDK because the SDK must read it without the operator's dependencies installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from stratarouter_runtime.state.errors import InvalidArgumentError


class PodEnv(StrEnum):
    """The variables of the contract, in the order the operator writes them."""

    EXECUTION_ID = "STRATA_EXECUTION_ID"
    ATTEMPT = "STRATA_ATTEMPT"
    RESUME_STEP = "STRATA_RESUME_STEP"
    API_URL = "STRATA_API_URL"
    TOKEN_FILE = "STRATA_TOKEN_FILE"
    CHECKPOINT_INTERVAL = "STRATA_CHECKPOINT_INTERVAL"
    ENABLE_COMPRESSION = "STRATA_ENABLE_COMPRESSION"
    ON_CORRUPT = "STRATA_ON_CORRUPT"


#: every variable name of the contract: the operator replaces a template's own values of these
CONTRACT_VARIABLES = frozenset(v.value for v in PodEnv)

#: The audience of the projected service-account token; the checkpoint API accepts no other.
TOKEN_AUDIENCE = "stratarouter"
#: Where the pod's projected token is mounted (the kubelet rotates the file in place).
TOKEN_DIR = "/var/run/secrets/stratarouter"
TOKEN_FILE = f"{TOKEN_DIR}/token"


@dataclass(frozen=True)
class RunIdentity:
    """Which run and attempt this process is; all ``None`` outside an operator's pod."""

    execution_id: str | None = None
    attempt: int | None = None
    #: the step the previous attempt's newest durable write reached; ``None`` on a first run
    resume_step: int | None = None


def contract_env(
    *,
    execution_id: str,
    attempt: int,
    resume_step: int | None,
    api_url: str,
    checkpoint_interval: int | None = None,
    enable_compression: bool | None = None,
    on_corrupt: str | None = None,
) -> list[dict[str, str]]:
    """The contract as a container's ``env`` list, in a fixed order; unset tuning stays out."""
    values: dict[PodEnv, str | None] = {
        PodEnv.EXECUTION_ID: execution_id,
        PodEnv.ATTEMPT: str(attempt),
        PodEnv.RESUME_STEP: "" if resume_step is None else str(resume_step),
        PodEnv.API_URL: api_url,
        PodEnv.TOKEN_FILE: TOKEN_FILE,
        PodEnv.CHECKPOINT_INTERVAL: None if checkpoint_interval is None else str(checkpoint_interval),
        PodEnv.ENABLE_COMPRESSION: None if enable_compression is None else str(enable_compression).lower(),
        PodEnv.ON_CORRUPT: on_corrupt,
    }
    return [{"name": name.value, "value": value} for name, value in values.items() if value is not None]


def _whole_number(env: Mapping[str, str], name: PodEnv, minimum: int) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value}")
    return value


def run_identity(env: Mapping[str, str]) -> RunIdentity:
    """Read the run's identity; empty values mean unset, malformed ones are refused by name."""
    return RunIdentity(
        execution_id=env.get(PodEnv.EXECUTION_ID) or None,
        attempt=_whole_number(env, PodEnv.ATTEMPT, 1),
        resume_step=_whole_number(env, PodEnv.RESUME_STEP, 0),
    )


def token_file(env: Mapping[str, str]) -> str:
    """The token's path: the contract's variable, else where the operator mounts it."""
    return env.get(PodEnv.TOKEN_FILE) or TOKEN_FILE
