"""A watch of one namespace's pods that survives API-server restarts and keeps every event, in order.

The invariant "never two live pods of one Execution" is checked on this timeline, so it must not miss
events: after a dropped connection it resumes from the last ``resourceVersion`` it saw; only when the
API server says that version is gone (410) does it relist, and then it reports the pods that vanished
meanwhile as DELETED at the list's version and counts a gap (a pod that came and went entirely inside
a gap cannot be seen; the summary says how many gaps there were).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from stratarouter_dev.chaos.records import PodEvent
from stratarouter_dev.kubeapi import KubeApi


class PodTimeline(threading.Thread):
    """Records :class:`PodEvent` s of ``namespace`` until :meth:`close`."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        super().__init__(name="chaos-pod-watch", daemon=True)
        self.api = api
        self.namespace = namespace
        self.events: list[PodEvent] = []
        self.gaps = 0
        self.reconnects = 0
        self._known: dict[str, PodEvent] = {}
        self._rv = ""
        self._closing = threading.Event()
        self._ctx = ssl.create_default_context(cadata=api.ca_pem)
        self._ready = threading.Event()

    def start_and_wait(self, timeout: float = 30.0) -> None:
        """Start, and return once the initial list is in (so nothing created afterwards is missed)."""
        self.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the pod watch could not list the pods")

    def close(self) -> None:
        self._closing.set()
        self.join(timeout=15)

    def run(self) -> None:
        while not self._closing.is_set():
            try:
                if not self._rv:
                    self._relist()
                    self._ready.set()
                self._watch()
            except (OSError, ValueError, urllib.error.URLError):  # API server away: resume from _rv
                self.reconnects += 1
                self._closing.wait(0.2)

    def _path(self, query: dict[str, str]) -> str:
        return f"{self.api.server}/api/v1/namespaces/{self.namespace}/pods?{urllib.parse.urlencode(query)}"

    def _open(self, query: dict[str, str], timeout: float) -> Any:
        req = urllib.request.Request(self._path(query))
        req.add_header("Authorization", f"Bearer {self.api.token}")
        return urllib.request.urlopen(req, timeout=timeout, context=self._ctx)

    def _relist(self) -> None:
        with self._open({}, 30) as resp:
            listing = json.loads(resp.read())
        now = time.time()
        rv = int(listing["metadata"]["resourceVersion"])
        present = set()
        for pod in listing.get("items", []):
            event = _event("ADDED", pod, now)
            present.add(event.uid)
            known = self._known.get(event.uid)
            if known is None or (known.phase, known.deleting) != (event.phase, event.deleting):
                kind = "ADDED" if known is None else "MODIFIED"
                self._record(PodEvent(rv, now, kind, event.name, event.uid, event.phase, event.deleting))
        for uid, last in list(self._known.items()):
            if uid not in present:
                self._record(PodEvent(rv, now, "DELETED", last.name, uid, last.phase, last.deleting))
        if self._rv:
            self.gaps += 1
        self._rv = str(rv)

    def _watch(self) -> None:
        query = {"watch": "1", "resourceVersion": self._rv, "allowWatchBookmarks": "true",
                 "timeoutSeconds": "30"}  # fmt: skip
        with self._open(query, 60) as resp:
            for line in resp:
                if self._closing.is_set():
                    return
                now = time.time()
                message = json.loads(line)
                kind, obj = message.get("type"), message.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # our version is compacted away: relist
                        self._relist()
                    return
                self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._record(_event(kind, obj, now))

    def _record(self, event: PodEvent) -> None:
        self.events.append(event)
        if event.type == "DELETED":
            self._known.pop(event.uid, None)
        else:
            self._known[event.uid] = event


def _event(kind: str, pod: dict[str, Any], at: float) -> PodEvent:
    meta = pod.get("metadata") or {}
    return PodEvent(
        rv=int(meta.get("resourceVersion") or 0),
        at=at,
        type=kind,
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        phase=str((pod.get("status") or {}).get("phase") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )
