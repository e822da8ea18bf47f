"""The chaos suite (``make chaos``): many Executions under faults, checked against invariants.

On this machine alone, with the real control plane and PostgreSQL: Executions on kwok nodes whose pods'
processes are played by workers (:mod:`.workers`) checkpointing through the real checkpoint API with
real bound tokens, while the operator is SIGKILLed, PostgreSQL and kube-apiserver are restarted and the
operator is cut off from PostgreSQL (:mod:`.faults`, :mod:`stratarouter_dev.tcpproxy`). Then the
invariants (:mod:`.invariants`) are checked from the store's history and audit trail, a watch of the pods
(:mod:`.podwatch`) and the workers' own journal::

    python -m stratarouter_dev.chaos --executions 200 [--seed N] [--operator-kills 20] ...

The module layout: :mod:`.records` (what is recorded), :mod:`.invariants` (pure checks),
:mod:`.workers`, :mod:`.faults`, :mod:`.operator` (the operator subprocess), :mod:`.podwatch`,
:mod:`.run` (one run from start to verdict) and :mod:`.__main__` (the command line).
"""
