"""The long-running processes of the local cluster and its node: start, find, wait, stop.

Each runs in a session of its own, so a stop can kill its whole process group and a Ctrl-C in the
terminal reaches none of them. A process found again from a state file (``make cluster-down`` after
``make cluster-up``) has no Popen handle, only a pid: :func:`alive` and :func:`cmdline` read /proc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

LOG_TAIL_LINES = 40


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: have the kernel SIGKILL this child when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(argv: list[str], log: Path, cwd: Path, *, die_with_parent: bool) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, appending its output to ``log``.

    ``die_with_parent`` ties it to this process (test sessions: even a SIGKILLed pytest leaves no
    server behind); leave it off for processes that must outlive this one (``make cluster-up``).
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def alive(pid: int, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True if the process exists and is not a zombie."""
    if proc is not None:
        return proc.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def owned(pid: int, proc: subprocess.Popen[bytes] | None, root: Path) -> bool:
    """Whether ``pid`` is still ours to signal: started by this process (``proc``), or, when found
    through a state file, a process whose command line still names our ``root`` (not a reused pid)."""
    return proc is not None or str(root) in cmdline(pid)


def pids_with(text: str) -> list[int]:
    """Processes (other than this one) whose command line contains ``text``."""
    me = os.getpid()
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and int(entry.name) != me and text in cmdline(int(entry.name))
    ]


def terminate(pid: int, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``grace`` seconds, wait until it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid, proc), grace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid, proc), 5)


def wait_until(done: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll ``done`` until true (returns True) or ``timeout`` seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
