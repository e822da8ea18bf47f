"""kopf's diff-base storage, minus a deep copy of every Execution on every watch event.

Each status patch (about one a second per running Execution) comes back to kopf as a watch event, and kopf
builds the object's "essence" for change detection by deep-copying the WHOLE body (status, conditions,
managedFields) only to delete most of it again. At a few hundred Executions that copy was the largest
part of kopf's work per event. :class:`SlimDiffBaseStorage` hands kopf a shallow view holding only what
the essence is made of, so the essence (and the stored annotation) is exactly what kopf would build.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

KEPT_METADATA = ("name", "namespace", "labels", "annotations", "ownerReferences")
"""labels and annotations go into the essence; the rest is what kopf's key naming looks at."""
DROPPED_TOP = ("status", "metadata")


def _top_level(field: Any) -> str:
    """The first path element of a kopf field spec (``"spec.x"``, ``("spec", "x")``, ``["spec"]``)."""
    if isinstance(field, str):
        return field.split(".", 1)[0]
    return str(field[0]) if field else ""


def slim_body(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` without status and with only the metadata the essence or the key naming reads (shallow)."""
    slim = {key: value for key, value in raw.items() if key not in DROPPED_TOP}
    meta = raw.get("metadata") or {}
    slim["metadata"] = {key: meta[key] for key in KEPT_METADATA if key in meta}
    return slim


class SlimDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The annotations diff-base storage, building the essence from a slim view of the body."""

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or ())
        if any(_top_level(f) in DROPPED_TOP for f in fields):  # a handler watches status/metadata
            return super().build(body=body, extra_fields=fields)
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim_body(dict(body)))), extra_fields=fields)
