"""The board's symmetries, as data augmentation of stored positions (``[train]
augment_symmetries``).

The default board is a regular hexagon of side 4 made of 96 triangles, so the 12 isometries of
the hexagon (dihedral group D6) map its cells, their up/down orientation and its lines (the
three directions permuted) onto themselves: ``rot60`` .. ``rot300`` turn it clockwise as drawn
(row 0 at the top), ``mirror0`` reflects it left-right (column ``c`` to ``COLS - 1 - c``) and
``mirrorK`` is ``mirror0`` followed by ``rotK`` (``mirror180`` flips it top-bottom).

A symmetry maps a *position* exactly when it maps every shape of the hand onto a shape that
trianglengin deals (re-anchored at its first triangle in (row, col) order, trianglengin's anchor
convention): then the transformed position's legal moves, next boards, rewards and cleared
lines are the transforms of the original's (``tests/test_symmetry.py`` checks this against the
engine for every symmetry). No symmetry but the identity maps trianglengin's set of shapes onto
itself: two shapes of the set (a four-triangle bent strip and a five-triangle zigzag) have
mirror images that it does not deal, and the set holds one down-triangle but two up-triangles,
so the hands dealt *after* the current one are distributed slightly differently in the
transformed game (by trianglengin's template list in ``shape_logic.cpp``, 4 to 7 of its 31
templates per deal change under each symmetry). The value target is therefore
an approximation under every symmetry; the policy target and the move's consequences are exact.

``augment_batch`` transforms a batch: the grid planes (cells permuted, line planes also swapped
between directions, each slot's anchor plane moved by its shape's anchor map), the per-slot
features (the transformed shape's orientation and footprint bits), the policy target and the
legal-move mask. ``choose_symmetries`` draws, per sample, one of the allowed symmetries that map
its hand exactly (the identity always does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import get_args

import numpy as np
from trianglengin import EnvConfig, GameState

from alphatriangle.core.buffer import Batch
from alphatriangle.core.config import SymmetryName
from alphatriangle.core.features import (
    DIRECTIONS,
    FOOTPRINT_OFFSETS,
    FOOTPRINT_START,
    NUM_BASE_PLANES,
    SLOT_FEATURES,
    _slot_encoding,
    board_lines,
    feature_spec,
)

SYMMETRY_NAMES: tuple[SymmetryName, ...] = get_args(SymmetryName)
"""Every candidate, the identity first (index 0 in ``SymmetryTables``)."""

Triangles = tuple[tuple[int, int, bool], ...]
"""A shape as trianglengin's ``Shape.triangles``: sorted (row offset, column offset, is_up)."""

SHAPE_DISCOVERY_SEEDS = 400
"""Games whose first hands reveal trianglengin's shape set (it is not exposed to Python):
1,200 shapes drawn uniformly from 31 templates miss one with probability below 1e-16."""

_ANCHOR_UP_CODE = 1 << len(FOOTPRINT_OFFSETS)


