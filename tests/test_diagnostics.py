"""The ``learn/*`` and ``eval/policy_*`` diagnostics: exact values of each computation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from trianglengin import GameState

from alphatriangle import metric_names as m
from alphatriangle.core.buffer import value_targets
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig, ModelConfig
from alphatriangle.core.diagnostics import (
    FreshPositions,
    diagnose_episodes,
    episode_value_targets,
    explained_variance,
    network_outputs,
    policy_kl,
)
from alphatriangle.core.features import extract_batch, feature_spec, valid_mask_from_grid
from alphatriangle.core.learner import Learner
from alphatriangle.core.muzero.network import MuZeroNet
from alphatriangle.core.muzero.replay import n_step_targets
from alphatriangle.core.muzero.search import MuZeroEvaluator
from alphatriangle.core.network import AlphaTriangleNet
from alphatriangle.core.players import PolicyPlayer, play_game, play_games
from alphatriangle.core.search import (
    NetworkEvaluator,
    SearchSettings,
    UniformEvaluator,
    tree_searcher,
)
from alphatriangle.core.selfplay import EpisodeRecord, SelfPlayGames

TINY = ModelConfig(channels=4, num_blocks=0, extra_hidden=8, policy_hidden=4, value_hidden=8)


def test_explained_variance_by_hand() -> None:
    target = np.array([1.0, 2.0, 3.0, 4.0])
    # Residuals 0, 0, 0, -1: variance 3/16 against the targets' 5/4.
    assert explained_variance(target, np.array([1.0, 2.0, 3.0, 5.0])) == pytest.approx(0.85)
    assert explained_variance(target, target) == 1.0
    assert explained_variance(target, np.full(4, 2.5)) == 0.0  # the mean explains nothing
    assert explained_variance(target, -target) == pytest.approx(1 - 4.0)  # worse than the mean
    assert explained_variance(np.full(3, 7.0), np.zeros(3)) is None
    assert explained_variance(np.zeros(0), np.zeros(0)) is None
    with pytest.raises(ValueError, match="both be"):
        explained_variance(target, np.zeros(3))


def test_policy_kl_by_hand() -> None:
    # Legal actions 0 and 1 with logits 0 and ln 3: the prior is (1/4, 3/4); action 2 is illegal.
    logits = np.tile(np.array([0.0, math.log(3.0), 5.0]), (4, 1))
    legal = np.tile(np.array([True, True, False]), (4, 1))
    target = np.array(
        [
            [0.5, 0.5, 0.0],
            [0.25, 0.75, 0.0],  # the prior itself
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],  # unnormalised: the same as the first row
        ]
    )
    expected = [
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
        0.0,
        math.log(4 / 3),
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
    ]
    np.testing.assert_allclose(policy_kl(target, logits, legal), expected, rtol=1e-12, atol=1e-15)
    on_illegal = policy_kl(np.array([[0.5, 0.0, 0.5]]), logits[:1], legal[:1])
    assert on_illegal[0] == math.inf


def test_fresh_positions_keep_the_newest_pairs() -> None:
    fresh = FreshPositions(capacity=3)
    assert fresh.explained_variance() is None
    fresh.add(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert fresh.explained_variance() == 1.0
    fresh.add(np.array([3.0, 4.0]), np.array([3.0, 0.0]))
    # Kept: targets 2, 3, 4 with predictions 2, 3, 0; residuals 0, 0, 4.
    assert fresh.explained_variance() == pytest.approx(1 - (32 / 9) / (2 / 3))
    fresh.add(np.arange(10.0), np.arange(10.0) + 1.0)  # more than it holds: the last 3 stay
    assert fresh.explained_variance() == pytest.approx(1.0)
    assert sorted(fresh.targets) == [7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="at least 2"):
        FreshPositions(capacity=1)


def _uniform_games(seeds: list[int], versions: dict[int, int] | None = None) -> list[EpisodeRecord]:
    """Real self-play records of a cheap uniform-prior search; ``versions[k]`` is set as the
    weight version before move ``k`` of the lockstep."""
    mcts = MCTSConfig(simulations=4, variant="puct")
    searcher = tree_searcher(UniformEvaluator(), SearchSettings.of(mcts, noise=True))
    games = SelfPlayGames(searcher, seeds, len(seeds))
    records: list[EpisodeRecord] = []
    move = 0
    while games.running or not records:
        games.weight_version = (versions or {}).get(move, games.weight_version)
        records += games.step()
        move += 1
    return records


def test_self_play_records_the_weight_version_of_each_move() -> None:
    [record] = _uniform_games([11], versions={0: 3, 4: 8})
    assert record.length > 4
    np.testing.assert_array_equal(record.weight_versions, [3] * 4 + [8] * (record.length - 4))


def test_diagnosis_of_episodes_is_the_network_on_their_positions() -> None:
    torch.manual_seed(0)
    # Monte-Carlo targets here; n-step ones (the default) have their own test (test_levers).
    cfg = AlphaTriangleConfig.model_validate(
        {"model": TINY.model_dump(), "train": {"value_target": "monte_carlo"}}
    )
    model = AlphaTriangleNet(cfg.model).eval()
    records = _uniform_games([21, 22])
    out = diagnose_episodes(model, [*records, dataclasses.replace(records[0], length=0)], cfg)
    kl, targets, predictions = [], [], []
    for r in records:
        logits, value = model(torch.from_numpy(r.grid), torch.from_numpy(r.other))
        kl.append(policy_kl(r.policy, logits.detach().numpy(), r.valid_mask))
        targets.append(value_targets(r.rewards))
        predictions.append(value.detach().numpy() * cfg.model.value_scale)
    np.testing.assert_allclose(out.search_kl, np.concatenate(kl), rtol=1e-5)
    np.testing.assert_array_equal(out.targets, np.concatenate(targets))
    np.testing.assert_allclose(out.predictions, np.concatenate(predictions), rtol=1e-5)
    # One position in 3 of them all, in game order: the same numbers.
    third = diagnose_episodes(model, records, cfg, every=3)
    np.testing.assert_array_equal(third.targets, out.targets[::3])
    np.testing.assert_allclose(third.search_kl, out.search_kl[::3], rtol=1e-5)
    np.testing.assert_allclose(third.predictions, out.predictions[::3], rtol=1e-5)
    # A search that returned the network's own prior added nothing.
    r = records[0]
    logits, _ = network_outputs(model, r.grid, r.other)
    masked = np.where(r.valid_mask, logits.astype(np.float64), -np.inf)
    own = np.exp(masked - masked.max(axis=1, keepdims=True))
    own /= own.sum(axis=1, keepdims=True)
    same = diagnose_episodes(model, [dataclasses.replace(r, policy=own)], cfg)
    np.testing.assert_allclose(same.search_kl, 0.0, atol=1e-6)
    assert len(diagnose_episodes(model, [], cfg).search_kl) == 0


def test_muzero_is_diagnosed_by_its_initial_inference_and_n_step_targets() -> None:
    torch.manual_seed(1)
    cfg = AlphaTriangleConfig.model_validate(
        {"algorithm": "muzero", "model": TINY.model_dump(), "muzero": {"td_steps": 3}}
    )
    model = MuZeroNet(cfg.model, cfg.muzero).eval()
    [r] = _uniform_games([31])
    r = dataclasses.replace(r, root_values=np.linspace(5.0, 0.0, r.length, dtype=np.float32))
    np.testing.assert_array_equal(
        episode_value_targets(r, cfg),
        n_step_targets(r.rewards, r.root_values, cfg.muzero.discount, 3),
    )
    logits, values = network_outputs(model, r.grid, r.other)
    _, expected_logits, expected_values = MuZeroEvaluator(model).initial(
        [GameState(initial_seed=31)]
    )
    np.testing.assert_allclose(logits[0], expected_logits[0], rtol=1e-5, atol=1e-6)
    assert values[0] == pytest.approx(float(expected_values[0]), rel=1e-5)


def _policy_game(priors_of: object, seed: int) -> tuple[float, int]:
    """A game played by hand: every move the legal action of the highest prior."""
    state, moves = GameState(initial_seed=seed), 0
    while not state.is_over():
        prior = priors_of(state)  # type: ignore[operator]
        legal = valid_mask_from_grid(extract_batch([state])[0])[0]
        state.step(int(np.argmax(np.where(legal, prior, -np.inf))))
        moves += 1
    return state.game_score(), moves


def test_the_policy_player_plays_the_argmax_of_the_prior_of_either_network() -> None:
    torch.manual_seed(2)
    az = AlphaTriangleNet(TINY).eval()
    mz = MuZeroNet(TINY).eval()

    def az_prior(state: GameState) -> np.ndarray:
        prior: np.ndarray = NetworkEvaluator(az).evaluate_arrays([state])[0][0]
        return prior

    def mz_prior(state: GameState) -> np.ndarray:
        logits: np.ndarray = MuZeroEvaluator(mz).initial([state])[1][0]
        return logits

    seeds = [0, 1, 2]
    for model, prior in ((az, az_prior), (mz, mz_prior)):
        together = play_games(PolicyPlayer(model), seeds)
        assert [(r.score, r.length) for r in together] == [
            _policy_game(prior, seed) for seed in seeds
        ]
        assert play_game(PolicyPlayer(model), 1) == (together[1].score, together[1].length)


def _fake_record(versions: list[int]) -> EpisodeRecord:
    """An episode of blank positions (every action legal) searched by these weight versions."""
    spec, t = feature_spec(), len(versions)
    policy = np.zeros((t, spec.action_dim), np.float32)
    policy[:, 0] = 1.0
    rewards = np.ones(t, np.float32)
    return EpisodeRecord(
        grid=np.zeros((t, *spec.grid_shape), np.float32),
        other=np.zeros((t, spec.other_dim), np.float32),
        policy=policy,
        valid_mask=np.ones((t, spec.action_dim), bool),
        scores=np.arange(t + 1, dtype=np.float32),
        rewards=rewards,
        score=float(t),
        length=t,
        triangles_cleared=0,
        simulations=0,
        search_depth=0.0,
        seed=0,
        weight_version=versions[-1],
        weight_versions=np.asarray(versions, np.int64),
    )


def test_the_learner_reports_sample_age_and_times_sampled_at_eviction() -> None:
    cfg = AlphaTriangleConfig.model_validate(
        {
            "model": TINY.model_dump(),
            "train": {"batch_size": 4, "min_buffer_size": 1, "buffer_capacity": 6},
        }
    )
    learner = Learner(cfg)
    buf = learner.buffer
    learner.add_episode(_fake_record([0, 0, 0, 0]))
    for step in range(3):
        batch = buf.sample(4)
        metrics = learner.step(batch)
        assert metrics[m.LEARN_SAMPLE_AGE] == step  # every position is of version 0
        assert m.LEARN_TIMES_SAMPLED_AT_EVICTION not in metrics  # nothing left the buffer yet
    # Slots 4, 5 are free; the third position overwrites slot 0.
    gone = int(buf.times_sampled[0])
    learner.add_episode(_fake_record([2, 3, 3]))
    batch = buf.sample(4)
    versions = buf.weight_version[batch.indices]
    metrics = learner.step(batch)
    assert metrics[m.LEARN_SAMPLE_AGE] == pytest.approx(float(np.mean(3 - versions)))
    assert metrics[m.LEARN_TIMES_SAMPLED_AT_EVICTION] == gone
    assert m.LEARN_TIMES_SAMPLED_AT_EVICTION not in learner.step(buf.sample(4))
    # Two more positions evict slots 1 and 2: their mean count.
    gone_two = buf.times_sampled[1:3].astype(float).mean()
    learner.add_episode(_fake_record([5, 5]))
    assert learner.step(buf.sample(4))[m.LEARN_TIMES_SAMPLED_AT_EVICTION] == gone_two
