"""What a hostile or broken client can cost the checkpoint API: memory, connections, slots.

The API runs in a process of its own (``tests/unit/api_child.py``: ``start_api`` on the memory store),
so its peak RSS can be read from ``/proc/PID/status`` (VmHWM, reset through ``clear_refs`` before each
measurement) without the test's own allocations in it.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stratarouter_runtime.state import StateManager
from tests.fixtures.api_child import TOKEN, Child

MiB = 1024 * 1024


def many_empty_objects(size: int) -> bytes:
    """A checkpoint body of about ``size`` bytes whose state is ``[{},{},...]``: ~3 bytes of JSON for
    each 64-byte Python dict, the costliest JSON to parse per byte."""
    count = (size - 30) // 3
    return b'{"step":1,"state":[' + b"{}," * count + b"{}]}"


def chunks(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def test_an_oversized_body_is_refused_before_it_is_read_or_parsed(start_child: Callable[..., Child]) -> None:
    child = start_child()
    child.checkpoint(0, {"warm": True})
    body = many_empty_objects(20 * MiB)
    (status, _, answer), grew = child.peak_growth(lambda: child.request("POST", "/v1/checkpoint", body))
    assert (status, answer["error"]) == (400, "StateTooLargeError"), answer
    assert "over the limit" in answer["message"], answer
    assert grew < 3 * 20, f"peak RSS rose {grew:.0f} MiB for a 20 MiB body"


def test_an_oversized_chunked_body_is_refused_while_it_streams(start_child: Callable[..., Child]) -> None:
    """No Content-Length to refuse up front: reading stops at the limit, well before the end."""
    child = start_child()
    child.checkpoint(0, {"warm": True})
    body = many_empty_objects(20 * MiB)
    (status, _, answer), grew = child.peak_growth(
        lambda: child.request("POST", "/v1/checkpoint", chunks(body))  # no length: sent chunked
    )
    assert (status, answer["error"]) == (400, "StateTooLargeError"), answer
    assert "over the limit" in answer["message"], answer
    assert grew < 3 * 20, f"peak RSS rose {grew:.0f} MiB for a 20 MiB chunked body"


def test_a_state_within_the_limit_is_still_stored(start_child: Callable[..., Child]) -> None:
    child = start_child()
    child.checkpoint(3, "x" * (15 * MiB))
    status, _, answer = child.request("GET", "/v1/checkpoint")
    assert (status, answer["step"], len(answer["state"])) == (200, 3, 15 * MiB)


def test_a_compressed_body_is_refused(start_child: Callable[..., Child]) -> None:
    """Nothing is inflated on the API's side: a small gzip body can stand for gigabytes."""
    child = start_child()
    status, _, answer = child.request(
        "POST", "/v1/checkpoint", b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}
    )
    assert (status, answer["error"]) == (415, "UnsupportedMediaType"), answer


def history_page(child: Child, query: str = "") -> dict[str, Any]:
    status, _, answer = child.request("GET", f"/v1/history{query}")
    assert status == 200, answer
    return answer


def test_history_over_the_byte_cap_is_paged(start_child: Callable[..., Child]) -> None:
    child = start_child(STRATA_API_MAX_HISTORY_BYTES=str(1 * MiB))
    for step in range(10):
        child.checkpoint(step, "x" * 300_000)
    page = history_page(child)
    steps = [cp["step"] for cp in page["checkpoints"]]
    assert steps == [0, 1, 2], page.get("nextAfterStep")  # 3 x 300 kB fit in 1 MiB, a fourth does not
    assert page["nextAfterStep"] == 2
    seen = list(steps)
    while page["nextAfterStep"] is not None:
        page = history_page(child, f"?after_step={page['nextAfterStep']}")
        seen += [cp["step"] for cp in page["checkpoints"]]
    assert seen == list(range(10))
    assert all(len(cp["state"]) == 300_000 for cp in page["checkpoints"])
    # a limit the page ends on says where to go on; the end of the history says null
    assert history_page(child, "?limit=2")["nextAfterStep"] == 1
    assert history_page(child, "?after_step=8")["nextAfterStep"] is None


