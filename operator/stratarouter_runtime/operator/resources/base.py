"""What every CRD model shares: camelCase aliases, and the CRD metadata declared next to the model."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "stratarouter.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
GROUP_PATH = f"/apis/{API_VERSION}"
"""The REST path of the group's resources: ``{GROUP_PATH}/namespaces/NS/executions/NAME``."""
EXECUTIONS = "executions"
"""The plural of the Execution resource, in every API path and kopf handler."""
SNAPSHOTS = "snapshots"
KIND_EXECUTION = "Execution"
MERGE_PATCH = "application/merge-patch+json"
"""The content type of every status patch (a JSON merge patch: only the fields it names change)."""
CATEGORY = "stratarouter"
FINALIZER = f"{GROUP}/finalizer"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Kubernetes' limit on a label value (and on a DNS label).
LABEL_VALUE_MAX = 63


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys ignored (the API server prunes them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclasses.dataclass(frozen=True)
class CrdInfo:
    """Names, columns and subresources of one kind; the generator turns it into the CRD around the schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = (CATEGORY,)
    scope: str = "Namespaced"
    #: Longest ``metadata.name`` the API server admits (a CEL rule on the root; None: Kubernetes' own).
    max_name_length: int | None = None

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


class Resource(CamelModel):
    """A top-level kind: subclasses set ``crd`` and have ``spec`` and ``status`` fields."""

    crd: ClassVar[CrdInfo]
