"""The parts of the sidecar actor, without Ray: the intake, the sink writer and its outages,
the run's lifecycle (against a real MLflow sqlite store) and its checkpoints."""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trieye import MetricSpec, RunContext, TrieyeConfig
from trieye.aggregation import MetricPoint
from trieye.intake import Intake
from trieye.run_checkpoints import RunCheckpoints
from trieye.run_lifecycle import RunLifecycle
from trieye.run_record import RunRecord
from trieye.sink_writer import Outages, SinkWriter

CONFIG = TrieyeConfig(metrics=[MetricSpec(name="loss", aggregation="sum")])


def own_and_loss(points: list[MetricPoint]) -> set[tuple[str, float, int]]:
    """The points other than the sidecar's CPU and memory, whose values are not known."""
    return {(p.name, p.value, p.step) for p in points if not p.name.startswith("system/")}


def test_a_restarted_intake_counts_exactly_the_events_the_dead_process_took() -> None:
    # Written before the crash: events 0..20 of client "c"; the dead process also had 20..30.
    record = RunRecord(
        app_name="app",
        run_name="r",
        mlflow_experiment_id="1",
        mlflow_run_id="abc",
        counters={"events": 20, "dropped_nonfinite": 0, "dropped_invalid": 0, "dropped_stale": 0},
        client_events={"c": [(0, 20)]},
    )
    intake = Intake(CONFIG, record, restarted=True, run_name="r", clock=lambda: 0.0)
    assert intake.restarts == 1
    intake.receive([("loss", 1.0, 31, None)] * 5, "c", first=30, acked=20)
    assert intake.lost_events == 0  # 20..30 may still be on its way
    intake.receive([("loss", 2.0, 36, None)] * 5, "c", first=35, acked=35)
    assert intake.lost_events == 10
    intake.receive([("loss", 2.0, 36, None)] * 5, "c", first=35, acked=35)  # Ray's retry
    drained = intake.drain()
    # After a restart the sidecar's own CPU and memory wait for a step past the first one seen.
    assert {p.name for p in drained.points} == {"loss", "trieye/restarts", "trieye/lost_events"}
    assert own_and_loss(drained.points) == {
        ("loss", 15.0, 36),
        ("trieye/restarts", 1.0, 36),
        ("trieye/lost_events", 10.0, 36),
    }
    assert (drained.delivered, drained.lost_events) == ({"c": [(0, 40)]}, 10)
    assert intake.progress() == (36, {**record.counters, "events": 30})
    intake.receive([("loss", 1.0, 37, None)], "c", first=40, acked=40)
    assert own_and_loss(intake.drain().points) == {("loss", 1.0, 37)}  # no change, no point


def test_an_intake_is_due_when_the_step_has_advanced_flush_every_steps() -> None:
    config = TrieyeConfig(flush_every_seconds=None, flush_every_steps=10)
    intake = Intake(config, None, restarted=False, run_name="r", clock=lambda: 0.0)
    assert [intake.receive([("x", 1.0, step, None)], None, 0, 0) for step in (1, 5, 9)] == [
        False,
        False,
        True,
    ]
    drained = intake.drain()
    assert own_and_loss(drained.points) == {("x", 1.0, 9)}
    assert {p.name for p in drained.points} - {"x"} == {
        "system/sidecar/cpu_percent",
        "system/sidecar/rss_mb",
    }
    assert [intake.receive([("x", 1.0, step, None)], None, 0, 0) for step in (15, 19)] == [
        False,
        True,
    ]


class Disk:
    """A sink's disk, full while `full` is set; the sink's points in the order written."""

    def __init__(self) -> None:
        self.full = False
        self.written: list[tuple[int, dict[str, float]]] = []


class SinkOn:
    """A sink that writes to a `Disk`; `refuse_with` raises instead, as a bug in a sink would."""

    def __init__(self, disk: Disk, refuse_with: Exception | None = None) -> None:
        self.disk = disk
        self.refuse_with = refuse_with

    def write(self, metrics: Mapping[str, float], step: int) -> None:
        if self.refuse_with is not None:
            raise self.refuse_with
        if self.disk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.disk.written.append((step, dict(metrics)))

    def close(self) -> None:
        pass


def points(step: int, *names: str) -> list[MetricPoint]:
    return [MetricPoint(name, float(step), step, frozenset({"mlflow"})) for name in names]


