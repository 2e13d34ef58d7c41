"""Ctrl-C and SIGTERM: one meaning for the whole life of a command.

SIGTERM is what ``docker stop``, Kubernetes, Slurm and systemd send to stop a program, so it
means what Ctrl-C means. The first of either:

- while stopping at once loses nothing (before a run has changed anything, in ``eval`` and
  ``play``), raises ``KeyboardInterrupt`` in the main thread, as Python's own Ctrl-C handler
  does: every ``with`` block on the way out cleans up, and Ray, whose waits check for signals
  from C++, knows that exception (any other would reach the caller as a ``SystemError``);
- inside a call that must not be cut short (``uninterrupted``), is held until it returns;
- once a run trains (``run_started``), only asks it to stop (``requested``), so that it stops
  its workers and saves a final checkpoint first.

A second signal ends the process at once (``INTERRUPTED_EXIT_CODE``), and the processes of
``eval``'s pool with it: every file is written atomically, so nothing on disk is left
half-written.

Kept free of heavy imports: the CLI installs the handler before it imports anything else.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, ParamSpec, TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT_CODE = 130
"""The exit code of a command a signal cut short: 128 + SIGINT, as shells report a Ctrl-C."""

P = ParamSpec("P")
R = TypeVar("R")


class _State:
    received: str | None = None
    """The name of the first signal received, if any."""
    running = False
    """Whether a run is training: a first signal then asks it to stop instead of unwinding."""
    holding = False
    """Whether an ``uninterrupted`` call runs: a first signal then waits for its return."""
    other_unraisable: Callable[[Any], Any] = sys.__unraisablehook__
    """The hook that reports the unraisable exceptions that are not a held signal."""


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _state.received is not None:
        _say(f"{name} again: quitting at once")
        _kill_pool_processes()
        os._exit(INTERRUPTED_EXIT_CODE)
    _state.received = name
    if _state.holding:
        return
    if not _state.running:
        raise KeyboardInterrupt(name)
    _say(f"{name}: stopping, saving a final checkpoint (a second Ctrl-C or SIGTERM quits at once)")


def _kill_pool_processes() -> None:
    """Kill this process's ``multiprocessing`` children (``eval``'s pool: they hold the signals
    blocked and would play on without it); a no-op where none was ever started."""
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        for child in mp.active_children():
            child.kill()


def _say(line: str) -> None:
    # Straight to the file descriptor: the main thread may be inside a print of its own, and
    # a buffered write from here would then fail as a reentrant call.
    os.write(1, f"\n{line}\n".encode())


def install() -> None:
    """Handle SIGINT and SIGTERM here from now on."""
    for sig in SIGNALS:
        signal.signal(sig, _handle)
    if sys.unraisablehook is not _unraisable:
        _state.other_unraisable = sys.unraisablehook
        sys.unraisablehook = _unraisable


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    # A KeyboardInterrupt raised where Python cannot raise it (in a fork or finalizer callback,
    # while Ray starts its processes) would be printed as "Exception ignored in ...", with a
    # traceback, and dropped. It is not lost: `check` raises it at the next step of start-up.
    if unraisable.exc_type is KeyboardInterrupt and _state.received is not None:
        return
    _state.other_unraisable(unraisable)


@contextmanager
def handled() -> Iterator[None]:
    """Install the handler for the block, starting with no signal received and no run
    training, and put back the handlers found on entry afterwards. A run that started stays
    marked as such: once its work is saved, a first signal has nothing left to unwind."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _state.received, _state.running = None, False
    install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(sig, handler)


def uninterrupted(call: Callable[P, R]) -> Callable[P, R]:
    """``call`` with a first signal held until it returns, then raised."""

    @functools.wraps(call)
    def held(*args: P.args, **kwargs: P.kwargs) -> R:
        _state.holding = True
        try:
            result = call(*args, **kwargs)
        finally:
            _state.holding = False
        check()
        return result

    return held


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came and was not acted on: it was held, or the
    code it interrupted swallowed the exception (as Python does in some callbacks)."""
    if _state.received is not None and not _state.running:
        raise KeyboardInterrupt(_state.received)


def run_started() -> None:
    """Mark the moment before a run first changes anything on disk: a signal before it
    unwinds the command (``check``), one after it only sets ``requested``."""
    check()
    _state.running = True


def received() -> str | None:
    """The name of the first SIGINT or SIGTERM that asked the process to stop, if any."""
    return _state.received


def requested() -> bool:
    """Whether a SIGINT or SIGTERM asked the process to stop."""
    return _state.received is not None
