"""Batched writes through the http backend while the checkpoint API is briefly away: none is lost.

A stand-in for the operator's checkpoint API runs on 127.0.0.1 (no cluster): it records the steps it
stored and, during an outage, answers 503 or stops listening (connection refused).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from stratarouter_runtime import StateManager, StoreUnavailableError

OWN = "ns/run"


class FakeApi:
    """``POST /v1/checkpoint`` and ``/v1/save`` on an ephemeral port; ``down()`` starts an outage."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.unavailable = False
        app = web.Application()
        app.router.add_post("/v1/checkpoint", self._write)
        app.router.add_post("/v1/save", self._write)
        self._runner = web.AppRunner(app)
        self._site: web.TCPSite | None = None
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        await self.listen()

    async def listen(self) -> None:
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def refuse(self) -> None:
        assert self._site is not None
        await self._site.stop()

    async def stop(self) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _write(self, request: web.Request) -> web.Response:
        if self.unavailable:
            response = web.json_response({"error": "StoreUnavailable", "message": "down"}, status=503)
        else:
            self.steps.append(orjson.loads(await request.read())["step"])
            response = web.json_response({"executionId": OWN})
        response.force_close()  # no keep-alive: a stopped listener refuses the next request
        return response


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    server = FakeApi()
    await server.start()
    yield server
    await server.stop()


def pod_state(api: FakeApi, tmp_path: Path, retry_timeout: float) -> StateManager:
    token = tmp_path / "token"
    token.write_text("tok")
    return StateManager(
        backend="http",
        api_url=api.url,
        batch_writes=True,
        batch_size=1000,
        flush_interval_ms=60_000,
        retry_timeout=retry_timeout,
        extra={"token_file": str(token), "execution_id": OWN, "attempt": "1"},
    )


async def outage(api: FakeApi, kind: str, seconds: float) -> None:
    """503 answers, or nobody listening, for ``seconds``."""
    if kind == "503":
        api.unavailable = True
    else:
        await api.refuse()
    await asyncio.sleep(seconds)
    if kind == "503":
        api.unavailable = False
    else:
        await api.listen()


@pytest.mark.parametrize("kind", ["503", "refused"])
async def test_a_flush_during_a_short_outage_keeps_every_write(
    api: FakeApi, tmp_path: Path, kind: str
) -> None:
    state = pod_state(api, tmp_path, retry_timeout=0.1)
    for step in range(20):
        await state.checkpoint(OWN, step, {"step": step})
    away = asyncio.create_task(outage(api, kind, 0.3))
    await asyncio.sleep(0.01)
    with pytest.raises(StoreUnavailableError):
        await state.flush()  # the 0.3 s outage outlasts the 0.1 s retry window
    await away
    await state.close()
    assert api.steps == list(range(20))


@pytest.mark.parametrize("kind", ["503", "refused"])
async def test_an_outage_shorter_than_the_retry_window_is_ridden_out(
    api: FakeApi, tmp_path: Path, kind: str
) -> None:
    state = pod_state(api, tmp_path, retry_timeout=5.0)
    for step in range(20):
        await state.checkpoint(OWN, step, {"step": step})
    away = asyncio.create_task(outage(api, kind, 0.3))
    await asyncio.sleep(0.01)
    await state.flush()
    await away
    await state.close()
    assert api.steps == list(range(20))


async def test_one_flush_gives_up_after_one_retry_window_not_one_per_write(
    api: FakeApi, tmp_path: Path
) -> None:
    state = pod_state(api, tmp_path, retry_timeout=0.2)
    for step in range(20):
        await state.checkpoint(OWN, step, {"step": step})
    api.unavailable = True
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        await state.flush()
    assert time.monotonic() - started < 1.0  # not 20 x 0.2 s
    api.unavailable = False
    await state.close()
    assert api.steps == list(range(20))