def test_a_refusing_disk_holds_points_in_order_and_reports_the_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = Disk()
    writer = SinkWriter({"mlflow": SinkOn(disk)}, Outages("r"))
    writer.write(points(1, "a"))
    disk.full = True
    for step in (2, 3, 4):
        writer.write(points(step, "a", "b"))
    assert writer.held_points() == {"mlflow": 6}
    disk.full = False
    writer.write(points(5, "a"))
    assert disk.written == [
        (1, {"a": 1.0}),
        (2, {"a": 2.0, "b": 2.0}),
        (3, {"a": 3.0, "b": 3.0}),
        (4, {"a": 4.0, "b": 4.0}),
        (5, {"a": 5.0}),
    ]
    assert (writer.held_points(), writer.points_lost) == ({"mlflow": 0}, {})
    assert [r.getMessage() for r in caplog.records] == [
        "writing mlflow of run 'r' failed (OSError: [Errno 28] No space left on device); held "
        "and retried at every flush, the run goes on",
        "writing mlflow of run 'r' works again",
    ]


def test_a_long_outage_drops_the_oldest_held_steps_and_counts_them() -> None:
    disk = Disk()
    writer = SinkWriter({"mlflow": SinkOn(disk)}, Outages("r"), max_held_steps=2)
    disk.full = True
    for step in (1, 2, 3):
        writer.write(points(step, "a", "b"))
    disk.full = False
    writer.write([])
    assert disk.written == [(2, {"a": 2.0, "b": 2.0}), (3, {"a": 3.0, "b": 3.0})]
    assert writer.points_lost == {"mlflow": 2}


def test_a_sink_error_that_is_not_the_disk_is_raised() -> None:
    writer = SinkWriter({"mlflow": SinkOn(Disk(), KeyError("a bug"))}, Outages("r"))
    with pytest.raises(KeyError, match="a bug"):
        writer.write(points(1, "a"))


@pytest.fixture
def ctx(root: Path) -> RunContext:
    return RunContext(root_dir=root, app_name="app", run_name="life")


def lifecycle(
    ctx: RunContext, last_step: int = -1, kind: str | None = "custom_model_development"
) -> RunLifecycle:
    record = RunRecord.load(ctx.run_json) if ctx.exists() else None
    return RunLifecycle(
        ctx,
        record,
        0,
        Outages(ctx.run_name),
        lambda: (last_step, {"events": 3}),
        experiment_kind=kind,
    )


def test_a_run_is_created_once_ended_with_its_status_and_reopened_by_a_later_session(
    ctx: RunContext,
) -> None:
    first = lifecycle(ctx, last_step=7)
    assert not ctx.exists()  # nothing is written before the run opens
    assert (first.open(), first.open()) == (True, False)
    assert first.log_params({"train": {"lr": 0.1}, "seed": 1}) == []
    first.set_status("FAILED", "failed: OSError: disk full")
    first.log.detach()
    mlflow = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    record = json.loads(ctx.run_json.read_text())
    run = mlflow.get_run(record["mlflow_run_id"])
    assert (run.info.status, record["status"], record["starts"]) == ("FAILED", "FAILED", 1)
    assert (
        run.data.tags["trieye.end_reason"] == record["end_reason"] == "failed: OSError: disk full"
    )
    assert (record["last_step"], record["counters"]) == (7, {"events": 3})
    assert run.data.params == {"train.lr": "0.1", "seed": "1"}

    second = lifecycle(ctx)
    assert second.open()
    record = json.loads(ctx.run_json.read_text())
    run = mlflow.get_run(record["mlflow_run_id"])
    assert (run.info.status, record["status"], record["end_reason"]) == ("RUNNING", "RUNNING", None)
    assert "trieye.end_reason" not in run.data.tags
    assert second.log_params({"train": {"lr": 0.2}, "seed": 1}) == ["train.lr"]
    second.close()
    record = json.loads(ctx.run_json.read_text())
    run = mlflow.get_run(record["mlflow_run_id"])
    assert (run.info.status, record["status"], record["starts"]) == ("FINISHED", "FINISHED", 2)
    assert record["last_step"] == 7  # never goes back
    assert run.data.tags["param_changed.train.lr"] == "0.2"
    assert run.data.params["train.lr"] == "0.1"
    with pytest.raises(ValueError, match="not one of"):
        second.set_status("DONE")


