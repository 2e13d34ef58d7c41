"""The ``alphatriangle`` command line."""

from __future__ import annotations

import time

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()


@app.callback()
def main() -> None:
    """AlphaZero-style self-play training for the trianglengin puzzle."""


@app.command()
def doctor(
    seed: int = typer.Option(0, help="Game seed of the check episode."),
    sims: int = typer.Option(32, min=1, help="MCTS simulations per move."),
) -> None:
    """Check the engine and MCTS work: play one game with a uniform-prior search."""
    import trianglengin
    import trimcts
    from trianglengin import GameState
    from trimcts import SearchConfiguration, run_mcts

    from alphatriangle.evaluator import UniformEvaluator

    console.print(f"trianglengin {trianglengin.__version__}, trimcts from {trimcts.__file__}")
    state = GameState(initial_seed=seed)
    search = SearchConfiguration(max_simulations=sims, dirichlet_epsilon=0.0)
    evaluator = UniformEvaluator()
    start = time.perf_counter()
    moves = 0
    while not state.is_over():
        visits, _, _ = run_mcts(state, evaluator, search)
        if not visits:
            raise typer.Exit(code=_fail("MCTS returned no visits; run `make install FORCE=1`."))
        state.step(max(visits, key=visits.__getitem__))
        moves += 1
    elapsed = time.perf_counter() - start
    console.print(
        f"one game, seed {seed}, {sims} simulations/move: score {state.game_score():.2f}, "
        f"{moves} moves, {moves / elapsed:.0f} moves/s"
    )


def _fail(message: str) -> int:
    console.print(f"[red]error:[/red] {message}")
    return 1
