"""``get_history(id)`` without a limit pages until the backend runs dry, whatever page size it serves."""

from stratarouter_runtime import Checkpoint, StateManager
from stratarouter_runtime.state.backends.memory import MemoryBackend
from stratarouter_runtime.state.config import StateConfig


class SmallPages(MemoryBackend):
    """A backend that caps its pages, as the operator's checkpoint API does (1,000 per request)."""

    async def get_history(self, execution_id: str, after_step: int | None, limit: int) -> list[Checkpoint]:
        return await super().get_history(execution_id, after_step, min(limit, 3))


async def test_complete_history_from_a_backend_with_small_pages() -> None:
    async with StateManager(backend=SmallPages(StateConfig())) as state:
        for step in range(10):
            await state.checkpoint("e", step, {"s": step})
        assert [c.step for c in await state.get_history("e")] == list(range(10))
        assert [c.step for c in await state.get_history("e", after_step=6)] == [7, 8, 9]
