"""The operator tests' fixtures, for the doc tests that run README samples against a real operator."""

from tests.operator.conftest import (  # noqa: F401
    crds,
    executions,
    kube,
    namespace,
    operator,
    operator_env,
    operator_process,
)
