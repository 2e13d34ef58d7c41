"""How many self-play workers a run starts on its Ray cluster."""

from __future__ import annotations

import math

from alphatriangle.core.config import EvalConfig, TrainConfig
from alphatriangle.errors import UsageError

SELFPLAY_SIMULATIONS_PER_CORE_S = 4_500.0
"""Search simulations/s of one worker core with the default network: about 70 moves/s at 64
simulations per move (``bench/selfplay.py``, 2-core box)."""
LEARNER_SAMPLES_PER_CORE_S = 1_400.0
"""Samples/s one CPU core trains at batch 128 on the same box (``bench/selfplay.py``)."""
EVAL_MOVES_PER_GAME = 60.0
"""Moves of a held-out evaluation game, roughly, for the periodic evaluation's share."""


def worker_count(
    tc: TrainConfig,
    cpus: int,
    *,
    gpu_learner: bool = False,
    eval_cfg: EvalConfig | None = None,
    simulations: int = 64,
    sample_cost: float = 1.0,
) -> int:
    """``num_workers``, or the number of self-play workers that keeps all ``cpus`` busy.

    Per self-play move, besides the worker's own core-time (one move), the pipeline spends:

    - the learner's: it trains ``replay_ratio`` samples per move, at
      ``LEARNER_SAMPLES_PER_CORE_S`` on a CPU core, while a worker core plays
      ``SELFPLAY_SIMULATIONS_PER_CORE_S / simulations`` moves/s, so ``rho = replay_ratio *
      SELFPLAY_SIMULATIONS_PER_CORE_S / simulations / LEARNER_SAMPLES_PER_CORE_S`` core-moves
      per move (about 0.2 at the defaults, 1.6 at 8 simulations), times ``sample_cost``, the
      network passes one training sample costs (``core.algorithm.learner_sample_cost``: one
      for AlphaZero, the one the constants were measured with); almost none on a GPU;
    - the evaluation actor's: ``eval.games`` games of about ``EVAL_MOVES_PER_GAME`` moves every
      ``eval.every_steps`` steps, each step consuming ``batch_size / replay_ratio`` new moves, so
      ``epsilon = games * EVAL_MOVES_PER_GAME * replay_ratio / (every_steps * batch_size)``
      (0.15 at the defaults; its searches cost what a self-play move's do).

    ``W`` workers then ask for ``W * (1 + rho + epsilon)`` cores. Below ``cpus`` a core idles;
    above, everything slows in proportion, and self-play gets ``cpus / (1 + rho + epsilon)``
    cores' worth whatever ``W`` is. So ``W = ceil(cpus / (1 + rho + epsilon))``, at least one:
    2 on 2 CPUs, 6 on 8, 12 on 16 at the defaults (all ``cpus`` with a GPU learner and no
    evaluation). The learner and the evaluation actor reserve no Ray CPU, so these workers
    (one CPU each) always fit.

    With ``train.learner_replicas`` = R, the R - 1 replicas beyond the driver's learner take a
    Ray CPU each, so the workers share ``cpus - (R - 1)``, and the driver's learner does
    ``rho / R`` of the learning.

    More workers (and replicas) than the cluster's CPUs could never all be scheduled: that is
    refused (``UsageError``) rather than left waiting.
    """
    extra = tc.learner_replicas - 1
    if extra >= cpus:
        raise UsageError(
            f"train.learner_replicas = {tc.learner_replicas}: the Ray cluster has {cpus} CPUs and "
            f"each replica beyond the driver's takes one, leaving none for self-play; use at most "
            f"{cpus}"
        )
    if tc.num_workers is not None:
        if tc.num_workers + extra > cpus:
            replicas = ""
            if extra:
                replicas = f", as does each of the {extra} learner replicas beyond the driver's"
            raise UsageError(
                f"--workers / train.num_workers = {tc.num_workers}: the Ray cluster has {cpus} "
                f"CPUs and each self-play worker takes one{replicas}; use at most {cpus - extra}"
            )
        return tc.num_workers
    cpus -= extra
    moves_per_core_s = SELFPLAY_SIMULATIONS_PER_CORE_S / simulations
    learner_core_s = sample_cost / LEARNER_SAMPLES_PER_CORE_S
    rho = 0.0 if gpu_learner else tc.replay_ratio * moves_per_core_s * learner_core_s
    rho /= tc.learner_replicas
    epsilon = 0.0
    if eval_cfg is not None and eval_cfg.every_steps > 0:
        epsilon = (
            eval_cfg.games
            * EVAL_MOVES_PER_GAME
            * tc.replay_ratio
            / (eval_cfg.every_steps * tc.batch_size)
        )
    return max(1, min(cpus, math.ceil(cpus / (1.0 + rho + epsilon) - 1e-9)))


def learner_threads(tc: TrainConfig, node_cpus: int, workers: int) -> int:
    """``learner_threads``, or the cores of the driver's machine (``node_cpus``) that
    ``workers`` self-play workers and the learner replicas beyond the driver's leave free, at
    least one.

    PyTorch's default, a thread per core, would make the learner's threads wait on cores the
    workers hold: its parallel sections spin until their slowest thread is scheduled. On 2
    loaded cores one thread trained 4-5x the samples/s of two (``bench/scale.py --before``).
    On a cluster some workers run elsewhere, and this errs towards fewer threads.
    """
    if tc.learner_threads is not None:
        return tc.learner_threads
    return max(1, node_cpus - workers - (tc.learner_replicas - 1))
