"""A per-run lock, so two trainers never write the same run at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from alphatriangle.errors import UsageError


class RunLockedError(UsageError):
    """Another live process holds the run."""


def _lock_path(run_dir: Path) -> Path:
    return run_dir / ".lock"


def _holder_pid(fd: int) -> str:
    """The process id the lock's holder wrote into the lock file."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"


class RunLock:
    """Exclusive ``flock`` on ``<run_dir>/.lock`` for as long as the ``with`` block runs.

    The kernel drops the lock when its holder dies (even by ``kill -9``), so a lock file left
    behind by a killed trainer never blocks a restart: only a live holder does.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = _lock_path(run_dir)
        self._fd: int | None = None
        self._created_dir = False

    def __enter__(self) -> RunLock:
        self._created_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise RunLockedError(
                f"run {self.path.parent.name!r} is already being trained by process {holder}; "
                "stop that process first or pick another --run-name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        if self._created_dir and [p.name for p in self.path.parent.iterdir()] == [self.path.name]:
            # A new run that stopped before writing anything leaves no trace behind.
            self.path.unlink()
            self.path.parent.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def lock_holder(run_dir: Path) -> str | None:
    """The process id written by the live trainer holding ``run_dir``'s lock, or ``None``
    when no live process holds it (never trained, finished, or killed)."""
    try:
        fd = os.open(_lock_path(run_dir), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_pid(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
