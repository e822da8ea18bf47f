"""Every kopf handler of the operator; importing this package registers them all (``kopf run -m``)."""

from stratarouter_runtime.operator import main as _main  # noqa: F401 - login, startup, cleanup
from stratarouter_runtime.operator.handlers import executions, pods, retention, snapshots

__all__ = ["executions", "pods", "retention", "snapshots"]
