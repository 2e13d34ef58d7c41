"""How much of the Monte-Carlo value target a replay-buffer snapshot's board fill explains.

Run: ``.venv/bin/python bench/value_predictability.py DATA/alphatriangle/runs/NAME/buffers/buffer_X.npz``
(a snapshot of a run with ``[train] value_target = "monte_carlo"``, whose ``value_target`` rows
are the score still to come).

The positions of a snapshot lie in game order (a game's positions are written together), so a
game starts where the move-number feature falls. Per bin of the share of filled playable cells
(``FILL_BINS`` bins), this prints how many positions, the mean and standard deviation of the
moves left and of the score still to come; then the R² of predicting the score still to come by
its bin's mean (fill alone, and fill by move number in bins of ``MOVE_BIN`` moves). A value head
whose ``learn/value_explained_variance`` stays near the first R² has learned the board's fill
and little else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from alphatriangle.core.features import NUM_GLOBAL_FEATURES, STEP_SCALE

FILL_BINS = 20
MOVE_BIN = 5
"""Moves per bin of the move number; the feature saturates at ``STEP_SCALE`` moves."""


def games_in_order(other: np.ndarray, position: int, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(order, game)``: the slots in game order (the oldest first once the ring has wrapped)
    and each ordered slot's game index; a first game cut by the ring's wrap gets index -1."""
    n = len(other)
    order = np.roll(np.arange(n), -position) if full else np.arange(n)
    move = other[order, -NUM_GLOBAL_FEATURES + 1]
    starts = np.r_[True, np.diff(move) < 0]
    game = np.cumsum(starts) - 1
    if full and move[0] > 0:
        game = np.where(game == 0, -1, game)  # its first moves were overwritten
    return order, game


def r2_by_bins(target: np.ndarray, bins: np.ndarray) -> float:
    """R² of predicting ``target`` by the mean of its bin (integer labels ``bins``)."""
    sums = np.bincount(bins, weights=target)
    counts = np.bincount(bins)
    means = sums / np.maximum(counts, 1)
    return float(1.0 - np.var(target - means[bins]) / np.var(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path, help="a buffer_*.npz of a run")
    args = parser.parse_args()
    if not args.snapshot.is_file():
        parser.error(f"no file {args.snapshot}")
    with np.load(args.snapshot) as data:
        n = int(data["size"])
        other = data["other"][:n].astype(np.float32)
        target = data["value_target"][:n].astype(np.float64)
        position, full = int(data["position"]), n == int(data["capacity"])
    order, game = games_in_order(other, position, full)
    keep = game >= 0
    other, target, game = other[order][keep], target[order][keep], game[keep]
    index = np.arange(len(game))
    first = np.r_[0, np.flatnonzero(np.diff(game)) + 1]
    lengths = np.diff(np.r_[first, len(game)])
    moves_left = lengths[game - game[0]] - (index - first[game - game[0]])
    fill = other[:, -NUM_GLOBAL_FEATURES]
    move = other[:, -NUM_GLOBAL_FEATURES + 1] * STEP_SCALE
    fill_bin = np.minimum((fill * FILL_BINS).astype(np.int64), FILL_BINS - 1)
    move_bin = np.minimum((move / MOVE_BIN).astype(np.int64), int(STEP_SCALE // MOVE_BIN))
    print(f"{len(game)} positions of {len(lengths)} games in {args.snapshot.name}")
    print("| filled share | positions | moves left (mean ± sd) | score still to come (mean ± sd) |")
    print("|---|---|---|---|")
    for b in range(FILL_BINS):
        sel = fill_bin == b
        if sel.sum() >= 100:
            print(
                f"| {b / FILL_BINS:.2f}-{(b + 1) / FILL_BINS:.2f} | {sel.sum()} "
                f"| {moves_left[sel].mean():.1f} ± {moves_left[sel].std():.1f} "
                f"| {target[sel].mean():.1f} ± {target[sel].std():.1f} |"
            )
    print(f"\nR² of the score still to come by fill bin: {r2_by_bins(target, fill_bin):.3f}")
    joint = fill_bin * (int(STEP_SCALE // MOVE_BIN) + 1) + move_bin
    print(f"R² by fill bin and move-number bin: {r2_by_bins(target, joint):.3f}")


if __name__ == "__main__":
    main()
