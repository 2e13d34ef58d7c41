import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader


def start_ray() -> None:
    """A private local Ray (never an existing cluster), sized for the 2-core machine."""
    assert not ray.is_initialized(), "Ray is already running: another test did not shut it down"
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)


@pytest.fixture(scope="session")
def _shared_ray() -> Iterator[None]:
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_session(_shared_ray: None) -> None:
    """A running Ray, shared by the tests that only need one (ray.init takes seconds here);
    each test has its own data root. A test that restarts Ray (test_resume) shuts it down, and
    the next test starts it again."""
    if not ray.is_initialized():
        start_ray()


@pytest.fixture
def root(tmp_path: Path, tracking_store: Path) -> Path:
    """A data root whose MLflow store for app "app" exists already, as after an earlier run
    (creating one takes MLflow seconds; the other tests' roots start empty)."""
    (tmp_path / "app").mkdir()
    shutil.copy(tracking_store, tmp_path / "app" / "mlflow.db")
    return tmp_path


def tensorboard_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one tag as TensorBoard shows it, purges applied."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def event_file_points(log_dir: Path) -> list[int]:
    """Per TensorBoard event file in ``log_dir`` (oldest first), how many scalar points it holds."""
    return [
        sum(len(event.summary.value) for event in EventFileLoader(str(path)).Load())
        for path in sorted(log_dir.glob("events.out.tfevents.*"))
    ]


def wait_until(condition: Callable[[], object], what: str, seconds: float = 120) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` once ``seconds`` have passed.
    The deadline only keeps a hang from passing unnoticed: generous, never a measurement."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s")
        time.sleep(0.05)
