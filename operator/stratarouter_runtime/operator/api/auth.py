"""Who is calling the checkpoint API: a pod's projected token -> the Execution it may write.

A pod proves itself with its projected service-account token (audience ``stratarouter``). The API
server checks the token for us (TokenReview) and names the pod it is bound to, by name and uid. The
pod's ``stratarouter.io/execution`` label says which Execution to look at, and that Execution's status
decides the rest: the caller is accepted only when its pod uid is ``status.podUID`` (the uid of the pod
the operator created for the current attempt), and it writes as ``status.attempt``. Nothing in a
request body, and nothing anyone allowed to patch or create pods could set (labels, owner references,
a pod pre-created with the attempt's name), is trusted for any of this: a label naming another
Execution only gets the caller refused by that Execution's status, and the ``stratarouter.io/attempt``
label is not read at all.

Two parts with different lifetimes:

* What a token proves (the TokenReview's pod, that pod's labels and owner) is cached per token (keyed
  by a hash of it, never the token) for ``cache_seconds`` (default 5 min), never past the token's own
  expiry, and re-checked in the background once past a random 60-90 % of that, while requests keep
  being answered from the cache. The re-checks of pods that started together spread out instead of
  hitting the API server in one burst.
* Whether that pod is its Execution's *current* pod is checked on every request, against a watched
  view of the Executions (:mod:`.current_pods`): no API request at all when it is. When the view
  says otherwise (or does not know the Execution), the Execution is read from the API server before
  the caller is refused, so a view a few milliseconds behind never refuses a new pod.

So a replaced pod's token is refused (409 ``StaleAttempt`` when its name, ``<execution>-a<n>``, is that
of an older attempt than ``status.attempt``; else 403 ``NotCurrentPod``) as soon as the watch shows the
new pod, however long its review stays cached; its writes were already refused by the
store's attempt fencing (409) from the moment the operator bumped the attempt.

A caller without a valid token must cost next to nothing, or anyone who can reach the API could keep
the API server busy with TokenReviews. So a token is screened before it is reviewed
(:func:`screen_token`): one that is not a JWT, not for audience ``stratarouter`` or already expired
is refused (401 ``InvalidToken``) on its unverified claims alone; only the review can *accept* a
token. A refused review is remembered for a few seconds, and at most ``review_concurrency`` reviews
run at once (others wait, then get 503). The review's answer must name our audience in
``status.audiences``: an answer without it says the token is good for some other audience (an empty
list: the API server's own), not for us.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
import orjson
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stratarouter_runtime.operator.api.current_pods import PodNames, current_of
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.metrics import TOKEN_REVIEWS_TOTAL
from stratarouter_runtime.operator.pods import EXECUTION_LABEL, execution_id
from stratarouter_runtime.operator.resources.base import GROUP, KIND_EXECUTION
from stratarouter_runtime.state.pod_contract import TOKEN_AUDIENCE

log = logging.getLogger(__name__)

CLAIM_POD_NAME = "authentication.kubernetes.io/pod-name"
CLAIM_POD_UID = "authentication.kubernetes.io/pod-uid"
SA_PREFIX = "system:serviceaccount:"
REFRESH_AHEAD = (0.6, 0.9)
"""A cached token is re-checked in the background after this fraction (random in the range) of its TTL."""
EXPIRY_MARGIN_SECONDS = 5.0
"""A token's review is trusted until this long before the token's own ``exp``."""
MAX_TOKEN_CHARS = 8192
"""Longer than any projected service-account token (and than the header line aiohttp accepts)."""
REVIEW_WAIT_SECONDS = 5.0
"""How long a request waits for one of the ``review_concurrency`` TokenReview slots before a 503."""
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class AuthError(Exception):
    """A refused caller: ``status`` is the HTTP code (401, 403 or 503), ``reason`` a stable word."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PodIdentity:
    """The pod a token is bound to, as the API server vouches for it."""

    namespace: str
    pod_name: str
    pod_uid: str
    service_account: str


@dataclass(frozen=True)
class Caller:
    """An authorised caller: the current pod of ``namespace/execution`` running ``attempt``."""

    namespace: str
    pod_name: str
    execution: str
    attempt: int

    @property
    def execution_id(self) -> str:
        return execution_id(self.namespace, self.execution)


