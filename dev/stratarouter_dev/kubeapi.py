"""A tiny synchronous Kubernetes API client over the standard library.

The dev tools (cluster bootstrap, pod fault injection) must run without the
``[operator]`` extra, so they speak plain HTTPS with a bearer token instead of
pulling in a Kubernetes client library.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = "application/json"


class KubeApiError(RuntimeError):
    """The API server answered with an error status; ``status`` is its HTTP code."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        super().__init__(f"{method} {path} -> HTTP {status}: {message}")


@dataclass(frozen=True)
class KubeApi:
    """Where an API server listens and how to authenticate to it (bearer token, CA in PEM)."""

    server: str
    token: str
    ca_pem: str = field(repr=False)
    _context: ssl.SSLContext = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_context", ssl.create_default_context(cadata=self.ca_pem))

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeApi:
        """Read the current context of a token-authenticated kubeconfig such as the local cluster's."""
        text = path.read_text()
        try:
            config: dict[str, Any] = json.loads(text)
        except ValueError:  # rewritten as YAML by `kubectl config ...`
            import yaml  # the [operator] extra; only needed for this case

            config = yaml.safe_load(text)
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        if "token" not in user or "certificate-authority-data" not in cluster:
            raise ValueError(f"{path}: only token users with certificate-authority-data are supported")
        ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return cls(cluster["server"], user["token"], ca_pem)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        content_type: str = JSON,
        timeout: float = 30.0,
        authenticate: bool = True,
    ) -> dict[str, Any]:
        """Send one request and return the decoded JSON answer; raise :class:`KubeApiError` on 4xx/5xx."""
        data = json.dumps(body).encode() if body is not None else None
        raw = self._send(method, path, data, content_type, JSON, timeout, authenticate)
        if not raw.strip():
            return {}
        decoded = json.loads(raw)
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def text(self, path: str, *, timeout: float = 10.0) -> str:
        """GET a plain-text endpoint such as ``/readyz``."""
        return self._send("GET", path, None, JSON, "*/*", timeout, True)

    def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        content_type: str,
        accept: str,
        timeout: float,
        authenticate: bool,
    ) -> str:
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if authenticate:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._context) as resp:
                text: str = resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise KubeApiError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        return text

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def exists(self, path: str) -> bool:
        """True if GET ``path`` succeeds, False on 404."""
        try:
            self.get(path)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True
