"""``hack/build-images.sh``: the three OCI image tarballs, read back with tarfile and json.

No container runtime is involved: the test parses the OCI layouts (index, manifest, config, layers) and
checks what ``ctr images import`` would name them and what a container would run. A cold build takes a
minute or two (the Debian base through mmdebstrap, the wheels from PyPI); later runs reuse the cache.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-images.sh"
REFS = {
    "pause": "localhost/stratarouter-pause:3.10.1",
    "operator": "docker.io/library/stratarouter-operator:dev",
    "example": "docker.io/library/stratarouter-example:dev",
}
SITE_ENV = {"PYTHONPATH": "/opt/site", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
# Files whose bytes the tests look at (paths as in the layers, without a leading "./").
WANTED = {"etc/passwd", "etc/group", "app/workload.py", "pause"}
ET_EXEC, PT_DYNAMIC, PT_INTERP = 2, 2, 3

MISSING = [tool for tool in ("mmdebstrap", "umoci") if shutil.which(tool) is None]
NEEDS = f"hack/build-images.sh needs {', '.join(MISSING)} (apt-get install mmdebstrap umoci)"
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=NEEDS),
    pytest.mark.timeout(1800),
]


@dataclass
class Image:
    index: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: list[set[str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set().union(*self.layers)


def _path(name: str) -> str:
    return name.removeprefix("./").rstrip("/")


def read_image(path: Path) -> Image:
    with tarfile.open(path) as outer:

        def blob(digest: str) -> IO[bytes]:
            algorithm, _, hexdigest = digest.partition(":")
            member = outer.extractfile(f"blobs/{algorithm}/{hexdigest}")
            assert member is not None, digest
            return member

        index_file = outer.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        assert len(index["manifests"]) == 1, index
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        image = Image(index=index, manifest=manifest, config=json.load(blob(manifest["config"]["digest"])))
        for layer in manifest["layers"]:
            assert layer["mediaType"].endswith("tar+gzip"), layer
            names: set[str] = set()
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r|gz") as entries:
                for entry in entries:
                    name = _path(entry.name)
                    names.add(name)
                    if name in WANTED and entry.isfile():
                        content = entries.extractfile(entry)
                        assert content is not None
                        image.files[name] = content.read()
            image.layers.append(names)
    return image


def _run_script() -> tuple[str, float]:
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout, elapsed


@pytest.fixture(scope="module")
def built() -> Path:
    stdout, _ = _run_script()
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout must be the result directory alone: {stdout!r}"
    return Path(lines[0])


@pytest.fixture(scope="module")
def images(built: Path) -> dict[str, Image]:
    return {name: read_image(built / f"{name}.tar") for name in REFS}


def _env(image: Image) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image.config["config"]["Env"])


def test_result_holds_three_tarballs(built: Path) -> None:
    assert built.name.startswith("images-")
    assert {p.name for p in built.glob("*.tar")} == {"pause.tar", "operator.tar", "example.tar"}
    refs = dict(line.split("=", 1) for line in (built / "images.env").read_text().splitlines())
    assert refs == {f"IMAGE_{name.upper()}": ref for name, ref in REFS.items()}


@pytest.mark.parametrize("name", sorted(REFS))
def test_index_names_the_full_reference(images: dict[str, Image], name: str) -> None:
    image = images[name]
    (entry,) = image.index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == REFS[name]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert image.config["os"] == "linux"
    assert image.config["architecture"] == "amd64"
    assert len(image.config["rootfs"]["diff_ids"]) == len(image.manifest["layers"])


def test_operator_config(images: dict[str, Image]) -> None:
    config = images["operator"].config["config"]
    assert config["Entrypoint"] == ["python3", "-m", "stratarouter_runtime.cli"]
    assert config["Cmd"] == ["operator"]
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    env = _env(images["operator"])
    assert env.items() >= SITE_ENV.items()
    assert env["PATH"].split(":")[0] == "/opt/site/bin"
    assert config["Labels"]["org.opencontainers.image.title"] == "stratarouter-operator"


def test_example_config(images: dict[str, Image]) -> None:
    config = images["example"].config["config"]
    assert config["Entrypoint"] == ["python3", "/app/workload.py"]
    assert not config.get("Cmd")
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/app"
    assert _env(images["example"]).items() >= SITE_ENV.items()


@pytest.mark.parametrize("name", ["operator", "example"])
def test_base_layer_has_python_and_the_strata_user(images: dict[str, Image], name: str) -> None:
    image = images[name]
    assert len(image.layers) == 2, "the Debian base and one app layer"
    base, app = image.layers
    assert {"usr/bin/python3", "usr/bin/python", "etc/passwd"} <= base
    assert not any(n.startswith("dev/") for n in base), "device nodes belong to the runtime"
    assert not any(n.startswith("var/lib/apt/lists/") and n.endswith("_Packages") for n in base)
    user = "strata:x:10001:10001::/nonexistent:/usr/sbin/nologin"
    assert user in image.files["etc/passwd"].decode().splitlines()
    assert "strata:x:10001:" in image.files["etc/group"].decode().splitlines()
    assert all(n.startswith(("opt", "app")) for n in app), sorted(app)[:5]


def test_operator_layers_hold_the_operator_and_kopf(images: dict[str, Image]) -> None:
    names = images["operator"].names
    assert "opt/site/stratarouter_runtime/operator/main.py" in names
    assert any(n.startswith("opt/site/stratarouter_runtime/operator/handlers/") for n in names)
    assert "opt/site/kopf/__init__.py" in names
    assert "opt/site/kubernetes_asyncio/__init__.py" in names
    # Compiled here: the chart's root filesystem is read-only, so the image could not cache bytecode itself.
    assert any(n.startswith("opt/site/kopf/__pycache__/") and n.endswith(".cpython-311.pyc") for n in names)


def test_example_layers_hold_the_workload_without_kopf(images: dict[str, Image]) -> None:
    image = images["example"]
    assert "app/workload.py" in image.names
    assert image.files["app/workload.py"] == (ROOT / "examples" / "workload.py").read_bytes()
    assert "opt/site/stratarouter_runtime/state/__init__.py" in image.names
    assert not any(n.startswith("opt/site/kopf") for n in image.names)
    assert not any(n.startswith("opt/site/kubernetes_asyncio") for n in image.names)


def test_pause_is_a_static_elf(images: dict[str, Image]) -> None:
    image = images["pause"]
    assert image.config["config"]["Entrypoint"] == ["/pause"]
    assert image.layers == [{"pause"}]
    binary = image.files["pause"]
    assert binary[:4] == b"\x7fELF"
    assert binary[4] == 2, "ELF64"
    (e_type,) = struct.unpack_from("<H", binary, 0x10)
    assert e_type == ET_EXEC, "a static binary is ET_EXEC (not PIE, not a shared object)"
    (phoff,) = struct.unpack_from("<Q", binary, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", binary, 0x36)
    types = [struct.unpack_from("<I", binary, phoff + i * phentsize)[0] for i in range(phnum)]
    assert types, "no program headers"
    assert PT_INTERP not in types, "dynamically linked: has a PT_INTERP"
    assert PT_DYNAMIC not in types, "has a dynamic section"
    # The loader's path is what .interp would hold. (Static glibc still names "ld-linux-x86-64.so.2" in
    # its dlopen support, so the bare name is no sign of dynamic linking; the /lib64/ path is.)
    assert b"/lib64/ld-linux" not in binary


def test_second_run_is_a_quick_no_op(built: Path) -> None:
    stdout, elapsed = _run_script()
    assert stdout.strip() == str(built)
    assert elapsed < 5, f"the second run took {elapsed:.1f}s"
