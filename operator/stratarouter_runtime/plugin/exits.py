"""The plugin's exit codes (docs/plugin.md lists them)."""

from __future__ import annotations

OK = 0
FAILED = 1
"""Anything else: kubectl's message is printed."""
USAGE = 2
"""A bad command line (argparse's own code)."""
NOT_FOUND = 3
"""The Execution, its stored run, a checkpoint, a Snapshot or a pod does not exist."""
FORBIDDEN = 4
"""RBAC refused the call (or the user is not authenticated); the message names the permission."""
UNAVAILABLE = 5
"""The view API is not registered or not answering, or the store is unavailable."""
NO_KUBECTL = 6
"""``kubectl`` is not on PATH."""


class PluginError(Exception):
    """A failure to report on stderr and exit with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
