"""A thin wrapper over the helm binary for the chart tests: render, lint, and read back manifests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "stratarouter-operator"
#: A Kubernetes version inside the chart's kubeVersion range, for offline renders.
KUBE_VERSION = "1.31.0"

Manifest = dict[str, Any]


class HelmError(RuntimeError):
    """helm exited non-zero; ``stderr`` holds its message."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.stderr = stderr
        super().__init__(f"helm {' '.join(args)} exited {returncode}: {stderr.strip()}")


@dataclass(frozen=True)
class Helm:
    """The helm binary plus the environment it runs in (kubeconfig, helm's own dirs)."""

    binary: Path
    env: Mapping[str, str]

    def run(self, *args: str, timeout: float = 300.0) -> str:
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=dict(self.env),
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise HelmError(list(args), result.returncode, result.stderr)
        return result.stdout

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "strata",
        namespace: str = "strata-system",
        chart: Path = CHART,
        kube_version: str = KUBE_VERSION,
        extra: tuple[str, ...] = (),
    ) -> list[Manifest]:
        """Render the chart offline and return its manifests (CRDs from crds/ included)."""
        with values_file(values) as path:
            out = self.run(
                "template", release, str(chart),
                "--namespace", namespace,
                "--kube-version", kube_version,
                "--include-crds",
                "--values", str(path),
                *extra,
            )  # fmt: skip
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def lint(self, values: Mapping[str, Any] | None = None, *, chart: Path = CHART) -> str:
        with values_file(values) as path:
            return self.run("lint", "--strict", str(chart), "--values", str(path))


@contextlib.contextmanager
def values_file(values: Mapping[str, Any] | None) -> Iterator[Path]:
    """A temporary YAML file holding ``values``, removed on exit."""
    fd, name = tempfile.mkstemp(prefix="values-", suffix=".yaml")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(dict(values or {}), handle)
        yield path
    finally:
        path.unlink(missing_ok=True)


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of ``kind`` (and ``name``); fail loudly when there are none or several."""
    found = [m for m in by_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    if len(found) != 1:
        names = [m["metadata"]["name"] for m in by_kind(manifests, kind)]
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)} among {names}")
    return found[0]


def rules_of(manifests: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every (Role or ClusterRole, rule) pair in the render."""
    for manifest in manifests:
        if manifest.get("kind") in ("Role", "ClusterRole"):
            for rule in manifest.get("rules") or []:
                yield manifest, rule
