"""The worker id rule and the liveness rule of state/worker.py, without a store."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from stratarouter_runtime import WorkerIdInUseError
from stratarouter_runtime.state.worker import Lease, Worker, default_worker_id, held_here, is_live, taken_over


def test_the_worker_id_comes_from_the_variable_then_the_pod_then_the_command() -> None:
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "etl-0"}
    assert default_worker_id({"STRATA_WORKER_ID": " slot-3 ", **pod}) == "slot-3"
    assert default_worker_id(pod) == "etl-0"
    assert default_worker_id({"HOSTNAME": "laptop"}) == default_worker_id({})  # HOSTNAME alone: no pod
    derived = default_worker_id({})
    assert derived.count("/") == 1
    assert len(derived.split("/")[1]) == 12
    assert default_worker_id(pod, ordinal=2) == "etl-0#2"


def test_the_derived_id_is_the_same_for_the_same_command_in_the_same_directory() -> None:
    probe = "from stratarouter_runtime.state.worker import default_worker_id; print(default_worker_id({}))"
    env = {k: v for k, v in os.environ.items() if k not in ("STRATA_WORKER_ID", "KUBERNETES_SERVICE_HOST")}
    runs = {
        subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1  # a restart of one slot: same id, although the PID differs


def _lease(worker: Worker, *, unexpired: bool = True, **changes: object) -> Lease:
    fields = {"instance": uuid.uuid4(), "host": worker.host, "pid": worker.pid, "unexpired": unexpired}
    return Lease(**{**fields, **changes})  # type: ignore[arg-type]


def test_an_instance_is_live_until_its_lease_expires_or_its_process_is_known_gone() -> None:
    me = Worker("w")
    assert not is_live(_lease(me, unexpired=False), me)
    assert is_live(_lease(me, host="elsewhere", pid=1), me)  # another host: only the lease tells
    assert not is_live(_lease(me), me)  # this host, this PID, not held here: a previous incarnation
    assert is_live(_lease(me, pid=os.getppid()), me)  # a running process of this host
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    assert not is_live(_lease(me, pid=int(gone.stdout)), me)  # exited: dead at once


def test_a_live_holder_is_refused_and_a_dead_one_taken_over() -> None:
    me, twin = Worker("w"), Worker("w")
    held_here(twin.instance, True)
    try:
        with pytest.raises(WorkerIdInUseError, match="'w'"):
            taken_over("w", _lease(me, instance=twin.instance), me)
    finally:
        held_here(twin.instance, False)
    assert taken_over("w", _lease(me, instance=twin.instance), me) == twin.instance
    assert taken_over("w", None, me) is None
    assert taken_over("w", _lease(me, instance=me.instance), me) is None
