from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def start_ray() -> None:
    """A private local Ray (never an existing cluster), sized for the 2-core machine."""
    assert not ray.is_initialized(), "Ray is already running: another test did not shut it down"
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    # ray.init takes seconds here: one Ray per test module, one data root per test.
    start_ray()
    try:
        yield
    finally:
        ray.shutdown()


def tensorboard_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one tag as TensorBoard shows it, purges applied."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]
