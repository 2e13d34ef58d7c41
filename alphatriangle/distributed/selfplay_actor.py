"""``SelfPlayWorker``: a Ray actor that plays self-play games, many at once, with its own
network copy (on the CPU, or on its share of a GPU), for either algorithm."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import ray
import torch

from alphatriangle import metric_names as m
from alphatriangle.core.algorithm import build_model, searcher
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.diagnostics import DIAGNOSE_EVERY, FreshPositions, diagnose_episodes
from alphatriangle.core.selfplay import TRAINING_SEED_FLOOR, EpisodeRecord, SelfPlayGames
from trieye import RunContext, connect
from trieye.system import ProcessSampler


def inference_device(gpu_ids: Sequence[object]) -> str:
    """Where a worker runs its network: its GPU share when Ray gave it one, else the CPU.

    Workers on a GPU machine get ``num_gpus = GPUs / workers`` each (``WorkerPool``): every
    worker keeps its own network and batches its own games' leaves, so no inference actor (and
    no extra hop per batch) is needed; Ray sets ``CUDA_VISIBLE_DEVICES`` for the share.
    """
    return "cuda" if gpu_ids else "cpu"


def episode_context(record: EpisodeRecord, weight_version: int, worker_id: int) -> dict[str, Any]:
    """The context of a finished episode's ``episode_end`` event (what the sidecar aggregates
    into ``episode/*``)."""
    return {
        m.CTX_SCORE: record.score,
        m.CTX_LENGTH: record.length,
        m.CTX_TRIANGLES_CLEARED: record.triangles_cleared,
        m.CTX_SIMULATIONS: record.simulations,
        m.CTX_WEIGHT_VERSION: weight_version,
        m.CTX_WORKER: worker_id,
    }


@ray.remote(num_cpus=1, max_restarts=0)
class SelfPlayWorker:
    """Plays ``train.games_per_worker`` games at once (``SelfPlayGames``: their searches share
    every network call); each ``play()`` call advances them until at least one ends.

    Actor tasks run in submission order, so ``set_weights`` calls queued by the driver take
    effect between ``play()`` calls: a game may be played by several weight versions, and its
    record carries the one that played its last move (and, per move, the one of each move).

    Before its games go to the learner, the worker's network predicts one position in
    ``DIAGNOSE_EVERY`` of them once more (one forward pass per batch of finished games), for
    the ``learn/*`` diagnostics of what the learner has not seen yet: the value head's
    explained variance over its newest positions (``FreshPositions``) and the KL of the
    search's policy targets from the network's prior.
    """

    def __init__(
        self, run: RunContext, cfg: AlphaTriangleConfig, worker_id: int, seed_entropy: list[int]
    ) -> None:
        # One intra-op thread per worker: self-play parallelism comes from running more workers.
        torch.set_num_threads(1)
        self.cfg = cfg
        self.worker_id = worker_id
        self.device = inference_device(ray.get_gpu_ids())
        self.model = build_model(cfg).to(self.device).eval()
        self.weight_version = -1
        self.rng = np.random.default_rng([*seed_entropy, worker_id])
        self.stats = connect(run)
        self.system = ProcessSampler(m.SYSTEM_SELFPLAY)
        self.episodes = 0
        games = cfg.train.games_at_once(on_gpu=self.device != "cpu")
        search = searcher(self.model, cfg, noise=True, device=self.device)
        self.games = SelfPlayGames(search, self._seeds(), games)
        self.fresh = FreshPositions()

    def _seeds(self) -> Iterator[int]:
        while True:
            yield int(self.rng.integers(TRAINING_SEED_FLOOR, 2**32 - 1))

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        """Load published weights (the driver passes one ``ray.put`` reference to all workers);
        the next moves are searched with ``mcts.simulations_at(version)`` simulations."""
        self.model.load_state_dict(weights)
        self.model.eval()
        self.weight_version = version
        self.games.weight_version = version
        simulations = self.cfg.mcts.simulations_at(version)
        if simulations != self.simulations:
            mcts = self.cfg.mcts.model_copy(update={"simulations": simulations})
            self.games.set_searcher(
                searcher(self.model, self.cfg, noise=True, mcts=mcts, device=self.device)
            )
        return version

    @property
    def simulations(self) -> int:
        """Simulations per move of the worker's current search."""
        return self.games.searcher.settings.simulations

    def play(self) -> list[EpisodeRecord]:
        """Advance the worker's games until at least one ends; report each finished one to the
        sidecar as an ``episode_end`` event and return them."""
        start = time.perf_counter()
        moves = 0
        ended: list[EpisodeRecord] = []
        while not ended:
            moves += self.games.running
            ended = self.games.step()
        elapsed = time.perf_counter() - start
        step = max(self.weight_version, 0)
        records = []
        for record in ended:
            records.append(dataclasses.replace(record, weight_version=self.weight_version))
            self.episodes += 1
            self.stats.log_event(
                m.EPISODE_END, step, episode_context(record, self.weight_version, self.worker_id)
            )
            self.stats.log(m.SELFPLAY_MOVES, record.length, step)
        self._log_diagnostics(ended, step)
        self.stats.log_dict(self.system.sample(), step)
        self.stats.log(m.WORKER_MOVES_PER_S, moves / elapsed, step)
        self.stats.log(m.WORKER_SIMULATIONS_PER_S, moves * self.simulations / elapsed, step)
        # One small RPC per finished batch of games, so that killing a worker loses only the
        # games it was playing.
        self.stats.deliver()
        return records

    def _log_diagnostics(self, ended: list[EpisodeRecord], step: int) -> None:
        """``learn/search_kl`` of the games that just ended; ``learn/value_explained_variance``
        over the worker's newest positions, once their targets vary."""
        diagnostics = diagnose_episodes(
            self.model, ended, self.cfg, self.device, every=DIAGNOSE_EVERY
        )
        if not len(diagnostics.search_kl):
            return
        self.stats.log(m.LEARN_SEARCH_KL, float(diagnostics.search_kl.mean()), step)
        self.fresh.add(diagnostics.targets, diagnostics.predictions)
        explained = self.fresh.explained_variance()
        if explained is not None:
            self.stats.log(m.LEARN_VALUE_EXPLAINED_VARIANCE, explained, step)

    def info(self) -> dict[str, Any]:
        """Identity and progress, for diagnostics."""
        return {
            "worker_id": self.worker_id,
            "episodes": self.episodes,
            "weight_version": self.weight_version,
            "device": self.device,
            "games": self.games.running,
            "simulations": self.simulations,
        }
