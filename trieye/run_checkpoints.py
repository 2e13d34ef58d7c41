"""A run's checkpoints as the sidecar keeps them, glued to its metrics and run.json.

No Ray here. A save carries the aggregation state, so that a resume neither repeats nor skips
metric steps, and is recorded in run.json; a load continues that state and says from which step
TensorBoard must hide what an earlier session wrote.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from trieye.config import TrieyeConfig
from trieye.intake import Intake
from trieye.persistence import Buffer, CheckpointStore, LoadedCheckpoint, Validator
from trieye.run_lifecycle import RunLifecycle

logger = logging.getLogger("trieye")


class RunCheckpoints:
    """Saves and loads the checkpoints of the run that `run` records; `lock` is the sidecar's
    lock around writes to run.json."""

    def __init__(
        self,
        config: TrieyeConfig,
        intake: Intake,
        run: RunLifecycle,
        lock: threading.RLock,
    ) -> None:
        ctx = run.ctx
        self.store = CheckpointStore(
            ctx.checkpoint_dir,
            ctx.buffer_dir,
            config.keep_last_checkpoints,
            config.keep_last_buffers,
        )
        self._intake = intake
        self._run = run
        self._lock = lock
        self.purge_step: int | None = None
        """The first step the resumed run writes again, which TensorBoard purges from."""
        self.resumed_from_step: int | None = None

    def save(self, step: int, state: dict[str, Any], buffer: Buffer | None, is_best: bool) -> Path:
        path = self.store.save(step, state, buffer, is_best, self._intake.state_dict())
        with self._lock:
            self._run.record_checkpoint(path, step)
        logger.info("saved checkpoint %s%s", path, " with buffer" if buffer is not None else "")
        return path

    def load_latest(
        self, validate: Validator | None = None, validate_buffer: Validator | None = None
    ) -> LoadedCheckpoint | None:
        """The newest usable checkpoint (see `CheckpointStore.load_latest`), its aggregation
        state continued."""
        loaded = self.store.load_latest(validate, validate_buffer)
        if loaded is not None:
            if loaded.sidecar_state:
                self._intake.load_state_dict(loaded.sidecar_state)
            self.purge_step = loaded.step + 1
            self.resumed_from_step = loaded.step
            logger.info("loaded checkpoint %s (step %d)", loaded.path, loaded.step)
        elif self._run.resumed:
            # With no checkpoint, a run seen before starts from scratch and rewrites everything.
            self.purge_step = 0
        return loaded
