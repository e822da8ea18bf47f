"""Shared fixtures: each real service starts once per session, only if a test asks for it."""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.cluster", "tests.fixtures.api_child"]
