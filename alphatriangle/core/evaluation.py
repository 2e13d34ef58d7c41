"""``evaluate`` on many seeds in several processes: the evaluation of ``alphatriangle eval``.

A game's result depends only on the player and its seed (``players``: no root noise, each
search's roots seeded by the game's seed), so the seeds can be shared out between processes and
the results put back in seed order: the summaries are those one process would give.

Each process is forked from this one before it starts any thread of its own (Python's pool
forks them all at its first task, before its manager thread) and builds the players once from
an ``EvalPlan``: the network from its weights, the run's search, the baselines; it plays with
one torch thread. The work is ``jobs`` contiguous shares of the seeds for each player. (A fork,
not a fresh interpreter: it starts in milliseconds, not the seconds an import of torch takes,
and leaves no named semaphores behind for a tracker process to report.)

Stopping: the pool's processes start with SIGINT and SIGTERM blocked (a fork keeps the signal
mask), so a Ctrl-C sent to the whole process group reaches only this process, whose handler
(``alphatriangle.stopping``) raises ``KeyboardInterrupt`` here; the
processes then see the plan's stop event before their next move and return at once, and the
exception unwinds the command as in one process. A second signal kills them
(``stopping``). Each process ends itself within ``PARENT_POLL_S`` of its parent's end, however
that came (``kill -9`` included), whether it is playing or waiting for work: without that, a
process waits forever on the pool's queue, whose pipe it holds open itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from alphatriangle.core.algorithm import agent_player, build_model
from alphatriangle.core.config import AlphaTriangleConfig, MCTSConfig
from alphatriangle.core.players import (
    GameResult,
    Player,
    Summary,
    evaluation_players,
    play_games,
    summarize,
)

POLL_S = 0.2
"""How often the waiting process looks for a signal whose ``KeyboardInterrupt`` was lost."""
PARENT_POLL_S = 0.5
"""How often a pool process looks whether its parent is still there."""


@dataclass(frozen=True)
class EvalPlan:
    """What a process needs to build ``evaluate``'s players: the run's config, the network's
    weights, the agent's search (its simulations set) and the baselines'."""

    cfg: AlphaTriangleConfig
    weights: dict[str, torch.Tensor]
    mcts: MCTSConfig
    baseline_simulations: int
    baselines: bool

    def players(self) -> dict[str, Player]:
        model = build_model(self.cfg)
        model.load_state_dict(self.weights)
        agent = agent_player(model.eval(), self.cfg, self.mcts)
        return evaluation_players(agent, self.cfg.mcts, self.baseline_simulations, self.baselines)


def default_jobs(games: int) -> int:
    """One process per CPU this process may run on, and no more than the games."""
    return max(1, min(len(os.sched_getaffinity(0)), games))


def evaluate_plan(
    plan: EvalPlan,
    seeds: Sequence[int],
    jobs: int,
    between_moves: Callable[[], None] = lambda: None,
) -> dict[str, Summary]:
    """Each of the plan's players on ``seeds``, in ``jobs`` processes (1: in this one);
    ``between_moves`` is called here between moves (one process) or every ``POLL_S`` seconds
    (several) and may raise to stop."""
    seeds = list(seeds)
    jobs = max(1, min(jobs, len(seeds)))
    if jobs == 1:
        return {
            name: summarize(name, play_games(player, seeds, between_moves=between_moves))
            for name, player in plan.players().items()
        }
    size = -(-len(seeds) // jobs)
    shares = [seeds[i : i + size] for i in range(0, len(seeds), size)]
    names = list(plan.players())
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    results: dict[str, dict[int, GameResult]] = {}
    pool: ProcessPoolExecutor | None = None
    futures: dict[Future[list[GameResult]], str] = {}
    try:
        with _signals_blocked():  # the processes are forked at the first submit, blocked
            pool = ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_start, initargs=(plan, stop)
            )
            for name in names:
                for share in shares:
                    futures[pool.submit(_play_share, name, share)] = name
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            between_moves()
            for future in done:
                for result in future.result():
                    results.setdefault(futures[future], {})[result.seed] = result
    except BaseException:
        stop.set()  # each process returns before its next move
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return {name: summarize(name, [results[name][seed] for seed in seeds]) for name in names}


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held (not lost) for the block; one that came is delivered after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_players: dict[str, Player] = {}
_stop: Any = None


def _start(plan: EvalPlan, stop: Any) -> None:
    """A pool process: its players, built once, the stop event, and the watch on its parent."""
    global _stop
    parent = os.getppid()
    threading.Thread(target=_exit_without, args=(parent,), name="parent-watch", daemon=True).start()
    torch.set_num_threads(1)
    _players.update(plan.players())
    _stop = stop


def _exit_without(parent: int) -> None:
    """End this process once ``parent`` is no longer its parent (it was re-parented: gone)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _play_share(name: str, seeds: list[int]) -> list[GameResult]:
    def between_moves() -> None:
        if _stop.is_set():
            raise KeyboardInterrupt("the evaluation was stopped")

    return play_games(_players[name], seeds, between_moves=between_moves)
