"""The errors the CLI reports as one line (kept free of heavy imports: the CLI loads it first).

Two kinds, and only these two become one line without a traceback:

- ``UsageError``: bad input (a config file, a run name, a seed range, a checkpoint to load).
  Raised before anything is written; exit code 2.
- ``RunStoppedError``: training stopped for a reason the user can act on (the sidecar died
  for good, the final save failed, the loss became non-finite). Exit code 1.

Anything else that escapes is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2, nothing changed on disk."""


class ConfigError(UsageError):
    """A config file or setting that cannot be used; the message names the file and field."""


class RunStoppedError(RuntimeError):
    """Training stopped for a reason outside the code; the message says what to do next."""


class FinalSaveError(RunStoppedError):
    """Training stopped but its last state could not be saved (e.g. the disk is full)."""


class SidecarLostError(RunStoppedError):
    """The run's trieye actor died for good, so nothing more could be logged or saved."""


class NonFiniteLossError(RunStoppedError):
    """A gradient step produced a non-finite loss or gradient norm; it was not applied."""
