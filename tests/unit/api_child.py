"""The checkpoint API in a process of its own, for tests that watch its memory and its connections.

Run as ``python -m tests.unit.api_child``: it starts the API the way the operator does
(:func:`~stratarouter_runtime.operator.api.server.start_api`, settings from ``STRATA_*``) on the memory
store. No API server is needed: the token ``good`` is the current pod of ``ns/run`` (started in the
store, as the operator does), any other token gets 401. Prints ``ready`` once listening and serves
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import SimpleNamespace
from typing import Any

from kubernetes_asyncio import client

from stratarouter_runtime.operator.api import auth, server
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.state import StateManager

TOKEN = "good"
CALLER = auth.Caller(namespace="ns", pod_name="run-a1", execution="run", attempt=1)


async def authenticate(self: auth.Authenticator, authorization: str | None) -> auth.Caller:
    if authorization != f"Bearer {TOKEN}":
        raise auth.AuthError(401, "InvalidToken", "not the test's token")
    return CALLER


class NoStatus:
    """Stands in for the status coalescer: nothing to mirror without a cluster."""

    def note_checkpoint(self, *args: Any) -> None:
        pass


async def main() -> None:
    auth.Authenticator.authenticate = authenticate  # type: ignore[method-assign]
    logging.getLogger("stratarouter_runtime.operator.api.current_pods").setLevel(logging.ERROR)
    settings = OperatorSettings.from_env()
    # nothing listens there: the Executions watch keeps retrying in the background, harmlessly
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with StateManager(backend="memory") as store:
        await store.start_execution(CALLER.execution_id)  # as the operator does before the pod exists
        memo = SimpleNamespace(settings=settings, k8s=api, store=store, status=NoStatus())
        runner = await server.start_api(memo)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()
    await api.close()


if __name__ == "__main__":
    asyncio.run(main())
