"""The fixtures of the operator's tests and of the view API's, for the timeline's tests on the cluster."""

from tests.operator.conftest import (  # noqa: F401
    crds,
    executions,
    kube,
    namespace,
    operator,
    operator_env,
    operator_process,
)
from tests.operator.test_view_rbac import view, view_env, view_gate  # noqa: F401
