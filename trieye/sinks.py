"""Where aggregated metrics go. Each sink only has `write(metrics, step)` and `close()`.

mlflow and torch.utils.tensorboard are imported inside the sinks: they take seconds to import,
and every process that merely logs events (Ray workers) imports `trieye` without needing them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

MLFLOW_BATCH_LIMIT = 1000  # log_batch rejects more metrics than this in one call


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` is the disk refusing a write (full, read-only, an I/O error), raised
    directly (files) or as the cause of a backend's own exception (MLflow wraps sqlite's
    OperationalError "database or disk is full" in an MlflowException)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | sqlite3.OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Sink(Protocol):
    def write(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowSink:
    """Logs metrics to one MLflow run, never a step at or before one already logged.

    MLflow's metric history is append-only: after a crash and a resume from an older
    checkpoint the replayed steps already have points, and logging them again would give a
    history with repeated or decreasing steps. Such points are dropped and counted
    (`skipped`) rather than held: they belong to a timeline that the checkpoint rolled back,
    and holding them would fold replayed values into the first new point. TensorBoard, which
    can purge, still receives them.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        last_logged: dict[str, int],
        persist: Callable[[dict[str, int], int], None],
    ) -> None:
        self._client = client
        self._run_id = run_id
        self.last_logged = dict(last_logged)
        self.skipped = 0
        self._persist = persist

    def write(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        fresh = {k: v for k, v in metrics.items() if self.last_logged.get(k, -1) < step}
        skipped = len(metrics) - len(fresh)
        if not fresh:
            self.skipped += skipped
            return
        before = dict(self.last_logged)
        self.last_logged.update(dict.fromkeys(fresh, step))
        timestamp = int(time.time() * 1000)
        entries = [Metric(key, value, timestamp, step) for key, value in fresh.items()]
        logged: set[str] = set()
        try:
            # Record the new cursor before logging: a crash in between then loses these points
            # instead of logging the same step twice after the restart.
            self._persist(dict(self.last_logged), self.skipped + skipped)
            for chunk in _chunks(entries, MLFLOW_BATCH_LIMIT):
                self._client.log_batch(self._run_id, metrics=chunk)
                logged.update(entry.key for entry in chunk)
        except BaseException:
            # What was not logged may be written again by a later call (the caller holds it).
            for key in set(fresh) - logged:
                if key in before:
                    self.last_logged[key] = before[key]
                else:
                    del self.last_logged[key]
            raise
        self.skipped += skipped

    def close(self) -> None:
        """Nothing to release: the run's status is set by its owner."""


class TensorBoardSink:
    """Scalars in TensorBoard event files under `log_dir`.

    `purge_step` is the first step a resumed run writes again: TensorBoard then hides the
    points at or after it left by the previous session, so the curves do not overlap.

    The event file is opened at the first write. After a write the disk refused, the writer is
    dead (its thread stops at an I/O error): the sink drops it, deletes its event file if that
    never took a point (so an outage leaves no empty files behind), and the next write opens a
    new one. The purge goes into each new file until one holding it has reached the disk: a
    later file that purged again would hide this session's own earlier points.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.log_dir = log_dir
        self.purge_step = purge_step
        self._writer: Any = None
        self._suffix = ""
        """Ends the name of the current writer's event file, which names no other file."""
        self._flushed = False
        """Whether a write through the current writer reached the disk."""

    def write(self, metrics: Mapping[str, float], step: int) -> None:
        try:
            if self._writer is None:
                self._open()
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, global_step=step)
            self._writer.flush()
        except BaseException:
            self._drop()
            raise
        self._flushed = True
        self.purge_step = None

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._suffix = f".{uuid.uuid4().hex[:12]}"
        self._flushed = False
        self._writer = SummaryWriter(
            log_dir=str(self.log_dir), purge_step=self.purge_step, filename_suffix=self._suffix
        )

    def _drop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            # Its thread died of the error being raised, which closing it would raise again.
            with contextlib.suppress(Exception):
                writer.close()
        if not self._flushed and self._suffix:
            for path in self.log_dir.glob(f"*{self._suffix}"):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ConsoleSink:
    """One line per write, e.g. `[trieye run-a] step 1200 | loss/total=0.4312 | sps=212.5`."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stdout

    def write(self, metrics: Mapping[str, float], step: int) -> None:
        fields = " | ".join(f"{key}={value:.6g}" for key, value in sorted(metrics.items()))
        print(f"[trieye {self._label}] step {step} | {fields}", file=self._stream, flush=True)

    def close(self) -> None:
        self._stream.flush()