@dataclass(frozen=True)
class PodClaims:
    """What a token proves for its whole life: the pod it is bound to, that pod's labels and owner uid."""

    ident: PodIdentity
    labels: Mapping[str, str]
    owner_uid: str
    """uid of the Execution named in the pod's owner references ('' when it has none)."""
    owner_name: str = ""
    """Name of that Execution ('' when none, or unknown)."""


def _segment(part: str) -> dict[str, Any] | None:
    """A JWT segment's JSON object, unverified; None when it is not base64url of a JSON object."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (Unix time) of a JWT, read without checking it (the TokenReview did); None if absent.

    Only used to stop trusting a cached review when the token itself expires.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    claims = _segment(parts[1])
    return None if claims is None else _number(claims.get("exp"))


def screen_token(token: str, audience: str, now: float) -> None:
    """Refuse (401 ``InvalidToken``) a token that cannot pass its TokenReview, without asking for one.

    Reads the unverified header and claims only to decide whether a review is worth asking for: a JWT
    (three base64url parts, a header naming a signing ``alg``) whose ``aud`` holds ``audience`` and
    whose ``exp``, if any, is still ahead. Passing says nothing about the token; the review decides.
    """
    why = _screen(token, audience, now)
    if why is not None:
        raise AuthError(401, "InvalidToken", f"token refused without a review: {why}")


def _screen(token: str, audience: str, now: float) -> str | None:
    if len(token) > MAX_TOKEN_CHARS or not _JWT.fullmatch(token):
        return "not a JWT (three base64url parts)"
    head, body, _ = token.split(".")
    header = _segment(head)
    alg = header.get("alg") if header is not None else None
    if not isinstance(alg, str) or alg.lower() in ("", "none"):
        return "its header names no signing algorithm"
    claims = _segment(body)
    if claims is None:
        return "its claims are not a JSON object"
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        return f"not issued for audience {audience!r} (aud: {aud!r})"
    exp = claims.get("exp")
    expiry = _number(exp)
    if exp is not None and (expiry is None or expiry <= now):
        return f"expired, or no time (exp {exp!r})"
    return None


def owner_execution(meta: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, uid)`` of the Execution a pod's ``metadata.ownerReferences`` names (``('', '')`` if none)."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND_EXECUTION and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(ref.get("name") or ""), str(ref.get("uid") or "")
    return "", ""


def owner_execution_uid(meta: Mapping[str, Any]) -> str:
    """uid of the Execution a pod's ``metadata.ownerReferences`` names ('' when none does)."""
    return owner_execution(meta)[1]


