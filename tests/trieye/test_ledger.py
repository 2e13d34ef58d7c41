"""The delivery ledger: which events of each client a restarted sidecar still expects, which
arrive twice, and exactly how many died with the old process."""

from pathlib import Path

from trieye.aggregation import MetricAggregator
from trieye.ledger import DeliveryLedger
from trieye.run_record import RunRecord


def test_batches_in_order_lose_nothing() -> None:
    ledger = DeliveryLedger()
    assert ledger.receive("a", 0, 10) == [(0, 10)]
    assert ledger.receive("a", 10, 5) == [(0, 5)]
    assert ledger.receive("b", 0, 3) == [(0, 3)]
    assert ledger.settle("a", 15) == 0
    assert ledger.state() == {"a": [(0, 15)], "b": [(0, 3)]}


def test_events_received_after_the_last_write_are_lost_once_acked() -> None:
    # Written before the crash: 0..20. The dead process also had 20..30, never written.
    ledger = DeliveryLedger({"a": [[0, 20]]})
    assert ledger.receive("a", 30, 10) == [(0, 10)]
    assert ledger.settle("a", 20) == 0  # the client does not know yet about 20..30
    assert ledger.settle("a", 40) == 10
    assert ledger.settle("a", 40) == 0  # counted once
    assert ledger.state() == {"a": [(0, 40)]}


def test_a_retried_batch_arriving_late_is_not_lost() -> None:
    # Ray runs retries out of order: the newer batch 40..50 comes before the retried 20..40.
    ledger = DeliveryLedger({"a": [[0, 20]]})
    assert ledger.receive("a", 40, 10) == [(0, 10)]
    assert ledger.receive("a", 20, 20) == [(0, 20)]
    assert ledger.settle("a", 50) == 0
    assert ledger.state() == {"a": [(0, 50)]}


def test_a_retried_batch_that_was_written_is_not_ingested_twice() -> None:
    ledger = DeliveryLedger({"a": [[0, 20]]})
    assert ledger.receive("a", 10, 10) == []
    assert ledger.receive("a", 15, 10) == [(5, 10)]
    assert ledger.state() == {"a": [(0, 25)]}


def test_a_client_without_any_write_lost_everything_before_its_batch() -> None:
    ledger = DeliveryLedger({"other": [[0, 5]]})
    assert ledger.receive("a", 30, 10) == [(0, 10)]
    assert ledger.settle("a", 40) == 30


def test_gaps_between_several_spans_are_summed() -> None:
    ledger = DeliveryLedger({"a": [[10, 20], [0, 5], [30, 35], [20, 25]]})
    assert ledger.state() == {"a": [(0, 5), (10, 25), (30, 35)]}
    assert ledger.settle("a", 40) == 5 + 5 + 5


def test_a_closed_client_is_forgotten() -> None:
    ledger = DeliveryLedger()
    ledger.receive("a", 0, 4)
    ledger.forget("a")
    ledger.forget("never-seen")
    assert ledger.state() == {}


def test_own_points_stay_out_of_the_counters() -> None:
    agg = MetricAggregator([], now=0.0)
    agg.add_batch([("trieye/restarts", 1.0, 7, None)], count=False)
    assert agg.counters["events"] == 0
    assert agg.max_step == 7
    [point] = agg.drain(now=1.0)
    assert (point.name, point.value, point.step) == ("trieye/restarts", 1.0, 7)


def test_run_json_without_the_restart_fields_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(
        '{"app_name": "app", "run_name": "old", "mlflow_experiment_id": "1",'
        ' "mlflow_run_id": "abc", "last_step": 12}'
    )
    record = RunRecord.load(path)
    assert (record.restarts, record.lost_events, record.client_events) == (0, 0, {})
    record.client_events = {"a": [(0, 3)]}
    record.save(path)
    assert RunRecord.load(path).client_events == {"a": [(0, 3)]}