@dataclass(frozen=True)
class SymmetryTables:
    """Lookup tables of the symmetries of one board; ``G`` symmetries (``names``, identity
    first), ``N`` cells (``ROWS * COLS``), ``K`` known shapes (index 0: an empty slot).

    Attributes:
        names: the symmetries that map this board onto itself.
        num_slots: the hand's slots.
        cell_map: int64 ``[G, N]`` image of each playable cell (off-board cells map to
            themselves; every plane is constant there).
        direction_map: int64 ``[G, 3]`` the direction (index into ``DIRECTIONS``) that the
            lines of each direction map to.
        shapes: ``K`` shapes, ``()`` first.
        shape_image: int64 ``[G, K]`` index of each shape's image, -1 where the image is not a
            shape trianglengin deals.
        anchor_map: int64 ``[G, K, N]`` where an anchor of shape k at a cell goes (the image's
            anchor), -1 where the shape does not fit on the board at that anchor or its image
            is no known shape.
        code_to_shape: int64 ``[2 * 2 ** len(FOOTPRINT_OFFSETS)]`` shape index of a slot's
            (anchor_up, footprint bits) code, -1 for no known shape.
        encoding: float32 ``[K, SLOT_FEATURES]`` each shape's static slot features.
    """

    names: tuple[SymmetryName, ...]
    num_slots: int
    cell_map: np.ndarray
    direction_map: np.ndarray
    shapes: tuple[Triangles, ...]
    shape_image: np.ndarray
    anchor_map: np.ndarray
    code_to_shape: np.ndarray
    encoding: np.ndarray

    def index(self, names: Sequence[str]) -> np.ndarray:
        """int64 indices of ``names`` (each one of ``self.names``)."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(
                f"symmetries {unknown} do not map this board onto itself; "
                f"choose among {list(self.names)}"
            )
        return np.asarray([self.names.index(name) for name in names], dtype=np.int64)


def _up(r: int, c: int) -> bool:
    return (r + c) % 2 == 1


def _centroid(r: int, c: int) -> tuple[int, int]:
    """A cell's centroid in lattice units: x in half triangle sides, y in thirds of a row."""
    return c, 3 * r + (2 if _up(r, c) else 1)


def _transform(name: SymmetryName, x: Fraction, y: Fraction) -> tuple[Fraction, Fraction]:
    """``name`` applied to a point relative to the centre, in ``_centroid`` units; turning
    by 60 degrees is (x, y) -> ((x - y) / 2, (3x + y) / 2) in them (y grows downwards)."""
    if name.startswith("mirror"):
        x = -x
    degrees = name.removeprefix("mirror").removeprefix("rot")
    turns = 0 if name == "identity" else int(degrees) // 60
    for _ in range(turns):
        x, y = (x - y) / 2, (3 * x + y) / 2
    return x, y


def _cell_at(x: Fraction, y: Fraction) -> tuple[int, int] | None:
    """The cell whose centroid is (x, y), or None when no cell's is."""
    if x.denominator != 1 or y.denominator != 1:
        return None
    c, y_int = int(x), int(y)
    r, rest = divmod(y_int, 3)
    if rest == 0 or _up(r, c) != (rest == 2):
        return None
    return r, c


def _normalize(cells: Sequence[tuple[int, int]]) -> Triangles:
    """A set of cells as a shape anchored at its first cell in (row, col) order."""
    ordered = sorted(cells)
    r0, c0 = ordered[0]
    return tuple((r - r0, c - c0, _up(r, c)) for r, c in ordered)


@cache
def known_shapes(env_cfg: EnvConfig | None = None) -> tuple[Triangles, ...]:
    """The distinct shapes trianglengin deals, from the first hands of
    ``SHAPE_DISCOVERY_SEEDS`` games, sorted."""
    found: set[Triangles] = set()
    for seed in range(SHAPE_DISCOVERY_SEEDS):
        for shape in GameState(env_cfg, initial_seed=seed).get_shapes():
            if shape is not None:
                found.add(tuple(shape.triangles))
    return tuple(sorted(found))


def symmetry_tables(env_cfg: EnvConfig | None = None) -> SymmetryTables:
    """The tables of ``env_cfg``'s board (trianglengin's default when None); cached."""
    cfg = env_cfg or EnvConfig()
    return _tables(
        cfg.ROWS,
        cfg.COLS,
        cfg.NUM_SHAPE_SLOTS,
        tuple(map(tuple, cfg.PLAYABLE_RANGE_PER_ROW)),
        known_shapes(env_cfg),
    )


