"""Hand-made run files, as a copied, damaged or crafted run folder would hold them."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def forge_checkpoint(checkpoint_dir: Path, step: int, data: bytes) -> Path:
    """A checkpoint file holding ``data`` whose manifest's size and sha256 match it, so that
    only loading it can tell it is not a checkpoint."""
    path = checkpoint_dir / f"ckpt_{step:012d}.pt"
    path.write_bytes(data)
    manifest = {
        "step": step,
        "file": path.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "is_best": False,
    }
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def code_running_pickle(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is unpickled (what torch.load refuses)."""
    return pickle.dumps(_RunsCode(marker))


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """``directory`` made unwritable for the block, even to root (immutable: ``chattr +i``);
    skips the test where that is not permitted."""
    import pytest

    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make {directory} immutable ({done.stderr.decode().strip()})")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def _restamp(path: Path) -> None:
    """Make the manifest beside ``path`` match its new contents (size and sha256)."""
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    data = path.read_bytes()
    manifest.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest))


def rewrite_buffer(path: Path, **arrays: Any) -> None:
    """Replace arrays of the buffer snapshot at ``path``, keeping it a verified snapshot."""
    import numpy as np

    with np.load(path) as archive:
        content = {key: archive[key] for key in archive.files}
    content.update(arrays)
    with open(path, "wb") as handle:
        np.savez(handle, **content)
    _restamp(path)


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "48m") mounted at ``where``; skips the test where mounting is
    not permitted (it needs root)."""
    import pytest

    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(disk: Path) -> Path:
    """Write a file until the disk refuses more; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for size in (1 << 16, 512):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    return filler
