"""``EvalActor``: a Ray actor that scores published weights on held-out seeds."""

from __future__ import annotations

from dataclasses import dataclass

import ray
import torch

from alphatriangle import metric_names as m
from alphatriangle.core.algorithm import agent_player, build_model
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig
from alphatriangle.core.players import NETWORK, POLICY, PolicyPlayer, Summary, play_games, summarize
from trieye.system import ProcessSampler


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a set of weights on the evaluation seeds.

    Attributes:
        search: the network with the run's own search, without noise.
        policy: the network's policy alone (``PolicyPlayer``), on the same seeds.
        system: this process's system metrics over the evaluation (``system/eval/*``).
    """

    search: Summary
    policy: Summary
    system: dict[str, float]


def evaluation_search(cfg: AlphaTriangleConfig) -> MCTSConfig:
    """The periodic evaluation's search: the run's, with ``[eval] simulations`` or else
    ``mcts.simulations``, the count self-play starts with, whatever self-play has grown to
    (``simulations_final``): the evaluation's cost stays that of the first minutes."""
    return cfg.mcts.model_copy(update={"simulations": cfg.eval.simulations or cfg.mcts.simulations})


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=2)
class EvalActor:
    """Plays the evaluation seeds with given weights, off the learner's and workers' path.

    An evaluation is a pure function of the weights, so one cut short by the death of the
    process is simply run again by the restarted actor.

    It asks Ray for no CPU so it never keeps a self-play worker from being scheduled; it
    shares the cores while it runs (a few seconds per evaluation with the defaults; the
    policy-only games cost one forward pass a move for all seeds together).
    """

    def __init__(self, cfg: AlphaTriangleConfig) -> None:
        torch.set_num_threads(1)
        self.model = build_model(cfg).eval()
        self.player = agent_player(self.model, cfg, evaluation_search(cfg))
        self.policy_player = PolicyPlayer(self.model)
        self.seeds = list(range(cfg.eval.games))
        self.sampler = ProcessSampler(m.SYSTEM_EVAL, every_s=0.0)

    def evaluate(self, weights: dict[str, torch.Tensor]) -> Evaluation:
        """The network's summaries over the evaluation seeds with ``weights``, with its search
        and without, and this process's system metrics over the evaluation."""
        self.model.load_state_dict(weights)
        self.model.eval()
        search = summarize(NETWORK, play_games(self.player, self.seeds))
        policy = summarize(POLICY, play_games(self.policy_player, self.seeds))
        return Evaluation(search, policy, self.sampler.sample())
