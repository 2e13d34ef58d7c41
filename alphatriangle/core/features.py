"""Network inputs from a ``trianglengin.GameState``: grid planes and a vector of extra features.

Grid planes, float32 ``[C, ROWS, COLS]`` with ``C = 6 + NUM_SHAPE_SLOTS``:

- 0 ``occupied``: 1 where a triangle is placed.
- 1 ``up``: 1 where the cell is an upward triangle. trianglengin's rule (``GridData::is_up``)
  is ``(row + col) % 2 == 1``.
- 2 ``playable``: 1 on cells inside the board (not "death" cells).
- 3, 4, 5 ``line_h``, ``line_d1``, ``line_d2``: for a playable cell on a clearable line in that
  direction, ``1 / (1 + e)`` where ``e`` is the number of *other* empty cells of that line; so 1 on
  an empty cell means filling this cell alone completes the line. 0 off any line.
- ``6 + s`` ``valid_s``: 1 where slot ``s``'s shape can be anchored. Flattened over
  ``[slot, row, col]`` these planes are exactly the legal-action mask in action-id order
  (``slot * ROWS * COLS + row * COLS + col``); ``valid_mask_from_grid`` recovers it.

Extra features, float32 ``[F]`` with ``F = NUM_SHAPE_SLOTS * SLOT_FEATURES + 3``; per slot:

- ``present`` (1 if the slot holds a shape), ``anchor_up`` (1 if the shape's anchor cell must be
  an upward triangle), ``size`` (triangles / 6), ``mobility`` (legal anchors / (ROWS * COLS)),
- ``footprint``: 10 bits, one per offset of ``FOOTPRINT_OFFSETS`` (row offset 0..1, column offset
  -2..2 from the anchor), 1 where the shape covers that cell. Every trianglengin shape fits.

then three globals: fraction of playable cells occupied, ``min(step / 500, 1)``, and the
fraction of slots that are empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from trianglengin import EnvConfig, GameState, Shape

FOOTPRINT_OFFSETS: tuple[tuple[int, int], ...] = tuple(
    (dr, dc) for dr in (0, 1) for dc in (-2, -1, 0, 1, 2)
)
"""Cells a shape may cover relative to its anchor, in the order of the footprint bits."""

NUM_BASE_PLANES = 6
SLOT_FEATURES = 4 + len(FOOTPRINT_OFFSETS)
FOOTPRINT_START = 4
"""Index of the first footprint bit within a slot's block of ``SLOT_FEATURES``."""
NUM_GLOBAL_FEATURES = 3
STEP_SCALE = 500.0
SIZE_SCALE = 6.0
DIRECTIONS = ("h", "d1", "d2")


@dataclass(frozen=True)
class FeatureSpec:
    """Shapes of the features for one ``EnvConfig``, and the board geometry they use.

    ``line_index[d, cell]`` is the index (into the rows of ``incidence[d]``) of the line of
    direction ``d`` through the flattened cell, or -1; ``incidence[d]`` is float32
    ``[lines_d, ROWS * COLS]`` with 1 where a cell lies on a line.
    """

    rows: int
    cols: int
    num_slots: int
    playable: np.ndarray
    up: np.ndarray
    line_index: tuple[np.ndarray, ...]
    incidence: tuple[np.ndarray, ...]

    @property
    def num_planes(self) -> int:
        return NUM_BASE_PLANES + self.num_slots

    @property
    def other_dim(self) -> int:
        return self.num_slots * SLOT_FEATURES + NUM_GLOBAL_FEATURES

    @property
    def action_dim(self) -> int:
        return self.num_slots * self.rows * self.cols

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return (self.num_planes, self.rows, self.cols)


def feature_spec(env_cfg: EnvConfig | None = None) -> FeatureSpec:
    """The feature geometry for ``env_cfg`` (trianglengin's default when None); cached."""
    cfg = env_cfg or EnvConfig()
    return _spec(
        cfg.ROWS, cfg.COLS, cfg.NUM_SHAPE_SLOTS, tuple(map(tuple, cfg.PLAYABLE_RANGE_PER_ROW))
    )


@cache
def _spec(rows: int, cols: int, num_slots: int, ranges: tuple[tuple[int, int], ...]) -> FeatureSpec:
    playable = np.zeros((rows, cols), dtype=bool)
    for r, (start, end) in enumerate(ranges):
        playable[r, start:end] = True
    r_idx, c_idx = np.indices((rows, cols))
    up = (r_idx + c_idx) % 2 == 1
    line_index = []
    incidence = []
    for direction in DIRECTIONS:
        lines = board_lines(playable, direction)
        index = np.full(rows * cols, -1, dtype=np.int64)
        matrix = np.zeros((len(lines), rows * cols), dtype=np.float32)
        for i, line in enumerate(lines):
            for r, c in line:
                index[r * cols + c] = i
                matrix[i, r * cols + c] = 1.0
        line_index.append(index)
        incidence.append(matrix)
    return FeatureSpec(rows, cols, num_slots, playable, up, tuple(line_index), tuple(incidence))


