"""``ui``: ``kubectl proxy`` on a free loopback port, and the web timeline's URL through it.

The proxy carries the user's own credentials, so the timeline reads exactly what they may read. It runs
until Ctrl-C (or SIGTERM); the command then stops it and exits 0.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import webbrowser
from types import FrameType

from stratarouter_runtime.operator.view.paths import UI_PATH
from stratarouter_runtime.plugin.exits import FAILED, PluginError
from stratarouter_runtime.plugin.kubectl import Ctx

_SERVING = re.compile(r"Starting to serve on (\S+)")
START_SECONDS = 30.0


def ui(ctx: Ctx, *, open_browser: bool) -> int:
    """Run the proxy; print (and with ``open_browser`` open) the timeline's URL; wait for Ctrl-C."""
    cmd = ctx.kubectl.argv(
        ["proxy", "--address=127.0.0.1", "--port=0", "--accept-hosts=^(localhost|127\\.0\\.0\\.1)$"]
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first: list[str] = []

    def read_first() -> None:
        assert proc.stdout is not None
        first.append(proc.stdout.readline())

    reader = threading.Thread(target=read_first, daemon=True)
    reader.start()
    reader.join(START_SECONDS)
    found = _SERVING.search(first[0]) if first else None
    if found is None:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        raise PluginError(FAILED, f"kubectl proxy did not start: {(err or '').strip() or first}")
    url = f"http://{found.group(1)}{UI_PATH}"
    print(f"web timeline: {url}\n(kubectl proxy on {found.group(1)}; Ctrl-C to stop)", flush=True)
    if open_browser:
        webbrowser.open(url)

    def stop(signum: int, frame: FrameType | None) -> None:
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT) and err:
        print(err.strip(), file=sys.stderr)
        return FAILED
    return 0
