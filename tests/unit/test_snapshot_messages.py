"""A Snapshot waiting for its step says what the Execution has checkpointed so far, in words."""

from stratarouter_runtime.operator.handlers.snapshots import not_reached


def test_before_any_checkpoint_it_says_so_instead_of_none() -> None:
    assert (
        not_reached("train", 5, None)
        == "Execution train has not reached step 5 yet (no checkpoint yet); waiting"
    )


def test_after_some_checkpoints_it_names_the_last_step() -> None:
    assert "(its last checkpoint is step 3)" in not_reached("train", 5, 3)
