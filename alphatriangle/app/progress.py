"""The live progress view of ``alphatriangle train``."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from alphatriangle.distributed.meter import Snapshot


class ProgressView:
    """Live table on a terminal; a plain line every 10 s otherwise (logs, CI, pipes)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = self.console.is_terminal and not os.environ.get("CI")
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> ProgressView:
        if self.live:
            self._live = Live(Table(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)

    def show(self, snap: Snapshot) -> None:
        eta = "-"
        done = snap.step - snap.start_step
        if done > 0:
            remaining = (snap.max_steps - snap.step) * snap.elapsed_s / done
            eta = (
                f"{remaining / 86400:.1f} days"
                if remaining >= 86400
                else time.strftime("%H:%M:%S", time.gmtime(remaining))
            )
        fields = {
            "step": f"{snap.step}/{snap.max_steps}",
            "episodes": str(snap.episodes),
            "buffer": str(snap.buffer_size),
            "moves/s": f"{snap.moves_per_s:.1f}",
            "samples/s": f"{snap.samples_per_s:.0f}",
            "score (last 50)": "-"
            if snap.mean_score == float("-inf")
            else f"{snap.mean_score:.2f}",
            **{k: f"{v:.3f}" for k, v in snap.losses.items() if k.startswith("loss/")},
            "ETA": eta,
        }
        if self._live is not None:
            table = Table(*fields.keys())
            table.add_row(*fields.values())
            self._live.update(table)
        elif time.monotonic() - self._last_line >= 10:
            self._last_line = time.monotonic()
            line = "  ".join(f"{k}={v}" for k, v in fields.items())
            self.console.print(line, highlight=False, soft_wrap=True)
