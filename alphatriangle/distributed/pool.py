"""The driver's view of its self-play workers: start, publish weights, collect, replace, stop."""

from __future__ import annotations

import logging
from typing import Any

import ray
import torch

from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.selfplay import EpisodeRecord
from alphatriangle.distributed.selfplay_actor import SelfPlayWorker
from trieye import RunContext, SidecarDiedError

log = logging.getLogger(__name__)


class WorkerPool:
    """``SelfPlayWorker`` actors, each always busy with its games.

    A worker whose process dies is replaced by a fresh one with the current weights; the games
    it was playing are lost, nothing else.

    A subclass may run other actors behind the same driver loop by overriding ``_spawn``
    (anything with ``set_weights.remote`` and ``play.remote`` as a ``SelfPlayWorker`` handle
    has) and ``stop``: ``bench/scale.py`` measures the pipeline with simulated workers so.
    """

    def __init__(
        self,
        run: RunContext,
        cfg: AlphaTriangleConfig,
        count: int,
        seed_entropy: list[int],
        gpus: float = 0.0,
    ) -> None:
        self.run = run
        self.cfg = cfg
        self.seed_entropy = seed_entropy
        self.gpus_per_worker = gpus / count if gpus > 0 else 0.0
        """Each worker's share of the cluster's GPUs (it runs its network there)."""
        self.weights: ray.ObjectRef[Any] | None = None
        self.version = -1
        self.replaced = 0
        self.workers = [self._spawn(i) for i in range(count)]
        self.pending: dict[ray.ObjectRef[Any], int] = {}

    def _spawn(self, worker_id: int) -> Any:
        # A replacement gets fresh seeds, so it does not replay its predecessor's games.
        entropy = [*self.seed_entropy, self.replaced]
        actor = SelfPlayWorker.options(num_gpus=self.gpus_per_worker)  # type: ignore[attr-defined]
        return actor.remote(self.run, self.cfg, worker_id, entropy)

    def publish(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """One ``ray.put`` of the (CPU) ``weights``, handed to every worker by reference.

        Workers take them between ``play()`` calls (actor calls run in order).
        """
        self.weights = ray.put(weights)
        self.version = version
        for worker in self.workers:
            worker.set_weights.remote(self.weights, version)
        if not self.pending:
            self.pending = {w.play.remote(): i for i, w in enumerate(self.workers)}

    def collect(self, timeout: float) -> list[EpisodeRecord]:
        """Finished episodes (waiting up to ``timeout`` s for the first); a worker that
        returned some goes on playing at once."""
        refs = list(self.pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        episodes = []
        for ref in ready:
            worker_id = self.pending.pop(ref)
            try:
                episodes.extend(ray.get(ref))
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, SidecarDiedError):
                    raise err.cause from None  # no replacement could log either
                raise
            except ray.exceptions.RayActorError as err:
                log.warning("self-play worker %d died (%s); starting a replacement", worker_id, err)
                self.replaced += 1
                self.workers[worker_id] = self._spawn(worker_id)
                self.workers[worker_id].set_weights.remote(self.weights, self.version)
            self.pending[self.workers[worker_id].play.remote()] = worker_id
        return episodes

    def stop(self) -> None:
        """End every worker at once; only the games in progress are lost (each worker flushes
        its events to the sidecar whenever games end)."""
        for worker in self.workers:
            ray.kill(worker)
        self.pending.clear()
