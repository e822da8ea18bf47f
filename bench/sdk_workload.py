"""The data every contender writes: a ~1 KiB JSON state, and a growing agent transcript.

Both are deterministic (seeded), so every contender stores the same bytes and runs are comparable.
"""

from __future__ import annotations

import json
import random
from typing import Any

STATE_TARGET_BYTES = 1024

_VOCABULARY = (
    "the agent calls a tool and reads the result before it plans its next step with care while the "
    "user waits for an answer about invoices orders refunds shipping delays weather forecasts flight "
    "bookings database rows a failing test a stack trace memory usage latency budget quarterly report "
    "summary table chart customer account password reset error code retry backoff queue worker pod "
    "node cluster deployment rollout canary metrics dashboard alert threshold incident postmortem "
    "search index embedding vector cache hit miss token limit context window prompt completion"
)
_WORDS = tuple(_VOCABULARY.split())


def make_state(step: int) -> dict[str, Any]:
    """A JSON state of about ``STATE_TARGET_BYTES`` when serialised, different at each step."""
    rng = random.Random(step)
    notes = " ".join(rng.choice(_WORDS) for _ in range(90))
    state: dict[str, Any] = {
        "current_step": step,
        "status": "in_progress",
        "progress": step % 100,
        "results": {"score": round(rng.random(), 6), "items": [rng.randrange(10_000) for _ in range(8)]},
        "notes": notes,
    }
    size = len(json.dumps(state))
    # Trim or pad the free text so the serialised size lands on the target.
    if size > STATE_TARGET_BYTES:
        state["notes"] = notes[: len(notes) - (size - STATE_TARGET_BYTES)]
    else:
        state["notes"] = notes + "." * (STATE_TARGET_BYTES - size)
    return state


def transcript_message(step: int) -> dict[str, str]:
    """The message an agent run appends at ``step``: alternating user and assistant turns."""
    rng = random.Random(1_000_003 + step)
    role = "user" if step % 2 == 0 else "assistant"
    words = rng.randrange(20, 70)
    return {"role": role, "content": " ".join(rng.choice(_WORDS) for _ in range(words))}


def transcript_state(messages: list[dict[str, str]], step: int) -> dict[str, Any]:
    """The full state of the agent run after ``step``: every message so far plus a little bookkeeping."""
    return {"step": step, "status": "in_progress", "messages": messages}
