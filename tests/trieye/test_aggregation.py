"""Exact-value tests of the aggregator, with an explicit clock (no Ray, no I/O)."""

import math

import pytest

from trieye import MetricAggregator, MetricPoint, MetricSpec, RawMetricEvent, TrieyeConfig

EPISODE_SPECS = [
    MetricSpec(name="episode/len_mean", source="episode_end", context_key="length"),
    MetricSpec(
        name="episode/len_max", source="episode_end", context_key="length", aggregation="max"
    ),
    MetricSpec(
        name="episode/len_min", source="episode_end", context_key="length", aggregation="min"
    ),
    MetricSpec(
        name="episode/len_sum", source="episode_end", context_key="length", aggregation="sum"
    ),
    MetricSpec(name="episode/count", source="episode_end", aggregation="count"),
    MetricSpec(name="episode/per_second", source="episode_end", aggregation="rate"),
    MetricSpec(name="lr", aggregation="latest", targets=frozenset({"console"})),
]


def by_name(points: list[MetricPoint]) -> dict[str, tuple[float, int]]:
    return {p.name: (p.value, p.step) for p in points}


def test_every_aggregation_over_one_window() -> None:
    agg = MetricAggregator(EPISODE_SPECS, now=100.0)
    for step, length in [(3, 10), (5, 30), (4, 20), (5, 4)]:
        agg.add("episode_end", 1.0, step, {"length": length, "tag": "w0"})
    agg.add("lr", 0.3, 7, None)
    agg.add("lr", 0.2, 6, None)  # arrives later but is older: "latest" is by step
    points = by_name(agg.drain(now=104.0))
    assert points == {
        "episode/len_mean": (16.0, 5),
        "episode/len_max": (30.0, 5),
        "episode/len_min": (4.0, 5),
        "episode/len_sum": (64.0, 5),
        "episode/count": (4.0, 5),
        "episode/per_second": (1.0, 5),  # 4 events over 4 seconds
        "lr": (0.3, 7),
    }
    assert agg.drain(now=105.0) == []


def test_rate_counts_seconds_since_that_metrics_previous_point() -> None:
    spec = MetricSpec(name="samples_per_s", source="samples", aggregation="rate")
    agg = MetricAggregator([spec], now=0.0)
    agg.add("samples", 30.0, 1, None)
    assert by_name(agg.drain(now=2.0)) == {"samples_per_s": (15.0, 1)}
    agg.add("samples", 10.0, 2, None)
    agg.add("samples", 20.0, 3, None)
    assert by_name(agg.drain(now=12.0)) == {"samples_per_s": (3.0, 3)}


def test_unknown_events_get_the_default_mean_to_mlflow_and_tensorboard() -> None:
    agg = MetricAggregator([], now=0.0)
    agg.add_batch([("loss/policy", 0.5, 10, None), ("loss/policy", 1.5, 11, None)])
    [point] = agg.drain(now=1.0)
    assert point == MetricPoint("loss/policy", 1.0, 11, frozenset({"mlflow", "tensorboard"}))


def test_non_finite_and_invalid_values_are_dropped_and_counted() -> None:
    agg = MetricAggregator(EPISODE_SPECS[:1], now=0.0)
    agg.add("loss", math.nan, 1, None)
    agg.add("loss", math.inf, 1, None)
    agg.add("loss", 2.0, 1, None)
    agg.add("episode_end", 1.0, 1, {"length": -math.inf})
    agg.add("episode_end", 1.0, 1, {"length": "long"})
    agg.add("episode_end", 1.0, 1, {})
    agg.add("episode_end", 1.0, 2, {"length": 8})
    agg.add("bad name!", 1.0, 1, None)
    assert by_name(agg.drain(now=1.0)) == {"loss": (2.0, 1), "episode/len_mean": (8.0, 2)}
    assert agg.counters == {
        "events": 8,
        "dropped_nonfinite": 3,
        "dropped_invalid": 3,
        "dropped_stale": 0,
    }


def test_late_events_are_held_until_the_step_moves_past_the_last_point() -> None:
    agg = MetricAggregator([], now=0.0)
    agg.add("loss", 1.0, 10, None)
    assert by_name(agg.drain(now=1.0)) == {"loss": (1.0, 10)}
    agg.add("loss", 3.0, 9, None)  # a lagging worker's event
    assert agg.drain(now=2.0) == []
    agg.add("loss", 5.0, 12, None)
    assert by_name(agg.drain(now=3.0)) == {"loss": (4.0, 12)}
    agg.add("loss", 7.0, 8, None)
    assert agg.drain(now=4.0, final=True) == []
    assert agg.counters["dropped_stale"] == 1


def test_state_dict_round_trip_continues_counters_and_steps() -> None:
    agg = MetricAggregator([], now=0.0)
    agg.add_batch([("a", 1.0, 5, None), ("a", math.nan, 6, None)])
    agg.drain(now=1.0)
    state = agg.state_dict()
    assert state == {
        "last_emitted_step": {"a": 5},  # the NaN at step 6 contributed nothing
        "counters": {"events": 2, "dropped_nonfinite": 1, "dropped_invalid": 0, "dropped_stale": 0},
    }
    resumed = MetricAggregator([], now=0.0)
    resumed.load_state_dict(state)
    resumed.add("a", 2.0, 5, None)  # a step that already has its point: held, never repeated
    assert resumed.drain(now=1.0) == []
    resumed.add("a", 4.0, 6, None)
    assert by_name(resumed.drain(now=2.0)) == {"a": (3.0, 6)}
    assert resumed.counters["events"] == 4


def test_raw_event_wire_form() -> None:
    event = RawMetricEvent(name="episode_end", global_step=3, context={"length": 4, "tag": "w1"})
    assert event.to_wire() == ("episode_end", 1.0, 3, {"length": 4, "tag": "w1"})


def test_config_defaults_and_validation() -> None:
    config = TrieyeConfig()
    assert config.metrics == []
    assert config.flush_every_seconds == 2.0
    with pytest.raises(ValueError, match="unique"):
        TrieyeConfig(metrics=[MetricSpec(name="a"), MetricSpec(name="a", aggregation="max")])
    with pytest.raises(ValueError, match="flush_every"):
        TrieyeConfig(flush_every_seconds=None)
    with pytest.raises(ValueError, match="invalid metric name"):
        MetricSpec(name="a|b")
