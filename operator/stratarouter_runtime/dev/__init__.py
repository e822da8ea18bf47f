"""Throwaway local services (PostgreSQL, a Kubernetes control plane) for tests, benchmarks and the demo.

Nothing here is used in production; it exists so that every test and the demo
run against real servers on a machine that has no Docker engine.
"""
