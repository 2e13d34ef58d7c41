"""Which events of AlphaTriangle become which metrics in the trieye sidecar."""

from __future__ import annotations

from alphatriangle import metric_names as m
from trieye import MetricSpec, TrieyeConfig


def _episode(name: str, key: str, aggregation: str = "mean") -> MetricSpec:
    return MetricSpec(name=name, source=m.EPISODE_END, context_key=key, aggregation=aggregation)


def metric_config() -> TrieyeConfig:
    """Metrics of a training run; anything not listed here is logged as its mean."""
    return TrieyeConfig(
        metrics=[
            _episode(m.EPISODE_SCORE, m.CTX_SCORE),
            _episode(m.EPISODE_SCORE_MAX, m.CTX_SCORE, "max"),
            _episode(m.EPISODE_LENGTH, m.CTX_LENGTH),
            _episode(m.EPISODE_TRIANGLES_CLEARED, m.CTX_TRIANGLES_CLEARED),
            _episode(m.EPISODE_SIMULATIONS, m.CTX_SIMULATIONS),
            _episode(m.EPISODE_WEIGHT_VERSION, m.CTX_WEIGHT_VERSION, "min"),
            _episode(m.EPISODE_COUNT, m.CTX_SCORE, "count"),
            MetricSpec(name=m.SPEED_EPISODES, source=m.EPISODE_END, aggregation="rate"),
            MetricSpec(name=m.SPEED_MOVES, source=m.SELFPLAY_MOVES, aggregation="rate"),
            MetricSpec(name=m.SPEED_SAMPLES_TRAINED, source=m.LEARNER_SAMPLES, aggregation="rate"),
            MetricSpec(name=m.BUFFER_SIZE, aggregation="latest"),
            MetricSpec(name=m.EPISODES, aggregation="latest"),
            MetricSpec(name=m.SAMPLES_GENERATED, aggregation="latest"),
            MetricSpec(name=m.SAMPLES_TRAINED, aggregation="latest"),
            # Per step, the mean over the workers (each logs its own window and its own games)
            # and over the learner's steps within one flush.
            MetricSpec(name=m.LEARN_VALUE_EXPLAINED_VARIANCE, aggregation="mean"),
            MetricSpec(name=m.LEARN_SEARCH_KL, aggregation="mean"),
            MetricSpec(name=m.LEARN_SAMPLE_AGE, aggregation="mean"),
            MetricSpec(name=m.LEARN_TIMES_SAMPLED_AT_EVICTION, aggregation="mean"),
            MetricSpec(name=m.LEARN_AUGMENTED, aggregation="mean"),
            MetricSpec(name=m.MUZERO_REWARD_RANK_CLEAR, aggregation="latest"),
            MetricSpec(name=m.MUZERO_REWARD_RANK_PAIRS, aggregation="latest"),
            MetricSpec(name=m.MUZERO_Q_RANK_CLEAR, aggregation="latest"),
            MetricSpec(name=m.MUZERO_PRIOR_RANK_CLEAR, aggregation="latest"),
            MetricSpec(name=m.MUZERO_Q_SPREAD, aggregation="latest"),
        ],
    )
