"""Worker identity: which process slot a manager is, so a restarted process resumes its own runs at once.

A run records the worker id (and the instance) of the manager that started or claimed it. A restarted
process has the same id and a new instance, and knows that the old instance of its id is dead: it is
itself, restarted. So ``recover_all`` claims the runs of its own id at once, and other workers' runs only
after ``recovery_timeout`` and only if their instance is not live.

The id must therefore be the same after a restart and differ between processes alive at once:

* ``worker_id=`` (or ``STRATA_WORKER_ID``): what the deployment says;
* inside Kubernetes (``KUBERNETES_SERVICE_HOST`` set) the pod's name (``HOSTNAME``): a restarted
  container keeps it, and a StatefulSet never runs two pods of one name;
* else ``<hostname>/<12 hex digits of sha256(working directory, argv)>``: the same command started again
  in the same directory on the same host. A PID would not do: a restart gets another. Several identical
  processes on one host (same command, same directory) must be given ids of their own; if they are
  not, the second one is refused with :class:`WorkerIdInUseError` instead of taking the first's runs;
* the second and later managers a process builds without ``worker_id=`` append ``#2``, ``#3``, ...

Liveness: each instance holds its id in a lease (the ``workers`` table, or the memory store), taken
when the manager first starts or claims a run, renewed by each ``start_execution``/``recover_all`` and
by the ``enable_auto_recovery`` sweep, and released by ``close()``. A lease lasts ``recovery_timeout``
seconds. Another instance's lease is over when it expired, or when that instance ran on this host and
its process is gone (a SIGKILLed process is known dead at once, without waiting for its lease).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from stratarouter_runtime.state.errors import WorkerIdInUseError

WORKER_ID_VARIABLE: Final = "STRATA_WORKER_ID"


def default_worker_id(env: Mapping[str, str], ordinal: int = 1) -> str:
    """The worker id of the ``ordinal``-th manager of this process built without ``worker_id=`` (see
    the module docstring for why each source is stable). Managers after the first append ``#<ordinal>``:
    a process that builds several keeps them apart, and builds them in the same order when restarted."""
    base = (env.get(WORKER_ID_VARIABLE) or "").strip()
    if not base and env.get("KUBERNETES_SERVICE_HOST") and env.get("HOSTNAME"):
        base = env["HOSTNAME"]
    if not base:
        slot = "\0".join([os.getcwd(), *sys.argv])
        base = f"{socket.gethostname()}/{hashlib.sha256(slot.encode()).hexdigest()[:12]}"
    return base if ordinal == 1 else f"{base}#{ordinal}"


def _host() -> str:
    """This host (its name; processes with one name but separate PID namespaces cannot see each other)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


@dataclass(frozen=True, slots=True)
class Worker:
    """One manager's identity: the stable id, and this instance of it (new per manager)."""

    worker_id: str
    instance: uuid.UUID = field(default_factory=uuid.uuid4)
    host: str = field(default_factory=_host)
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a worker id as stored: the instance, where it ran, and whether its lease still runs."""

    instance: uuid.UUID
    host: str
    pid: int
    unexpired: bool


_LIVE_HERE: set[uuid.UUID] = set()
"""The instances holding a lease in this process: a lease recorded with this PID but not among them
belongs to a previous incarnation (a restarted container's process has the PID its predecessor had)."""


def held_here(instance: uuid.UUID, holding: bool) -> None:
    """Record that this process's ``instance`` now holds (or no longer holds) its lease."""
    if holding:
        _LIVE_HERE.add(instance)
    else:
        _LIVE_HERE.discard(instance)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def is_live(lease: Lease, me: Worker) -> bool:
    """Whether the instance of ``lease`` may still be running, as far as ``me`` can tell."""
    if lease.instance == me.instance:
        return True
    if not lease.unexpired:
        return False
    if lease.host != me.host:
        return True  # another host: only its lease can tell
    if lease.instance in _LIVE_HERE:
        return True
    return lease.pid != me.pid and _process_exists(lease.pid)


def taken_over(worker_id: str, holder: Lease | None, me: Worker) -> uuid.UUID | None:
    """The instance whose lease ``me`` takes over (None: no other holds one); WorkerIdInUseError if
    that instance is live (two processes under one id)."""
    if holder is None or holder.instance == me.instance:
        return None
    if is_live(holder, me):
        raise WorkerIdInUseError(worker_id)
    return holder.instance
