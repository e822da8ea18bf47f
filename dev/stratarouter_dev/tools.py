"""Where the local cluster's binaries live: etcd, kube-apiserver & co, kwok and helm.

``hack/build-tools.sh`` builds them once from source into a cache outside the
repository and prints the bin directory; the Makefile passes that directory on
as ``STRATA_TOOLS_BIN``. Outside make we run the script ourselves (a no-op when
the cache is warm), so ``pytest`` and the demo work from a plain checkout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kwok",
    "helm",
)
BUILD_SCRIPT = Path("hack") / "build-tools.sh"


class ToolsError(RuntimeError):
    """The binaries are missing and could not be built."""


def repo_root() -> Path:
    """The checkout holding ``hack/build-tools.sh``: found from this module, else from the cwd."""
    starts = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in starts:
        for cand in (start, *start.parents):
            if (cand / BUILD_SCRIPT).is_file():
                return cand
    raise ToolsError(
        "cannot find hack/build-tools.sh above this module or the current directory; "
        "set STRATA_TOOLS_BIN to the bin directory printed by `make tools`"
    )


def check_bin_dir(bin_dir: Path) -> Path:
    """Return ``bin_dir`` if every required binary is in it, else raise naming the missing ones."""
    missing = [name for name in REQUIRED if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise ToolsError(f"{bin_dir} lacks {', '.join(missing)}; run `make tools` (or hack/build-tools.sh)")
    return bin_dir


def tools_bin_dir() -> Path:
    """The bin directory: ``$STRATA_TOOLS_BIN`` if set, else whatever ``hack/build-tools.sh`` prints.

    The script's progress goes to our stderr, so a cold build (many minutes) is visible.
    """
    env = os.environ.get("STRATA_TOOLS_BIN", "").strip()
    return check_bin_dir(Path(env) if env else run_build_script(BUILD_SCRIPT))


def run_build_script(script: Path) -> Path:
    """Run a ``hack/`` build script (a no-op when its cache is warm) and return the directory it prints
    last; its progress goes to our stderr, so a cold build is visible."""
    path = repo_root() / script
    try:
        out = subprocess.run(["bash", str(path)], check=True, stdout=subprocess.PIPE, text=True).stdout
    except subprocess.CalledProcessError as exc:
        raise ToolsError(f"{path} failed with exit code {exc.returncode} (its output is above)") from exc
    return Path(out.strip().splitlines()[-1])
