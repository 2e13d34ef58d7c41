"""The driver's side of periodic evaluation: one ``EvalActor`` scoring checkpoints in turn."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import ray

from alphatriangle import metric_names as m
from alphatriangle.core.config import AlphaTriangleConfig
from alphatriangle.core.learner import Counters
from alphatriangle.distributed.eval_actor import EvalActor, Evaluation
from trieye import TrieyeClient

log = logging.getLogger(__name__)


class PeriodicEval:
    """Evaluations on an ``EvalActor``, one at a time, never waited for by the loop.

    Each evaluation keeps a copy of the checkpoint state it scored, so that when its result
    arrives (steps later) and beats the best so far, exactly those weights are saved as best
    (by ``save_best(step, state)``).
    """

    def __init__(
        self, cfg: AlphaTriangleConfig, save_best: Callable[[int, dict[str, Any]], None]
    ) -> None:
        self.actor = EvalActor.remote(cfg)  # type: ignore[attr-defined]
        self.save_best = save_best
        self.pending: tuple[ray.ObjectRef[Evaluation], dict[str, Any]] | None = None

    def start(self, state: dict[str, Any]) -> None:
        """Evaluate the weights of checkpoint ``state`` unless an evaluation is running."""
        if self.pending is None:
            snapshot = copy.deepcopy(state)
            self.pending = (self.actor.evaluate.remote(snapshot["model"]), snapshot)

    def poll(self, stats: TrieyeClient, counters: Counters) -> None:
        """Log a finished evaluation (the network with its search as ``eval/*``, its policy alone
        as ``eval/policy_*``); keep its weights as best when they beat the best so far (by the
        score with search)."""
        if self.pending is None or not ray.wait([self.pending[0]], timeout=0)[0]:
            return
        ref, snapshot = self.pending
        self.pending = None
        step = snapshot["counters"]["step"]
        try:
            evaluation: Evaluation = ray.get(ref)
        except ray.exceptions.RayActorError as err:
            # Its process died more often than Ray retries the task; the next evaluation goes
            # to the restarted actor. Any other error is a bug and stops the run.
            log.warning("evaluation of step %d failed (%s); the next one retries", step, err)
            return
        summary = evaluation.search
        stats.log_dict(
            {
                m.EVAL_SCORE_MEAN: summary.mean,
                m.EVAL_SCORE_MEDIAN: summary.median,
                m.EVAL_SCORE_MAX: summary.max,
                m.EVAL_LENGTH_MEAN: summary.mean_length,
                m.EVAL_POLICY_SCORE_MEAN: evaluation.policy.mean,
                m.EVAL_POLICY_LENGTH_MEAN: evaluation.policy.mean_length,
                **evaluation.system,
            },
            step,
        )
        if summary.mean > counters.best_eval_score:
            counters.best_eval_score = summary.mean
            snapshot["counters"]["best_eval_score"] = summary.mean
            self.save_best(step, snapshot)

    @property
    def pending_step(self) -> int | None:
        """The step of the evaluation in flight, if any."""
        return None if self.pending is None else int(self.pending[1]["counters"]["step"])

    def finish(self, stats: TrieyeClient, counters: Counters, stopping: Callable[[], bool]) -> None:
        """Wait for the evaluation in flight (until ``stopping()``), so that a finished run
        reports, and keeps as best, what it scored."""
        while self.pending is not None and not stopping():
            if ray.wait([self.pending[0]], timeout=0.25)[0]:
                self.poll(stats, counters)

    def stop(self) -> None:
        ray.kill(self.actor)
