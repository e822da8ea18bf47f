"""The checkpoint request path's shortcuts keep their limits: a body that arrived whole is read without
a timer but still refused past the limit; the status coalescer is woken only when a checkpoint makes a
patch newly due (not on every checkpoint), while patches still carry the newest step; a connection's
header deadline keeps one timer, not one per request, and still cuts off a head that stalls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from stratarouter_runtime.operator.api.connections import HeaderDeadline
from stratarouter_runtime.operator.api.limits import Refused, read_body
from stratarouter_runtime.operator.api.status import CoalescePlan, Key, LastCheckpoint, StatusCoalescer

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
A = ("ns", "a")


def cp(step: int) -> LastCheckpoint:
    return LastCheckpoint(step=step, at=AT, size_bytes=step)


def test_note_says_when_a_patch_became_due() -> None:
    plan = CoalescePlan(interval=1.0)
    assert plan.note(A, cp(1), now=0.0) is True  # newly pending
    assert plan.note(A, cp(2), now=0.1) is False  # a newer value for the same pending patch
    assert plan.note(A, cp(1), now=0.2) is False  # a lower step never replaces it
    assert plan.take_one(0.2) == (A, cp(2))
    assert plan.note(A, cp(3), now=0.3) is True  # pending again, due an interval after the last patch
    assert plan.next_due() == pytest.approx(1.2)


async def test_the_sender_is_woken_only_for_a_new_due_time() -> None:
    sent: list[dict[str, Any]] = []

    async def send(key: Key, body: bytes) -> tuple[int, str]:
        sent.append({"key": key, "body": body})
        return 200, ""

    co = StatusCoalescer(None, 0.2, budget_per_second=100.0, send=send)
    try:
        co.note_checkpoint("ns", "a", 1, AT, 1)  # starts the sender: the first patch goes at once
        await asyncio.sleep(0.05)
        assert len(sent) == 1
        co.note_checkpoint("ns", "a", 2, AT, 2)  # newly pending, due 0.2 s after the first patch
        assert co._wake.is_set()
        await asyncio.sleep(0.01)  # the sender took the new due time and waits for it
        assert not co._wake.is_set()
        for step in range(3, 50):  # only newer values for that pending patch: nobody is woken
            co.note_checkpoint("ns", "a", step, AT, step)
            assert not co._wake.is_set()
        await asyncio.sleep(0.3)
        assert len(sent) == 2
        assert b'"step":49' in sent[-1]["body"]  # the newest value went out
    finally:
        await co.close()


def request_with_body(body: bytes, *, eof: bool) -> Any:
    protocol = mock.Mock(_reading_paused=False)
    payload = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    if eof:
        payload.feed_eof()
    headers = {"Content-Type": "application/json"}
    return make_mocked_request("POST", "/v1/checkpoint", headers=headers, payload=payload)


async def test_a_body_that_arrived_whole_is_read_at_once() -> None:
    body = b'{"step":1,"state":{}}'
    assert bytes(await read_body(request_with_body(body, eof=True), 100, 5.0, state=True)) == body


async def test_a_body_that_arrived_whole_is_still_refused_past_the_limit() -> None:
    with pytest.raises(Refused) as refused:
        await read_body(request_with_body(b"x" * 101, eof=True), 100, 5.0, state=True)
    assert (refused.value.status, refused.value.reason) == (400, "StateTooLargeError")


async def test_a_body_still_arriving_is_timed() -> None:
    with pytest.raises(Refused) as refused:
        await read_body(request_with_body(b'{"step":', eof=False), 100, 0.05, state=True)
    assert (refused.value.status, refused.value.reason) == (408, "RequestTimeout")


def deadline(timeout: float) -> tuple[HeaderDeadline, mock.Mock]:
    inner = mock.Mock()
    protocol = HeaderDeadline(inner, timeout, lambda: None)
    protocol.connection_made(mock.Mock())
    return protocol, inner


async def test_a_connection_that_sends_no_head_is_closed() -> None:
    _, inner = deadline(0.05)
    await asyncio.sleep(0.1)
    inner.force_close.assert_called_once()


async def test_a_busy_connection_keeps_one_timer_and_a_late_head_is_still_cut_off() -> None:
    protocol, inner = deadline(0.2)
    timer = protocol._timer
    for _ in range(50):  # prompt requests on one kept-alive connection
        protocol.data_received(b"POST ...")
        protocol.request_started()
        protocol.request_done()
    assert protocol._timer is timer  # no timer set up (or cancelled) per request
    await asyncio.sleep(0.1)
    protocol.data_received(b"GET /v1/state HTTP/1.1\r\n")  # a head that then stalls
    await asyncio.sleep(0.15)  # the first timer fires early for it and waits for the rest
    inner.force_close.assert_not_called()
    await asyncio.sleep(0.15)
    inner.force_close.assert_called_once()


async def test_a_request_being_handled_is_never_cut_off() -> None:
    protocol, inner = deadline(0.05)
    protocol.data_received(b"POST ...")
    protocol.request_started()  # a long handler (its body has a timeout of its own)
    await asyncio.sleep(0.15)
    inner.force_close.assert_not_called()
