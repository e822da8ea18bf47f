"""LangGraph on the store: :class:`StrataCheckpointSaver`, a ``BaseCheckpointSaver`` over ``StateManager``.

Needs the ``langgraph`` extra (``pip install 'stratarouter-runtime[langgraph]'``).
"""

from stratarouter_runtime.integrations.langgraph.saver import StrataCheckpointSaver

__all__ = ["StrataCheckpointSaver"]