def test_a_stopped_run_is_finished_in_mlflow_stopped_in_run_json_and_says_why(
    ctx: RunContext,
) -> None:
    run = lifecycle(ctx)
    run.set_status("STOPPED", "stopped by SIGTERM")
    run.close()  # a status was set: close keeps it
    record = json.loads(ctx.run_json.read_text())
    mlrun = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri).get_run(record["mlflow_run_id"])
    assert (mlrun.info.status, record["status"]) == ("FINISHED", "STOPPED")
    assert mlrun.data.tags["trieye.end_reason"] == record["end_reason"] == "stopped by SIGTERM"
    assert mlrun.info.end_time is not None


def test_the_experiment_is_of_the_configured_kind_in_a_new_store_and_an_existing_one(
    tmp_path: Path, ctx: RunContext
) -> None:
    new = RunContext(root_dir=tmp_path / "empty", app_name="app", run_name="first")
    lifecycle(new).open()
    client = MlflowClient(tracking_uri=new.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("app")
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # An existing store: the experiment made by an earlier version, or switched in the UI.
    client = MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
    experiment_id = client.create_experiment(
        "app", tags={"mlflow.experimentKind": "genai_development"}
    )
    untouched = lifecycle(ctx, kind=None)
    untouched.open()
    untouched.log.detach()
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "genai_development"
    resumed = lifecycle(ctx)
    resumed.open()
    resumed.log.detach()
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_run_tags_are_set_and_a_later_value_replaces_an_earlier_one(ctx: RunContext) -> None:
    run = lifecycle(ctx)
    run.set_tags({"mlflow.source.name": "prog train", "mlflow.user": "ada"})
    run.set_tags({"mlflow.source.name": "prog train --again"})
    run.log.detach()
    record = json.loads(ctx.run_json.read_text())
    tags = (
        MlflowClient(tracking_uri=ctx.mlflow_tracking_uri)
        .get_run(record["mlflow_run_id"])
        .data.tags
    )
    assert (tags["mlflow.source.name"], tags["mlflow.user"]) == ("prog train --again", "ada")


def test_a_refused_run_json_is_reported_once_and_kept_current_in_memory(
    ctx: RunContext, caplog: pytest.LogCaptureFixture
) -> None:
    run = lifecycle(ctx)
    run.open()
    run.log.detach()
    ctx.run_json.unlink()
    ctx.run_json.mkdir()  # the rename onto it fails as a refused write would
    caplog.clear()
    run.set_status("FAILED")
    run.save_record()
    with pytest.raises(IsADirectoryError):
        run.save_record(strict=True)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "writing run.json of run 'life' failed"
    ]
    ctx.run_json.rmdir()
    run.save_record()
    assert json.loads(ctx.run_json.read_text())["status"] == "FAILED"
    assert caplog.records[-1].getMessage() == "writing run.json of run 'life' works again"


def test_checkpoints_are_recorded_in_run_json_and_a_load_says_where_tensorboard_purges(
    ctx: RunContext,
) -> None:
    run = lifecycle(ctx)
    intake = Intake(CONFIG, None, restarted=False, run_name="life", clock=lambda: 0.0)
    checkpoints = RunCheckpoints(CONFIG, intake, run, threading.RLock())
    intake.receive([("loss", 1.0, 4, None)], None, 0, 0)
    intake.drain()
    path = checkpoints.save(4, {"w": 1}, None, is_best=False)
    run.log.detach()
    record = json.loads(ctx.run_json.read_text())
    assert (record["last_checkpoint"], record["last_checkpoint_step"]) == (
        "checkpoints/ckpt_000000000004.pt",
        4,
    )
    assert path == ctx.checkpoint_dir / "ckpt_000000000004.pt"

    again = lifecycle(ctx)
    fresh = Intake(CONFIG, None, restarted=False, run_name="life", clock=lambda: 0.0)
    resumed = RunCheckpoints(CONFIG, fresh, again, threading.RLock())
    loaded = resumed.load_latest()
    assert loaded is not None
    assert loaded.state == {"w": 1}
    assert (resumed.purge_step, resumed.resumed_from_step) == (5, 4)
    # The loss's last point was at step 4: a late event of step 4 is not written again.
    fresh.receive([("loss", 5.0, 4, None)], None, 0, 0)
    assert own_and_loss(fresh.drain().points) == set()

    for path in ctx.checkpoint_dir.iterdir():
        path.unlink()
    empty = RunCheckpoints(CONFIG, fresh, again, threading.RLock())
    assert empty.load_latest() is None
    assert (empty.purge_step, empty.resumed_from_step) == (0, None)


@pytest.fixture(autouse=True)
def _trieye_logs_propagate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trieye")
