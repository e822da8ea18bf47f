"""What the pod and node watches have seen, kept in memory to decide cheaply when to poke a reconcile.

Only hints: the reconcile itself always asks the API server before acting, so an empty view after an
operator restart is safe.
"""

from __future__ import annotations

import dataclasses

Key = tuple[str, str]


@dataclasses.dataclass
class ClusterView:
    """Last seen phase and node of our pods, and the nodes seen deleted."""

    pod_marks: dict[Key, tuple[str, bool]] = dataclasses.field(default_factory=dict)
    pod_nodes: dict[Key, str] = dataclasses.field(default_factory=dict)
    executions_by_node: dict[str, set[Key]] = dataclasses.field(default_factory=dict)
    gone_nodes: set[str] = dataclasses.field(default_factory=set)

    def pod_seen(
        self, namespace: str, pod: str, execution: str, *, phase: str, terminating: bool, node: str | None
    ) -> bool:
        """Record a pod event; True when it changed something the lifecycle cares about."""
        key = (namespace, pod)
        mark = (phase, terminating)
        changed = self.pod_marks.get(key) != mark
        self.pod_marks[key] = mark
        if node:
            self.pod_nodes[key] = node
            self.executions_by_node.setdefault(node, set()).add((namespace, execution))
        return changed

    def pod_gone(self, namespace: str, pod: str) -> None:
        """The pod's DELETED event; its node is remembered for the NodeLost check."""
        self.pod_marks.pop((namespace, pod), None)

    def node_of(self, namespace: str, pod: str) -> str | None:
        return self.pod_nodes.get((namespace, pod))

    def node_deleted(self, node: str) -> set[Key]:
        """Mark a node gone; returns the executions that had pods on it."""
        self.gone_nodes.add(node)
        return set(self.executions_by_node.get(node, set()))

    def node_present(self, node: str) -> None:
        self.gone_nodes.discard(node)

    def forget_execution(self, namespace: str, execution: str) -> None:
        prefix = f"{execution}-a"
        for key in [k for k in self.pod_nodes if k[0] == namespace and k[1].startswith(prefix)]:
            self.pod_nodes.pop(key, None)
            self.pod_marks.pop(key, None)
        for keys in self.executions_by_node.values():
            keys.discard((namespace, execution))
