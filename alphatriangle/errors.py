"""The errors the CLI reports as one line (kept free of heavy imports: the CLI loads it first).

Two kinds, and only these two become one line without a traceback:

- ``UsageError``: bad input (a config file, a run name, a seed range, a checkpoint to load).
  Raised before anything is written; exit code 2.
- ``RunStoppedError``: training stopped for a reason the user can act on (the sidecar died
  for good, the final save failed, the loss became non-finite). Exit code 1.

Anything else that escapes is a bug and keeps its traceback.

What a message echoes of the user's input goes through ``shown``: a 5 MB config key or a
100,000-character run name would otherwise make a line nobody can read.
"""

ECHO_LIMIT = 200
"""Characters of one piece of user input (a name, a path, a key) that an error message shows."""
LINE_LIMIT = 1000
"""Characters of a whole one-line error, whatever the libraries it quotes put in it."""


def shown(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` as an error message shows it: whole up to ``limit`` characters, else its
    start and its end around an ellipsis (the end of a path names the file)."""
    whole = str(text)
    if len(whole) <= limit:
        return whole
    keep = (limit - 1) // 2
    return f"{whole[:keep]}…{whole[len(whole) - keep :]}"


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