def board_lines(playable: np.ndarray, direction: str) -> list[list[tuple[int, int]]]:
    """Maximal runs (length >= 2) of playable cells in one direction, as trianglengin clears them.

    A port of ``GridData::precompute_lines``/``get_neighbor``: "h" runs along a row; "d1" steps
    from an up cell to the cell below it and from a down cell to its right neighbour; "d2" steps
    from an up cell to its right neighbour and from a down cell to the cell above it.
    """
    rows, cols = playable.shape

    def live(r: int, c: int) -> bool:
        return 0 <= r < rows and 0 <= c < cols and bool(playable[r, c])

    def forward(r: int, c: int) -> tuple[int, int]:
        is_up = (r + c) % 2 == 1
        if direction == "h":
            return r, c + 1
        if direction == "d1":
            return (r + 1, c) if is_up else (r, c + 1)
        return (r, c + 1) if is_up else (r - 1, c)

    def backward(r: int, c: int) -> tuple[int, int]:
        is_up = (r + c) % 2 == 1
        if direction == "h":
            return r, c - 1
        if direction == "d1":
            return (r, c - 1) if is_up else (r - 1, c)
        return (r + 1, c) if is_up else (r, c - 1)

    lines: list[list[tuple[int, int]]] = []
    seen: set[tuple[int, int]] = set()
    for r0 in range(rows):
        for c0 in range(cols):
            if not live(r0, c0) or (r0, c0) in seen:
                continue
            start = (r0, c0)
            while live(*backward(*start)):
                start = backward(*start)
            line = [start]
            while live(*forward(*line[-1])):
                line.append(forward(*line[-1]))
            seen.update(line)
            if len(line) >= 2:
                lines.append(line)
    return lines


@cache
def _slot_encoding(triangles: tuple[tuple[int, int, bool], ...]) -> np.ndarray:
    """Static part of a slot's features (present, anchor_up, size, 0 mobility, footprint)."""
    out = np.zeros(SLOT_FEATURES, dtype=np.float32)
    if not triangles:
        return out
    out[0] = 1.0
    dr, dc, is_up = triangles[0]
    # The anchor cell is up iff this triangle's orientation differs from the anchor's by the
    # parity of its offset (orientation alternates from cell to neighbouring cell).
    out[1] = float(is_up != ((dr + dc) % 2 == 1))
    out[2] = len(triangles) / SIZE_SCALE
    for dr, dc, _ in triangles:
        if (dr, dc) not in FOOTPRINT_OFFSETS:
            raise ValueError(
                f"shape triangle at offset ({dr}, {dc}) lies outside the feature footprint "
                f"{FOOTPRINT_OFFSETS}; extend FOOTPRINT_OFFSETS for this shape set"
            )
        out[FOOTPRINT_START + FOOTPRINT_OFFSETS.index((dr, dc))] = 1.0
    return out


def _shape_key(shape: Shape | None) -> tuple[tuple[int, int, bool], ...]:
    return tuple(shape.triangles) if shape is not None else ()


def extract_features(state: GameState) -> tuple[np.ndarray, np.ndarray]:
    """Features of one state: grid float32 ``[C, ROWS, COLS]`` and extra float32 ``[F]``."""
    grid, other = extract_batch([state])
    return grid[0], other[0]


def extract_batch(states: Sequence[GameState]) -> tuple[np.ndarray, np.ndarray]:
    """Features of a batch: grid float32 ``[B, C, ROWS, COLS]`` and extra float32 ``[B, F]``.

    Per state only the engine's arrays are read; the planes are computed for the whole batch.
    All states must share one ``EnvConfig``.
    """
    if not states:
        raise ValueError("extract_batch needs at least one state")
    spec = feature_spec(states[0].env_config)
    b, h, w, s = len(states), spec.rows, spec.cols, spec.num_slots
    cells = h * w
    occupied = np.empty((b, cells), dtype=np.float32)
    valid = np.zeros((b, s * cells), dtype=np.float32)
    other = np.zeros((b, spec.other_dim), dtype=np.float32)
    steps = np.empty(b, dtype=np.float32)
    for i, state in enumerate(states):
        occupied[i] = state.get_grid_data_np()["occupied"].reshape(cells)
        actions = state.valid_actions()
        if actions:
            valid[i, np.fromiter(actions, dtype=np.int64, count=len(actions))] = 1.0
        shapes = state.get_shapes()
        for slot in range(s):
            shape = shapes[slot] if slot < len(shapes) else None
            other[i, slot * SLOT_FEATURES : (slot + 1) * SLOT_FEATURES] = _slot_encoding(
                _shape_key(shape)
            )
        steps[i] = state.current_step

    playable = spec.playable.reshape(cells).astype(np.float32)
    empty = playable - occupied
    grid = np.zeros((b, spec.num_planes, cells), dtype=np.float32)
    grid[:, 0] = occupied
    grid[:, 1] = spec.up.reshape(cells)
    grid[:, 2] = playable
    for d, (index, matrix) in enumerate(zip(spec.line_index, spec.incidence, strict=True)):
        on_line = index >= 0
        empties_per_line = empty @ matrix.T  # [B, lines_d]
        others = empties_per_line[:, index[on_line]] - empty[:, on_line]
        grid[:, 3 + d, on_line] = 1.0 / (1.0 + others)
    grid[:, NUM_BASE_PLANES:] = valid.reshape(b, s, cells)

    slot_view = other[:, : s * SLOT_FEATURES].reshape(b, s, SLOT_FEATURES)
    slot_view[:, :, 3] = valid.reshape(b, s, cells).sum(axis=2) / cells
    g = s * SLOT_FEATURES
    other[:, g] = occupied.sum(axis=1) / playable.sum()
    other[:, g + 1] = np.minimum(steps / STEP_SCALE, 1.0)
    other[:, g + 2] = (slot_view[:, :, 0] == 0).sum(axis=1) / s
    return grid.reshape(b, spec.num_planes, h, w), other


def valid_mask_from_grid(grid: np.ndarray) -> np.ndarray:
    """Legal-action mask bool ``[B, A]`` (action-id order) from grid features ``[B, C, H, W]``."""
    return grid[:, NUM_BASE_PLANES:].reshape(grid.shape[0], -1) > 0.5