@cache
def _tables(
    rows: int,
    cols: int,
    num_slots: int,
    ranges: tuple[tuple[int, int], ...],
    known: tuple[Triangles, ...],
) -> SymmetryTables:
    spec = feature_spec(
        EnvConfig(ROWS=rows, COLS=cols, NUM_SHAPE_SLOTS=num_slots, PLAYABLE_RANGE_PER_ROW=ranges)
    )
    playable = [(r, c) for r in range(rows) for c in range(cols) if spec.playable[r, c]]
    points = [_centroid(r, c) for r, c in playable]
    cx = Fraction(sum(x for x, _ in points), len(points))
    cy = Fraction(sum(y for _, y in points), len(points))
    lines = [
        {frozenset(line) for line in map(tuple, board_lines(spec.playable, d))} for d in DIRECTIONS
    ]
    shapes: tuple[Triangles, ...] = ((), *known)
    shape_index = {shape: k for k, shape in enumerate(shapes)}
    cells = rows * cols

    names, cell_maps, direction_maps, images, anchors = [], [], [], [], []
    for name in SYMMETRY_NAMES:
        mapping: dict[tuple[int, int], tuple[int, int]] = {}
        for r, c in playable:
            x, y = _centroid(r, c)
            tx, ty = _transform(name, x - cx, y - cy)
            image = _cell_at(tx + cx, ty + cy)
            if image is None or not spec.playable[image]:
                break
            mapping[(r, c)] = image
        if len(mapping) != len(playable):
            continue
        directions = []
        for d_lines in lines:
            moved = {frozenset(mapping[cell] for cell in line) for line in d_lines}
            directions.append(next((e for e, e_lines in enumerate(lines) if moved == e_lines), -1))
        if sorted(directions) != list(range(len(DIRECTIONS))):
            continue
        cell_map = np.arange(cells, dtype=np.int64)
        for (r, c), (tr, tc) in mapping.items():
            cell_map[r * cols + c] = tr * cols + tc
        image_ids = np.full(len(shapes), -1, dtype=np.int64)
        image_ids[0] = 0
        anchor_map = np.full((len(shapes), cells), -1, dtype=np.int64)
        for k, shape in enumerate(shapes[1:], start=1):
            for r, c in playable:
                covered = [(r + dr, c + dc) for dr, dc, _ in shape]
                if not all(cell in mapping for cell in covered):
                    continue
                if _up(r, c) != shape[0][2]:
                    continue
                moved_cells = [mapping[cell] for cell in covered]
                image_shape = _normalize(moved_cells)
                if image_shape not in shape_index:
                    break
                image_ids[k] = shape_index[image_shape]
                tr, tc = min(moved_cells)
                anchor_map[k, r * cols + c] = tr * cols + tc
        names.append(name)
        cell_maps.append(cell_map)
        direction_maps.append(directions)
        images.append(image_ids)
        anchors.append(np.where(image_ids[:, None] >= 0, anchor_map, -1))

    code_to_shape = np.full(2 * _ANCHOR_UP_CODE, -1, dtype=np.int64)
    encoding = np.stack([_slot_encoding(shape) for shape in shapes])
    for k in range(1, len(shapes)):
        code_to_shape[_slot_code(encoding[k : k + 1])[0]] = k
    return SymmetryTables(
        names=tuple(names),
        num_slots=num_slots,
        cell_map=np.stack(cell_maps),
        direction_map=np.asarray(direction_maps, dtype=np.int64),
        shapes=shapes,
        shape_image=np.stack(images),
        anchor_map=np.stack(anchors),
        code_to_shape=code_to_shape,
        encoding=encoding,
    )


def _slot_code(slots: np.ndarray) -> np.ndarray:
    """int64 ``[...]`` (anchor_up, footprint bits) code of slot features ``[..., SLOT_FEATURES]``."""
    bits = slots[..., FOOTPRINT_START : FOOTPRINT_START + len(FOOTPRINT_OFFSETS)] > 0.5
    weights = 1 << np.arange(len(FOOTPRINT_OFFSETS), dtype=np.int64)
    codes: np.ndarray = (bits * weights).sum(axis=-1) + (slots[..., 1] > 0.5) * _ANCHOR_UP_CODE
    return codes


