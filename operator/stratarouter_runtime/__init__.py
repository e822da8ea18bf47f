"""StrataRouter Runtime: keep the execution state of long-running workloads safe.

The SDK's entry point is :class:`StateManager`; the Kubernetes operator lives in
``stratarouter_runtime.operator`` and needs the ``[operator]`` extra.
"""