def foreign_owner(ident: PodIdentity, name: str, claims: PodClaims, execution_uid: str) -> AuthError:
    """403 ``NotCurrentPod`` for a pod whose owner reference names another Execution than ``name``
    (uid ``execution_uid``), the one its label names.

    Only to say why it is refused (owner references can be edited too): the pod of an earlier Execution
    of the same name (deleted and re-created), or the pod of another Execution, relabelled.
    """
    where = ident.namespace
    owner = claims.owner_name or name
    if owner == name:
        why = f"belongs to an earlier Execution {where}/{name} (uid {claims.owner_uid}, now {execution_uid})"
    else:
        why = (
            f"belongs to Execution {where}/{owner} (uid {claims.owner_uid}), not to {where}/{name} "
            f"(uid {execution_uid}) that its label {EXECUTION_LABEL} names"
        )
    return AuthError(403, "NotCurrentPod", f"pod {ident.pod_name} {why}")


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when absent or malformed."""
    if not header:
        raise AuthError(401, "MissingToken", "missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "MalformedToken", "Authorization header must be 'Bearer <token>'")
    return token


def identity_from_review(status: Mapping[str, Any], audience: str = TOKEN_AUDIENCE) -> PodIdentity:
    """Pod identity from a TokenReview ``status`` (camelCase dict); 401/403 when it names no pod.

    ``status.audiences`` must hold ``audience``: a review that asked for audiences must see one of
    them confirmed, or the token was good only for others (an empty list: the API server's own).
    """
    if not status.get("authenticated"):
        detail = status.get("error") or "token not authenticated"
        raise AuthError(401, "InvalidToken", f"token rejected by the API server: {detail}")
    confirmed = list(status.get("audiences") or [])
    if audience not in confirmed:
        raise AuthError(
            401,
            "InvalidToken",
            f"the API server did not confirm the token for audience {audience!r} "
            f"(status.audiences: {confirmed})",
        )
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(SA_PREFIX) or username.count(":") != 3:
        raise AuthError(403, "NotAServiceAccount", f"token of {username!r} is not a service account's")
    namespace, service_account = username[len(SA_PREFIX) :].split(":", 1)
    extra = user.get("extra") or {}
    pod_names = extra.get(CLAIM_POD_NAME) or []
    pod_uids = extra.get(CLAIM_POD_UID) or []
    if len(pod_names) != 1:
        raise AuthError(
            403, "NotPodBound", "token is not bound to a pod (use the projected token mounted in the pod)"
        )
    return PodIdentity(
        namespace=namespace,
        pod_name=pod_names[0],
        pod_uid=pod_uids[0] if pod_uids else "",
        service_account=service_account,
    )


def attempt_in_name(execution: str, pod_name: str) -> int | None:
    """The attempt an operator-made pod's name carries (``<execution>-a<n>``); None for any other name.

    A pod's name cannot change, but anyone allowed to create pods may pick one, so this never admits
    a caller: it only chooses which refusal a pod that is not the current one gets.
    """
    prefix = f"{execution}-a"
    rest = pod_name[len(prefix) :] if pod_name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() and not rest.startswith("0") else None


def caller_for(
    ident: PodIdentity, pod_labels: Mapping[str, str] | None, execution: Mapping[str, Any] | None
) -> Caller:
    """Check that ``ident`` is the current pod of the Execution its ``stratarouter.io/execution`` label names.

    ``execution`` is the Execution object as a dict, or None when it does not exist (403 too: a pod
    can only ever write the Execution of its own namespace whose ``status.podUID`` is its own uid).
    The attempt is ``status.attempt``, never the pod's label. A pod that is not the current one and
    whose name is an older attempt's than ``status.attempt`` gets 409 ``StaleAttempt``, as its writes
    would from the store: the SDK raises ``StaleAttemptError`` and the zombie knows to stop. Any other
    pod gets 403 ``NotCurrentPod`` (a new pod before status records it: the SDK retries that briefly).
    """
    labels = pod_labels or {}
    name = labels.get(EXECUTION_LABEL)
    if not name:
        raise AuthError(
            403,
            "NotManaged",
            f"pod {ident.namespace}/{ident.pod_name} is not an Execution's pod "
            f"(label {EXECUTION_LABEL} missing)",
        )
    if execution is None:
        raise AuthError(
            403, "NoExecution", f"pod {ident.pod_name} names Execution {name}, not found in {ident.namespace}"
        )
    current = current_of(execution)
    if current.deleting and current.pod_uid == ident.pod_uid:
        # its run ends with the Execution: the same answer as a replaced attempt's, so the SDK stops
        raise AuthError(
            409,
            "StaleAttempt",
            f"Execution {ident.namespace}/{name} is being deleted; pod {ident.pod_name} must stop",
        )
    if current.is_pod(ident.pod_uid):
        return Caller(
            namespace=ident.namespace, pod_name=ident.pod_name, execution=name, attempt=current.attempt
        )
    own = attempt_in_name(name, ident.pod_name)
    if own is not None and own < current.attempt:
        # a zombie of a replaced attempt: the same answer the store's fencing gives its writes
        raise AuthError(
            409,
            "StaleAttempt",
            f"attempt {own} of Execution {ident.namespace}/{name} was replaced by attempt "
            f"{current.attempt} (pod {current.pod_name or 'not yet named'}); pod {ident.pod_name} must stop",
        )
    raise AuthError(
        403,
        "NotCurrentPod",
        f"pod {ident.pod_name} (uid {ident.pod_uid or 'unknown'}) is not the current pod of Execution "
        f"{ident.namespace}/{name} (current: {current.pod_name or 'none yet'}"
        f"{f', uid {current.pod_uid}' if current.pod_uid else ''})",
    )


@contextlib.contextmanager
def unreachable_is_unavailable(what: str) -> Iterator[None]:
    """An API server that cannot be reached (restarting, a network fault) gets the caller a 503 it
    retries, never a 500: the connection error becomes ``ApiUnavailable``."""
    try:
        yield
    except (aiohttp.ClientError, OSError) as exc:
        raise AuthError(
            503, "ApiUnavailable", f"{what} failed, the API server is unreachable: {exc!r}"
        ) from exc


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A small expiring map; bounded by dropping expired entries (then the oldest) when full."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[K, tuple[float, V]] = {}
        self._max = max_entries
        self._clock = clock

    def get(self, key: K) -> V | None:
        hit = self.entry(key)
        return None if hit is None else hit[1]

    def entry(self, key: K) -> tuple[float, V] | None:
        """``(expiry time, value)`` of a live entry; None when absent or expired."""
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._data[key]
            return None
        return hit

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._data) >= self._max and key not in self._data:
            now = self._clock()
            for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
                del self._data[k]
            while len(self._data) >= self._max:
                del self._data[next(iter(self._data))]
        self._data[key] = (self._clock() + ttl, value)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


def token_key(token: str) -> str:
    """Cache key of a token: its SHA-256, so no token sits in memory longer than a request."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """TokenReview + pod lookups cached per token, the current-pod check per request (see the module doc)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        audience: str = TOKEN_AUDIENCE,
        cache_seconds: float = 300.0,
        negative_cache_seconds: float = 5.0,
        current: PodNames | None = None,
        review_concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._authn = client.AuthenticationV1Api(api)
        self._kube = Kube(api)
        self._audience = audience
        self._ttl = cache_seconds
        self._negative_ttl = negative_cache_seconds
        self._current = current
        self._clock = clock
        self._wall_clock = wall_clock
        self._claims: TTLCache[str, tuple[PodClaims, float]] = TTLCache(clock=clock)
        """token key -> (claims, when to re-check them in the background)"""
        self._rejected: TTLCache[str, AuthError] = TTLCache(clock=clock)
        self._inflight: dict[str, asyncio.Future[PodClaims]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        self._reviews = asyncio.Semaphore(review_concurrency)
        self._review_slots = review_concurrency

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller behind an Authorization header, or :class:`AuthError`."""
        token = bearer_token(authorization)
        claims = await self._claims_of(token)
        return await self._current_caller(claims)

    async def _claims_of(self, token: str) -> PodClaims:
        key = token_key(token)
        cached = self._claims.get(key)
        if cached is not None:
            claims, refresh_at = cached
            if refresh_at <= self._clock() and key not in self._inflight:
                self._refresh(key, token)
            return claims
        rejected = self._rejected.get(key)
        if rejected is not None:
            raise rejected
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        screen_token(token, self._audience, self._wall_clock())
        return await self._resolve_shared(key, token)

    async def _current_caller(self, claims: PodClaims) -> Caller:
        """The caller if its pod is its Execution's current pod: from the view, else from the API server."""
        ident, labels = claims.ident, claims.labels
        name = labels.get(EXECUTION_LABEL)
        if name and self._current is not None:
            seen = self._current.current(ident.namespace, name)
            if seen is not None and seen.is_pod(ident.pod_uid):
                return Caller(
                    namespace=ident.namespace, pod_name=ident.pod_name, execution=name, attempt=seen.attempt
                )
        if not name:
            return caller_for(ident, labels, None)  # refused: not an Execution's pod
        execution = await self._execution(ident.namespace, name)
        if execution is not None and claims.owner_uid and not current_of(execution).is_pod(ident.pod_uid):
            # only to say why a pod that is not the current one is refused: owner references can be edited
            uid = (execution.get("metadata") or {}).get("uid")
            if uid and uid != claims.owner_uid:
                raise foreign_owner(ident, name, claims, str(uid))
        return caller_for(ident, labels, execution)

    async def _resolve_shared(self, key: str, token: str) -> PodClaims:
        """Resolve ``token`` once for every concurrent request with it, and cache the outcome."""
        future: asyncio.Future[PodClaims] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            claims = await self._resolve(token)
        except BaseException as exc:
            if isinstance(exc, AuthError) and exc.status in (401, 403):
                self._claims.pop(key)  # a background re-check found the token no longer valid
                self._rejected.put(key, exc, self._negative_ttl)  # what the token proves: not enough
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            ttl = self._ttl_of(token)
            refresh_at = self._clock() + ttl * random.uniform(*REFRESH_AHEAD)
            self._claims.put(key, (claims, refresh_at), ttl)
            future.set_result(claims)
            return claims
        finally:
            del self._inflight[key]

    def _ttl_of(self, token: str) -> float:
        """How long a review of ``token`` is trusted: ``cache_seconds``, never past the token's expiry."""
        exp = token_expiry(token)
        if exp is None:
            return self._ttl
        return max(0.0, min(self._ttl, exp - EXPIRY_MARGIN_SECONDS - self._wall_clock()))

    def _refresh(self, key: str, token: str) -> None:
        """Re-check a cached token without holding up the request that noticed it was due."""

        async def run() -> None:
            # A refused token is dropped from the cache by _resolve_shared; an unreachable API server
            # leaves the cached claims in place until they expire.
            try:
                await self._resolve_shared(key, token)
            except AuthError:
                pass
            except Exception:  # the next request after expiry resolves (and reports) it again
                log.warning("background re-check of a cached token failed", exc_info=True)

        task = asyncio.get_running_loop().create_task(run())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    def forget(self, authorization: str | None) -> None:
        """Drop a cached token (after the store called its attempt stale)."""
        with contextlib.suppress(AuthError):
            self._claims.pop(token_key(bearer_token(authorization)))

    async def _resolve(self, token: str) -> PodClaims:
        ident = await self._review(token)
        meta = await self._pod_metadata(ident)
        if ident.pod_uid and meta.get("uid") != ident.pod_uid:
            raise AuthError(401, "PodGone", f"pod {ident.namespace}/{ident.pod_name} was replaced")
        labels: dict[str, str] = dict(meta.get("labels") or {})
        owner_name, owner_uid = owner_execution(meta)
        return PodClaims(ident=ident, labels=labels, owner_uid=owner_uid, owner_name=owner_name)

    async def _execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Execution as the API server has it now; None when it does not exist."""
        try:
            with unreachable_is_unavailable("reading the Execution"):
                return await self._kube.get_execution(namespace, name)
        except ApiException as exc:
            raise AuthError(503, "ApiUnavailable", f"reading the Execution failed: {exc.reason}") from exc

    async def _pod_metadata(self, ident: PodIdentity) -> dict[str, Any]:
        """The calling pod's metadata, read as plain JSON (:meth:`Kube.get_pod`: turning the whole pod into
        client model objects was the largest single cost of a cache miss at a thousand pods)."""
        try:
            with unreachable_is_unavailable("reading the calling pod"):
                pod = await self._kube.get_pod(ident.namespace, ident.pod_name)
        except ApiException as exc:
            why = f"reading the calling pod failed: {exc.status} {str(exc.body or exc.reason)[:200]}"
            raise AuthError(503, "ApiUnavailable", why) from exc
        if pod is None:
            raise AuthError(401, "PodGone", f"pod {ident.namespace}/{ident.pod_name} no longer exists")
        meta: dict[str, Any] = pod.get("metadata") or {}
        return meta

    async def _review(self, token: str) -> PodIdentity:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[self._audience]))
        async with self._review_slot():
            try:
                with unreachable_is_unavailable("the TokenReview"):
                    review = await self._authn.create_token_review(body)
            except ApiException as exc:
                TOKEN_REVIEWS_TOTAL.labels(result="error").inc()
                why = f"TokenReview failed: {exc.status} {exc.reason}"
                raise AuthError(503, "ApiUnavailable", why) from exc
        status = review.status
        user = status.user if status else None
        as_dict: dict[str, Any] = {
            "authenticated": bool(status and status.authenticated),
            "error": status.error if status else None,
            "audiences": (status.audiences if status else None) or [],
            "user": {"username": user.username, "extra": user.extra or {}} if user else {},
        }
        TOKEN_REVIEWS_TOTAL.labels(result="authenticated" if as_dict["authenticated"] else "rejected").inc()
        return identity_from_review(as_dict, self._audience)

    @contextlib.asynccontextmanager
    async def _review_slot(self) -> AsyncIterator[None]:
        """One of the few TokenReviews allowed in flight; 503 when none frees up in time."""
        try:
            async with asyncio.timeout(REVIEW_WAIT_SECONDS):
                await self._reviews.acquire()
        except TimeoutError:
            raise AuthError(
                503, "Busy", f"{self._review_slots} TokenReviews are in flight already; retry shortly"
            ) from None
        try:
            yield
        finally:
            self._reviews.release()
