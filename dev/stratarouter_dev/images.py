"""The container images of the real node, built without Docker or a registry.

``hack/build-images.sh`` builds them from Debian packages and the project's wheel into a cache outside
the repository (keyed by their inputs) and prints the directory holding one OCI layout tarball per
image. The real node imports them into its containerd at start; pods use them with
``imagePullPolicy: Never``, so nothing is ever pulled. The names are the ones ``docker build`` would
give (short names, which containerd's CRI reads as ``docker.io/library/...``, as with ``kind load``),
so one Execution manifest works on kind and here.
"""

from __future__ import annotations

import os
from pathlib import Path

from stratarouter_dev.tools import ToolsError, run_build_script

BUILD_SCRIPT = Path("hack") / "build-images.sh"
OPERATOR = "stratarouter-operator:dev"
WORKLOAD = "stratarouter-example:dev"
#: The sandbox image, built from the pause.c of the pinned Kubernetes module.
PAUSE = "localhost/stratarouter-pause:3.10.1"
#: The tarball of each image in the build's output directory.
TARBALLS = {PAUSE: "pause.tar", OPERATOR: "operator.tar", WORKLOAD: "example.tar"}


def images_dir() -> Path:
    """``$STRATA_IMAGES_DIR`` if set, else whatever ``hack/build-images.sh`` prints (a no-op when warm)."""
    env = os.environ.get("STRATA_IMAGES_DIR", "").strip()
    return _checked(Path(env) if env else run_build_script(BUILD_SCRIPT))


def tarballs(directory: Path) -> list[Path]:
    """The image tarballs to import, the sandbox image first."""
    return [directory / name for name in TARBALLS.values()]


def _checked(directory: Path) -> Path:
    missing = [name for name in TARBALLS.values() if not (directory / name).is_file()]
    if missing:
        raise ToolsError(f"{directory} lacks {', '.join(missing)}; run `make images`")
    return directory
