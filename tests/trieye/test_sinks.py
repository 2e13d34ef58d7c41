"""Each sink against its real backend, read back from the files it wrote."""

import io
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.files import fill_disk, small_disk
from trieye.sinks import ConsoleSink, MlflowSink, TensorBoardSink

from .conftest import event_file_points, tensorboard_scalars


def test_mlflow_sink_chunks_big_writes_and_never_repeats_a_step(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    cursors: list[dict[str, int]] = []
    sink = MlflowSink(client, run_id, {"old": 5}, lambda cursor, skipped: cursors.append(cursor))
    many = {f"m/{i:04d}": float(i) for i in range(1500)}  # above log_batch's 1000 limit
    sink.write({**many, "old": 1.0}, step=5)  # "old" already has step 5
    sink.write({"old": 2.0, "m/0001": 9.0}, step=6)
    sink.write({"old": 3.0}, step=6)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m/1499")] == [(5, 1499.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "old")] == [(6, 2.0)]
    assert sink.skipped == 2
    assert cursors[-1] == {"old": 6, **dict.fromkeys(many, 5), "m/0001": 6}
    assert len(cursors) == 2  # written before each write that logged something


def test_tensorboard_sink_purges_the_steps_a_resumed_run_rewrites(tmp_path: Path) -> None:
    first = TensorBoardSink(tmp_path)
    for step in (1, 2, 3):
        first.write({"loss": float(step)}, step)
    first.close()
    resumed = TensorBoardSink(tmp_path, purge_step=2)
    resumed.write({"loss": 20.0}, 2)
    resumed.close()
    assert tensorboard_scalars(tmp_path, "loss") == [(1, 1.0), (2, 20.0)]


# TensorBoard's writer thread dies of the refused write and says so: that is the outage.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_tensorboard_sink_on_a_full_disk_leaves_no_empty_event_file_and_purges_once(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        log_dir = disk / "tb"
        earlier = TensorBoardSink(log_dir)
        for step in (1, 2, 3):
            earlier.write({"loss": float(step)}, step)
        earlier.close()
        resumed = TensorBoardSink(log_dir, purge_step=2)
        filler = fill_disk(disk)
        with pytest.raises(OSError, match="No space left"):
            resumed.write({"loss": 20.0}, 2)  # not even its purge reached the disk
        filler.unlink()
        resumed.write({"loss": 20.0}, 2)
        filler = fill_disk(disk)
        # More than the slack of the event file's last page, so the write cannot fit.
        padding = {f"pad/{i:04d}": 0.0 for i in range(2000)}
        for _ in range(3):
            with pytest.raises(OSError, match="No space left"):
                resumed.write(padding, 3)
        filler.unlink()
        resumed.write({"loss": 30.0}, 3)
        resumed.close()
        # The earlier session's file, the purging one, and the one after the outage.
        assert [bool(points) for points in event_file_points(log_dir)] == [True, True, True]
        assert tensorboard_scalars(log_dir, "loss") == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_console_sink_writes_one_sorted_line() -> None:
    stream = io.StringIO()
    ConsoleSink("run-a", stream).write({"b": 0.123456789, "a": 2.0}, 7)
    assert stream.getvalue() == "[trieye run-a] step 7 | a=2 | b=0.123457\n"
