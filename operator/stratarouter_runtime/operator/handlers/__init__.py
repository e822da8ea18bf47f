"""The kopf handlers of Executions, Snapshots, pods and nodes; importing this package registers them.

The process's own handlers (login, startup, cleanup) are in ``operator.main``, which imports this package:
the dependency goes one way.
"""

from stratarouter_runtime.operator.handlers import executions, pods, retention, snapshots

__all__ = ["executions", "pods", "retention", "snapshots"]