def test_a_checkpoint_larger_than_the_cap_comes_alone(start_child: Callable[..., Child]) -> None:
    child = start_child(STRATA_API_MAX_HISTORY_BYTES=str(1 * MiB))
    child.checkpoint(0, "y" * (2 * MiB))
    child.checkpoint(1, "z")
    page = history_page(child)
    assert ([cp["step"] for cp in page["checkpoints"]], page["nextAfterStep"]) == ([0], 0)
    assert len(page["checkpoints"][0]["state"]) == 2 * MiB


async def test_the_sdk_reads_a_paged_history_whole(start_child: Callable[..., Child], tmp_path: Path) -> None:
    child = start_child(STRATA_API_MAX_HISTORY_BYTES=str(1 * MiB))
    for step in range(10):
        child.checkpoint(step, "x" * 300_000)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    async with StateManager(
        backend="http",
        api_url=f"http://127.0.0.1:{child.port}",
        extra={"token_file": str(token), "execution_id": "ns/run"},
    ) as pod:
        assert [cp.step for cp in await pod.get_history("ns/run")] == list(range(10))
        # one page of at most `limit`: here cut short by the API's byte cap
        assert [cp.step for cp in await pod.get_history("ns/run", limit=1000)] == [0, 1, 2]


def test_reading_history_does_not_hold_every_state_decoded(start_child: Callable[..., Child]) -> None:
    """Ten states of ~1.5 MB that decode to ~35 MB of Python objects each: read a few at a time."""
    child = start_child()
    state = [{"a": i % 10} for i in range(190_000)]
    for step in range(10):
        child.checkpoint(step, state)
    page, grew = child.peak_growth(lambda: history_page(child))
    assert [cp["step"] for cp in page["checkpoints"]] == list(range(10))
    assert grew < 150, f"peak RSS rose {grew:.0f} MiB reading 10 x 1.5 MB of history"


def slow_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.settimeout(0.2)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def seconds_until_closed(sock: socket.socket, trickle: bytes | None, give_up: float) -> float:
    """Send ``trickle`` every 0.5 s (None: nothing) until the server closes the connection."""
    started = time.monotonic()
    while time.monotonic() - started < give_up:
        if trickle is not None:
            try:
                sock.sendall(trickle)
            except OSError:
                return time.monotonic() - started
        if closed_by_server(sock):
            return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"the connection was still open after {give_up:.0f} s")


def test_slow_headers_are_cut_off(start_child: Callable[..., Child]) -> None:
    child = start_child(STRATA_API_HEADER_TIMEOUT_SECONDS="2")
    slow = slow_client(child.port)
    slow.sendall(b"GET /v1/state HTTP/1.1\r\nHost: x\r\n")
    idle = slow_client(child.port)  # connects and never says a word
    assert seconds_until_closed(slow, b"X-Slow: 1\r\n", give_up=12) < 5
    assert seconds_until_closed(idle, None, give_up=5) < 5
    # a prompt client is unaffected, also on a connection kept alive past the header timeout
    conn = http.client.HTTPConnection("127.0.0.1", child.port, timeout=10)
    for _ in range(2):
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status": "ok"}'
        time.sleep(2.5)
    conn.close()


def test_a_body_that_never_arrives_is_timed_out(start_child: Callable[..., Child]) -> None:
    child = start_child(STRATA_API_BODY_TIMEOUT_SECONDS="2")
    sock = socket.create_connection(("127.0.0.1", child.port), timeout=10)
    sock.sendall(
        b"POST /v1/checkpoint HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"step": 1, '
    )
    started = time.monotonic()
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"RequestTimeout" in answer
    assert time.monotonic() - started < 6
    sock.close()


def test_expensive_requests_past_the_cap_get_503_with_retry_after(start_child: Callable[..., Child]) -> None:
    child = start_child(STRATA_API_MAX_EXPENSIVE_REQUESTS="1", STRATA_API_BODY_TIMEOUT_SECONDS="8")
    child.checkpoint(0, {"n": 0})
    # a chunked write holds the one slot while its body trickles in
    holder = socket.create_connection(("127.0.0.1", child.port), timeout=10)
    holder.sendall(
        b"POST /v1/checkpoint HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"ste\r\n'
    )
    time.sleep(0.5)
    status, headers, answer = child.request("GET", "/v1/history")
    assert (status, answer["error"]) == (503, "Busy"), answer
    assert headers.get("Retry-After") == "1"
    holder.close()
    deadline = time.monotonic() + 10
    while (status := child.request("GET", "/v1/history")[0]) == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200  # the slot came back when the holder went away
