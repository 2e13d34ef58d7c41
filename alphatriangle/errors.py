"""Errors the CLI reports as one line (kept free of heavy imports: the CLI loads it first)."""


class FinalSaveError(RuntimeError):
    """Training stopped but its last state could not be saved (e.g. the disk is full)."""


class SidecarLostError(RuntimeError):
    """The run's trieye actor died for good, so nothing more could be logged or saved."""
