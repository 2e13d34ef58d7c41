"""Pictures of a game: unicode text for the terminal, Pillow images for GIF/PNG files."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from trianglengin import GameState, Shape

EMPTY_UP, EMPTY_DOWN, FULL_UP, FULL_DOWN = "△", "▽", "▲", "▼"
BACKGROUND = (24, 24, 28)
EMPTY_FILL = (52, 54, 62)
OUTLINE = (90, 92, 100)


def is_up(row: int, col: int) -> bool:
    """trianglengin's orientation rule (``GridData::is_up``): odd ``row + col`` points up."""
    return (row + col) % 2 == 1


def board_text(state: GameState) -> str:
    """The board as rows of unicode triangles, then the shapes in hand and the score."""
    grid = state.get_grid_data_np()
    occupied, death = grid["occupied"], grid["death"]
    rows, cols = occupied.shape
    lines = []
    for r in range(rows):
        cells = []
        for c in range(cols):
            if death[r, c]:
                cells.append(" ")
            elif occupied[r, c]:
                cells.append(FULL_UP if is_up(r, c) else FULL_DOWN)
            else:
                cells.append(EMPTY_UP if is_up(r, c) else EMPTY_DOWN)
        lines.append("".join(cells))
    hand = "   ".join(
        f"[{i}] " + (shape_text(s) if s else "-") for i, s in enumerate(state.get_shapes())
    )
    lines.append(f"hand: {hand}")
    lines.append(f"step {state.current_step}  score {state.game_score():.2f}")
    return "\n".join(lines)


def shape_text(shape: Shape) -> str:
    """A shape on one line: its triangles as ▲/▼ per row, rows joined by '/'."""
    rows: dict[int, list[tuple[int, bool]]] = {}
    for r, c, up in shape.triangles:
        rows.setdefault(r, []).append((c, up))
    parts = []
    for r in sorted(rows):
        cells = dict(rows[r])
        lo, hi = min(cells), max(cells)
        parts.append(
            "".join(
                (FULL_UP if cells[c] else FULL_DOWN) if c in cells else " "
                for c in range(lo, hi + 1)
            )
        )
    return "/".join(parts)


def color_for(color_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per trianglengin colour id."""
    hue = (color_id * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _triangle(x0: float, y0: float, w: float, h: float, up: bool) -> list[tuple[float, float]]:
    if up:
        return [(x0, y0 + h), (x0 + w, y0 + h), (x0 + w / 2, y0)]
    return [(x0, y0), (x0 + w, y0), (x0 + w / 2, y0 + h)]


def board_image(state: GameState, cell: int = 28, caption: str = "") -> Image.Image:
    """The board and the shapes in hand as an RGB image."""
    grid = state.get_grid_data_np()
    occupied, death, colors = grid["occupied"], grid["death"], grid["color_id"]
    rows, cols = occupied.shape
    w, h = cell, cell * 0.866
    board_w = int((cols + 1) * w / 2) + 2 * cell
    hand_h = int(3 * h) + cell
    image = Image.new("RGB", (board_w, int(rows * h) + hand_h + cell), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left, top = cell, cell * 0.5
    for r in range(rows):
        for c in range(cols):
            if death[r, c]:
                continue
            fill = color_for(int(colors[r, c])) if occupied[r, c] else EMPTY_FILL
            poly = _triangle(left + c * w / 2, top + r * h, w, h, is_up(r, c))
            draw.polygon(poly, fill=fill, outline=OUTLINE)
    slot_w = board_w / 3
    hand_top = top + rows * h + cell * 0.5
    small_w, small_h = w * 0.6, h * 0.6
    for i, shape in enumerate(state.get_shapes()):
        if shape is None:
            continue
        min_c = min(c for _, c, _ in shape.triangles)
        for r, c, up in shape.triangles:
            x = i * slot_w + cell * 0.5 + (c - min_c) * small_w / 2
            y = hand_top + r * small_h
            draw.polygon(
                _triangle(x, y, small_w, small_h, up),
                fill=color_for(shape.color_id),
                outline=OUTLINE,
            )
    text = caption or f"step {state.current_step}  score {state.game_score():.2f}"
    draw.text((cell * 0.5, image.height - cell * 0.9), text, fill=(230, 230, 230))
    return image


def save_frames(frames: Sequence[Image.Image], path: Path, ms_per_frame: int = 400) -> list[Path]:
    """Write frames as one animated ``.gif`` or numbered ``.png`` files; returns the files."""
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        frames[0].save(
            path,
            save_all=True,
            append_images=list(frames[1:]),
            duration=ms_per_frame,
            loop=0,
            disposal=1,
        )
        return [path]
    if suffix == ".png":
        written = []
        width = len(str(len(frames) - 1))
        for i, frame in enumerate(frames):
            target = path.with_name(f"{path.stem}_{i:0{width}d}.png")
            frame.save(target)
            written.append(target)
        return written
    raise ValueError(f"{path}: unsupported output {suffix!r}; use .gif, .png or .txt")


def gif_frame_count(path: Path) -> int:
    """Frames in an animated GIF (used by tests and to report what was written)."""
    with Image.open(path) as gif:
        return int(getattr(gif, "n_frames", 1))


def frame_array(image: Image.Image) -> np.ndarray:
    """An image as a uint8 ``[H, W, 3]`` array."""
    return np.asarray(image.convert("RGB"))
