"""The http backend's retry loop against a real (closed) socket: bounded, then StoreUnavailableError."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratarouter_dev.ports import free_port
from stratarouter_runtime.state import StateManager
from stratarouter_runtime.state.errors import StoreUnavailableError


async def test_unreachable_api_gives_up_after_the_retry_window(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    state = StateManager(
        backend="http",
        api_url=f"http://127.0.0.1:{free_port()}",
        retry_timeout=1.0,
        extra={"token_file": str(token), "execution_id": "ns/run"},
    )
    with pytest.raises(StoreUnavailableError, match="cannot reach the checkpoint API"):
        await state.checkpoint("ns/run", 1, {"a": 1})
    await state.close()
