"""Which events of AlphaTriangle become which metrics in the trieye sidecar."""

from __future__ import annotations

from trieye import MetricSpec, TrieyeConfig

EPISODE_END = "episode_end"


def _episode(name: str, key: str, aggregation: str = "mean") -> MetricSpec:
    return MetricSpec(name=name, source=EPISODE_END, context_key=key, aggregation=aggregation)


def metric_config() -> TrieyeConfig:
    """Metrics of a training run; anything not listed here is logged as its mean."""
    return TrieyeConfig(
        metrics=[
            _episode("episode/score", "score"),
            _episode("episode/score_max", "score", "max"),
            _episode("episode/length", "length"),
            _episode("episode/triangles_cleared", "triangles_cleared"),
            _episode("episode/simulations", "simulations"),
            _episode("episode/weight_version", "weight_version", "min"),
            _episode("episode/count", "score", "count"),
            MetricSpec(name="speed/episodes_per_s", source=EPISODE_END, aggregation="rate"),
            MetricSpec(name="speed/moves_per_s", source="selfplay/moves", aggregation="rate"),
            MetricSpec(
                name="speed/samples_trained_per_s", source="learner/samples", aggregation="rate"
            ),
            MetricSpec(name="buffer/size", aggregation="latest"),
            MetricSpec(name="progress/episodes", aggregation="latest"),
            MetricSpec(name="progress/samples_generated", aggregation="latest"),
            MetricSpec(name="progress/samples_trained", aggregation="latest"),
        ],
    )
