"""Adapters that put other frameworks' state on the store (through ``StateManager``'s public API)."""
