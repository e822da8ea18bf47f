"""Who is calling: the user the API server's front proxy names, on a connection it proves is its own.

The API server proxies a request for ``/apis/view.stratarouter.io/...`` after authenticating the user
itself; it connects with its proxy client certificate (``--proxy-client-cert-file``) and names the user
in headers (``X-Remote-User``, ``X-Remote-Group``, ``X-Remote-Extra-*``). Those headers are believed only
on a TLS connection whose client certificate is signed by the request-header CA
(``--requestheader-client-ca-file``) and, when the API server names any, has one of the allowed common
names (``--requestheader-allowed-names``). Anyone else, including a client with a certificate of the
cluster's ordinary client CA, gets 401: the headers of a direct caller mean nothing.

The API server publishes that configuration in ``kube-system/extension-apiserver-authentication``
(readable with the ``extension-apiserver-authentication-reader`` Role); :func:`load_requestheader`
reads it once at start.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP = "extension-apiserver-authentication"


class Unauthenticated(Exception):
    """401: the connection is not the front proxy's, or names no user."""


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The API server's request-header authentication settings, as it publishes them."""

    client_ca: str
    """PEM bundle of the request-header CA."""
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """From ``extension-apiserver-authentication``'s data (the list values are JSON arrays)."""
        ca = data.get("requestheader-client-ca-file") or ""
        if not ca.strip():
            raise RuntimeError(
                f"{AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP} has no requestheader-client-ca-file: the API "
                "server runs without --requestheader-client-ca-file, so it cannot proxy to an aggregated API"
            )

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if not raw:
                return default
            return tuple(str(v) for v in json.loads(raw)) or default

        return cls(
            client_ca=ca,
            allowed_names=names("requestheader-allowed-names", ()),
            username_headers=names("requestheader-username-headers", cls.username_headers),
            group_headers=names("requestheader-group-headers", cls.group_headers),
            extra_prefixes=names("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )


async def load_requestheader(api: client.ApiClient) -> RequestHeaderConfig:
    """Read the API server's published request-header settings (once, at start)."""
    try:
        found = await client.CoreV1Api(api).read_namespaced_config_map(
            AUTH_CONFIGMAP, AUTH_CONFIGMAP_NAMESPACE
        )
    except ApiException as exc:
        raise RuntimeError(
            f"cannot read {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP} ({exc.status} {exc.reason}): "
            "the view API needs the extension-apiserver-authentication-reader Role in kube-system"
        ) from exc
    return RequestHeaderConfig.from_configmap(found.data or {})


@dataclass(frozen=True)
class User:
    """The user a request is made for, as the front proxy named it."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return (self.name, self.groups, tuple(sorted(self.extra.items())))


def common_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a verified peer certificate (``ssl``'s dict form); None without one."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def user_from_headers(config: RequestHeaderConfig, headers: Any) -> User:
    """The user named by the request headers (``headers``: aiohttp's CIMultiDict-like mapping)."""
    name = next((headers.get(h) for h in config.username_headers if headers.get(h)), None)
    if not name:
        raise Unauthenticated(f"the front proxy named no user (none of {', '.join(config.username_headers)})")
    groups = tuple(g for h in config.group_headers for g in headers.getall(h, ()) if g)
    extra: dict[str, tuple[str, ...]] = {}
    for prefix in config.extra_prefixes:
        low = prefix.lower()
        for key in headers:
            if key.lower().startswith(low) and len(key) > len(prefix):
                # the key's rest is percent-encoded (RFC 3986) and case-insensitive: lower-cased by convention
                extra_key = unquote(key[len(prefix) :]).lower()
                extra[extra_key] = tuple(headers.getall(key))
    return User(name=name, groups=groups, extra=extra)


def authenticate(config: RequestHeaderConfig, request: web.Request) -> User:
    """The front proxy's user, or :class:`Unauthenticated` when the connection is not the front proxy's."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    cn = common_name(peercert)
    if cn is None:
        raise Unauthenticated(
            "no client certificate signed by the request-header CA: only the API server may call"
        )
    if config.allowed_names and cn not in config.allowed_names:
        raise Unauthenticated(f"client certificate CN {cn!r} is not one of the request-header allowed names")
    return user_from_headers(config, request.headers)


def server_ssl_context(cert_file: str, key_file: str, config: RequestHeaderConfig) -> ssl.SSLContext:
    """TLS for the view API: our serving certificate; client certificates verified against the
    request-header CA when presented (CERT_OPTIONAL: a caller without one gets a 401, not a TLS error)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=config.client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
