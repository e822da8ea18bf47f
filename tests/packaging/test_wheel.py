"""What ships: the wheel holds the SDK, the operator and the CLI, and none of the developer tooling."""

from __future__ import annotations

import ast
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "operator" / "stratarouter_runtime"
DEV_PACKAGE = "stratarouter_dev"


def _imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_shipped_module_imports_the_dev_tooling() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m for m in _imported_modules(path) if m.partition(".")[0] == DEV_PACKAGE
        )
        for path in RUNTIME.rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the wheel (`make install` installs it)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([uv, "build", "--quiet", "--wheel", "--out-dir", str(out), str(REPO)], check=True)
    (path,) = out.glob("stratarouter_runtime-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_sdk_the_operator_and_the_cli(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in (
        "stratarouter_runtime/__init__.py",
        "stratarouter_runtime/state/manager.py",
        "stratarouter_runtime/operator/main.py",
        "stratarouter_runtime/cli.py",
    ):
        assert module in names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "stratarouter = stratarouter_runtime.cli:main" in wheel.read(entry_points).decode()


def test_the_wheel_holds_no_developer_tooling(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"stratarouter_runtime", next(t for t in tops if t.endswith(".dist-info"))}
    assert not [n for n in wheel.namelist() if "/dev/" in n or n.endswith("demo.py")]
