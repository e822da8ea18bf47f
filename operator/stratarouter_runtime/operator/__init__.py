"""The Kubernetes operator (kopf): Execution and Snapshot resources, the checkpoint API, metrics.

Needs the ``[operator]`` extra. Run it with ``stratarouter operator`` (see ``main.py``).
"""