def hand_shapes(other: np.ndarray, tables: SymmetryTables) -> np.ndarray:
    """int64 ``[B, S]`` shape index (into ``tables.shapes``; 0 empty) of each slot of extra
    features ``[B, F]``. Raises ``ValueError`` on a slot that holds no shape trianglengin deals."""
    blocks = other[:, : tables.num_slots * SLOT_FEATURES]
    blocks = blocks.reshape(len(other), tables.num_slots, SLOT_FEATURES)
    ids = np.where(blocks[:, :, 0] > 0.5, tables.code_to_shape[_slot_code(blocks)], 0)
    if (ids < 0).any():
        raise ValueError("a slot's features describe no shape that trianglengin deals")
    return ids


def choose_symmetries(
    other: np.ndarray, allowed: np.ndarray, tables: SymmetryTables, rng: np.random.Generator
) -> np.ndarray:
    """int64 ``[B]``: per sample of extra features ``[B, F]``, one symmetry drawn uniformly
    among the identity and those of ``allowed`` (indices into ``tables.names``) that map every
    shape of its hand onto a shape trianglengin deals."""
    shapes = hand_shapes(other, tables)
    candidates = np.union1d([0], allowed)
    exact = (tables.shape_image[candidates][:, shapes] >= 0).all(axis=2).T  # [B, candidates]
    keys = rng.random(exact.shape) * exact
    chosen: np.ndarray = candidates[np.argmax(keys, axis=1)]
    return chosen


def augment_batch(batch: Batch, symmetries: np.ndarray, tables: SymmetryTables) -> Batch:
    """``batch`` with sample ``i`` transformed by symmetry ``symmetries[i]`` (an index into
    ``tables.names`` that maps its hand exactly: see ``choose_symmetries``). Value targets,
    importance weights and buffer indices are unchanged."""
    grid, other = batch.grid, batch.other
    b, planes, h, w = grid.shape
    cells = h * w
    num_slots = planes - NUM_BASE_PLANES
    sym = np.asarray(symmetries, dtype=np.int64)
    shapes = hand_shapes(other, tables)
    images = tables.shape_image[sym[:, None], shapes]  # [B, S]
    if (images < 0).any():
        raise ValueError("a symmetry was asked of a hand it does not map onto dealt shapes")
    cell_map = tables.cell_map[sym]  # [B, cells]

    src = grid.reshape(b, planes, cells)
    out = src.copy()
    np.put_along_axis(out[:, 0], cell_map, src[:, 0], axis=1)
    moved = np.empty_like(src[:, 3:NUM_BASE_PLANES])
    np.put_along_axis(moved, np.broadcast_to(cell_map[:, None], moved.shape), src[:, 3:6], axis=2)
    out[np.arange(b)[:, None], 3 + tables.direction_map[sym]] = moved

    anchor_map = tables.anchor_map[sym[:, None], shapes]  # [B, S, cells]
    out[:, NUM_BASE_PLANES:] = _move_actions(src[:, NUM_BASE_PLANES:], anchor_map)
    policy = _move_actions(batch.policy.reshape(b, num_slots, cells), anchor_map)
    valid = _move_actions(batch.valid_mask.reshape(b, num_slots, cells), anchor_map)

    new_other = other.copy()
    slot_view = new_other[:, : num_slots * SLOT_FEATURES].reshape(b, num_slots, SLOT_FEATURES)
    mobility = slot_view[:, :, 3].copy()
    slot_view[:] = tables.encoding[images]
    slot_view[:, :, 3] = mobility
    return Batch(
        grid=out.reshape(grid.shape),
        other=new_other,
        policy=policy.reshape(batch.policy.shape),
        valid_mask=valid.reshape(batch.valid_mask.shape),
        value_target=batch.value_target,
        weights=batch.weights,
        indices=batch.indices,
    )


def _move_actions(values: np.ndarray, anchor_map: np.ndarray) -> np.ndarray:
    """Per-action values ``[B, S, cells]`` moved to their images' anchors (``anchor_map``
    ``[B, S, cells]``); anchors that map nowhere must hold zero (no legal action there)."""
    out = np.zeros_like(values)
    b, s, _ = np.nonzero(anchor_map >= 0)
    source = anchor_map >= 0
    out[b, s, anchor_map[source]] = values[source]
    return out
