"""Whether a user may read an Execution: a SubjectAccessReview for ``get`` on ``executions.stratarouter.io``.

The delegated-authorization pattern of aggregated API servers: the API server's authorizer (RBAC, or
whatever the cluster runs) decides, with exactly the rules that decide ``kubectl get execution NAME``.
Answers are cached for ``cache_seconds`` per (user, namespace, name), allowed and denied alike, as the
generic API server does (10 s by default), so a page of requests costs one review.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stratarouter_runtime.operator.api.auth import TTLCache
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP
from stratarouter_runtime.operator.view.frontproxy import User

VERB = "get"
RESOURCE = f"{EXECUTIONS}.{GROUP}"


class Forbidden(Exception):
    """403: the user may not ``get`` the Execution; the message names the missing permission."""

    def __init__(self, user: User, namespace: str, name: str, why: str) -> None:
        self.namespace = namespace
        self.name = name
        message = (
            f'{RESOURCE} "{name}" is forbidden: User "{user.name}" cannot {VERB} resource "{EXECUTIONS}" '
            f'in API group "{GROUP}" in the namespace "{namespace}" (the view API needs {VERB} on '
            f"{RESOURCE})"
        )
        super().__init__(f"{message}: {why}" if why else message)


class ReviewUnavailable(Exception):
    """503: the SubjectAccessReview could not be made."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


class Authorizer:
    """SubjectAccessReviews through the operator's client, cached briefly."""

    def __init__(self, api: client.ApiClient, *, cache_seconds: float = 10.0, concurrency: int = 8) -> None:
        self._authz = client.AuthorizationV1Api(api)
        self._cache: TTLCache[tuple[Any, ...], Decision] = TTLCache()
        self._cache_seconds = cache_seconds
        self._slots = asyncio.Semaphore(concurrency)

    async def check(self, user: User, namespace: str, name: str) -> None:
        """Return when ``user`` may ``get`` ``namespace/name``; :class:`Forbidden` otherwise."""
        key = (user.key(), namespace, name)
        decision = self._cache.get(key)
        if decision is None:
            decision = await self._review(user, namespace, name)
            self._cache.put(key, decision, self._cache_seconds)
        if not decision.allowed:
            raise Forbidden(user, namespace, name, decision.reason)

    async def _review(self, user: User, namespace: str, name: str) -> Decision:
        body = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user.name,
                groups=list(user.groups) or None,
                extra={k: list(v) for k, v in user.extra.items()} or None,
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb=VERB, group=GROUP, resource=EXECUTIONS, name=name
                ),
            )
        )
        async with self._slots:
            try:
                review = await self._authz.create_subject_access_review(body)
            except ApiException as exc:
                raise ReviewUnavailable(f"SubjectAccessReview failed: {exc.status} {exc.reason}") from exc
            except (TimeoutError, OSError) as exc:
                raise ReviewUnavailable(
                    f"SubjectAccessReview failed, API server unreachable: {exc!r}"
                ) from exc
        status = review.status
        allowed = bool(status and status.allowed and not status.denied)
        reason = (status.reason or status.evaluation_error or "") if status else ""
        return Decision(allowed=allowed, reason=reason)
