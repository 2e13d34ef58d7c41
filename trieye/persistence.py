"""Checkpoints and replay-buffer snapshots on disk: atomic, verified, never unpickled.

Layout (one pair of files per save, the JSON manifest written last so that its presence
means the data file is complete):

    checkpoints/ckpt_000000001200.pt   torch.save of the caller's state dict
    checkpoints/ckpt_000000001200.json {"step", "file", "size", "sha256", "is_best", "sidecar", ...}
    buffers/buffer_000000001200.npz    np.savez of the caller's arrays
    buffers/buffer_000000001200.json   {"step", "file", "size", "sha256", "arrays", ...}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trieye.atomic import atomic_open, atomic_write_json, remove_stale_temp_files

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SUFFIX = {"ckpt": ".pt", "buffer": ".npz"}
"""The data file of a manifest named ``<prefix>_<step>.json`` is ``<prefix>_<step><suffix>``."""
Buffer = dict[str, np.ndarray]


class CheckpointError(RuntimeError):
    """No checkpoint can be loaded although some exist, or a save was given bad data."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A verified checkpoint and the newest verified buffer snapshot not newer than it."""

    step: int
    state: dict[str, Any]
    """What the caller passed to save_checkpoint, loaded with torch.load(weights_only=True)."""
    buffer: Buffer | None
    """Arrays of the buffer snapshot, or None when there is no usable snapshot."""
    path: Path
    buffer_step: int | None = None
    buffer_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    """One line per newer file that was skipped because it failed verification."""
    sidecar_state: dict[str, Any] = field(default_factory=dict)
    """The aggregation state the sidecar saved with this checkpoint."""


def check_state(state: Any, where: str = "state") -> None:
    """Raise TypeError unless `state` holds only what torch.load(weights_only=True) reads back."""
    if (
        isinstance(state, torch.Tensor)
        or state is None
        or isinstance(state, bool | int | float | str)
    ):
        return
    if isinstance(state, Mapping):
        for key, value in state.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where}: key {key!r} must be a str or int")
            check_state(value, f"{where}[{key!r}]")
        return
    if isinstance(state, list | tuple):
        for index, value in enumerate(state):
            check_state(value, f"{where}[{index}]")
        return
    hint = (
        " (use torch.from_numpy, or pass arrays as `buffer`)"
        if isinstance(state, np.ndarray)
        else ""
    )
    raise TypeError(
        f"{where} is a {type(state).__name__}: a checkpoint state may hold only tensors, "
        f"numbers, strings, None, and dicts/lists/tuples of them{hint}"
    )


def check_buffer(buffer: Mapping[str, np.ndarray]) -> None:
    """Raise TypeError unless `buffer` is str -> numeric numpy array (loadable without pickle)."""
    for key, array in buffer.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"buffer key {key!r} must be a non-empty str")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"buffer[{key!r}] is a {type(array).__name__}, not a numpy array")
        if array.dtype.hasobject:
            raise TypeError(
                f"buffer[{key!r}] has dtype object, which cannot be loaded without pickle"
            )


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


Validator = Callable[[Mapping[str, Any]], str | None]
"""Says why a loaded checkpoint state or buffer is not one the caller can use (wrong keys,
shapes, another program's file), or None when it is. It runs in the process that loads."""

_REQUIRED = {"step": int, "file": str, "size": int, "sha256": str}


def _member(directory: Path, name: object) -> Path | None:
    """``directory / name`` if ``name`` is a plain file name that resolves inside ``directory``
    (no separators, no ``..``, no symlink out), else None: a manifest copied from elsewhere or
    written by hand must not make us read or delete anything outside the run."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        return None
    path = directory / name
    try:
        inside = path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if inside else None


def _verify_file(path: Path, manifest: Mapping[str, Any]) -> str | None:
    """Why `path` does not match its manifest, or None when it does."""
    if not path.is_file():
        return "file is missing"
    size, sha = _digest(path)
    if size != manifest["size"]:
        return f"size {size} bytes, expected {manifest['size']}: truncated or overwritten"
    if sha != manifest["sha256"]:
        return "sha256 does not match the manifest: the file is corrupt"
    return None


def _name_step(path: Path, prefix: str) -> int | None:
    """The step in a manifest's name, ``<prefix>_<step>.json``, or None for any other name."""
    digits = path.name[len(prefix) + 1 : -len(".json")]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def _own_file(manifest: Mapping[str, Any]) -> str:
    """The data file this store writes beside the manifest: ``ckpt_<step>.json`` has
    ``ckpt_<step>.pt``."""
    manifest_path: Path = manifest["manifest_path"]
    prefix = manifest_path.name.split("_", 1)[0]
    return manifest_path.stem + _SUFFIX[prefix]


def _read_manifests(directory: Path, prefix: str, warnings: list[str]) -> list[dict[str, Any]]:
    """Parsed manifests, newest first by the step in their file names (``name_step``), which
    this store chose, not by the step they say, which anyone can write; unreadable or
    malformed ones become warnings."""
    manifests = []
    for path in directory.glob(f"{prefix}_*.json"):
        step = _name_step(path, prefix)
        if step is None:
            warnings.append(f"manifest {path} is not named {prefix}_<step>.json; skipping it")
            continue
        try:
            manifest = json.loads(path.read_text())
            wrong = [k for k, kind in _REQUIRED.items() if not isinstance(manifest.get(k), kind)]
        except (OSError, ValueError) as exc:
            warnings.append(f"manifest {path} is unreadable ({exc}); skipping it")
            continue
        if not isinstance(manifest, dict) or wrong:
            warnings.append(f"manifest {path} lacks valid {wrong or 'fields'}; skipping it")
            continue
        manifest["manifest_path"] = path
        manifest["name_step"] = step
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: m["name_step"], reverse=True)


def _is_own(manifest: Mapping[str, Any], directory: Path) -> bool:
    """Whether ``manifest`` is one this store wrote and its data file is there: it names the
    file beside it (see `_own_file`) and the step in its own name. Only such manifests hold
    one of the "last K" places when pruning: a crafted or copied one never does."""
    own = _own_file(manifest)
    return (
        manifest["step"] == manifest["name_step"]
        and manifest["file"] == own
        and (path := _member(directory, own)) is not None
        and path.is_file()
    )


def _load_state(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_arrays(path: Path) -> Buffer:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _first_usable(
    directory: Path,
    manifests: list[dict[str, Any]],
    what: str,
    load: Callable[[Path], Any],
    validate: Validator | None,
    warnings: list[str],
) -> tuple[dict[str, Any], Path, Any] | None:
    """The newest of ``manifests`` whose file lies in ``directory``, matches its manifest,
    loads without running code and passes ``validate``: (manifest, path, payload). Each one
    skipped on the way adds a warning that names its file and why."""
    for manifest in manifests:
        path = _member(directory, manifest["file"])
        if path is None:
            warnings.append(
                f"{what} manifest {manifest['manifest_path']} names {manifest['file']!r}, "
                f"which is not a file in {directory}; skipping it"
            )
            continue
        if manifest["step"] != manifest["name_step"]:
            warnings.append(
                f"{what} manifest {manifest['manifest_path']} says step {manifest['step']}, "
                f"but its name says step {manifest['name_step']}; skipping it"
            )
            continue
        problem = _verify_file(path, manifest)
        payload: Any = None
        if problem is None:
            try:
                payload = load(path)
            except Exception as exc:  # a file from disk: whatever its parser raises, it is bad
                text = str(exc).strip()
                problem = f"cannot be loaded: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        if problem is None and not isinstance(payload, dict):
            problem = f"holds a {type(payload).__name__}, not a dict"
        if problem is None and validate is not None:
            problem = validate(payload)
        if problem is None:
            return manifest, path, payload
        warnings.append(f"{what} {path} is unusable ({problem}); trying an older one")
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_checkpoint(
    checkpoint_dir: Path, which: str | Path = "latest", validate: Validator | None = None
) -> LoadedCheckpoint:
    """Load one checkpoint's state read-only (no buffer, no pruning, no temp-file cleanup), for
    tools that inspect a run while its trainer may still be writing it.

    `which` is "latest" (newest usable), "best" (newest usable saved with is_best) or the path
    of a checkpoint file in `checkpoint_dir` (or its bare name). Raises CheckpointError saying
    what is missing or broken; `warnings` names the newer files skipped on the way.
    """
    warnings: list[str] = []
    if which in ("latest", "best"):
        manifests = (
            _read_manifests(checkpoint_dir, "ckpt", warnings) if checkpoint_dir.is_dir() else []
        )
        if which == "best":
            manifests = [m for m in manifests if m.get("is_best")]
        if not manifests:
            raise CheckpointError(f"no {which} checkpoint in {checkpoint_dir}")
    else:
        given = Path(which)
        path = given if given.exists() else checkpoint_dir / given
        if not path.exists():
            raise CheckpointError(f"checkpoint file {given} does not exist")
        if _member(checkpoint_dir, path.name) is None or not (
            path.resolve().parent == checkpoint_dir.resolve()
        ):
            raise CheckpointError(
                f"{given} is not a checkpoint file of this run; give 'latest', 'best' or the "
                f"name of a ckpt_*.pt file in {checkpoint_dir}"
            )
        manifests = [
            m
            for m in _read_manifests(checkpoint_dir, "ckpt", [])
            if m["manifest_path"].name == path.with_suffix(".json").name
        ]
        if not manifests:
            raise CheckpointError(f"{path} has no readable manifest ({path.with_suffix('.json')})")
    found = _first_usable(checkpoint_dir, manifests, "checkpoint", _load_state, validate, warnings)
    if found is None:
        raise CheckpointError("no usable checkpoint: " + "; ".join(warnings))
    manifest, path, state = found
    return LoadedCheckpoint(
        step=manifest["step"], state=state, buffer=None, path=path, warnings=warnings
    )


class CheckpointStore:
    """Saves, prunes and loads checkpoints and buffer snapshots of one run."""

    def __init__(
        self, checkpoint_dir: Path, buffer_dir: Path, keep_last: int = 3, keep_last_buffers: int = 2
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.buffer_dir = buffer_dir
        self.keep_last = keep_last
        self.keep_last_buffers = keep_last_buffers
        remove_stale_temp_files(checkpoint_dir)
        remove_stale_temp_files(buffer_dir)

    def save(
        self,
        step: int,
        state: dict[str, Any],
        buffer: Mapping[str, np.ndarray] | None = None,
        is_best: bool = False,
        sidecar_state: dict[str, Any] | None = None,
    ) -> Path:
        """Write one checkpoint (and a buffer snapshot when given); return the checkpoint path.

        Saving a step again replaces its files, but a step once saved as best stays best: a
        run's final save often falls on the step its last evaluation just kept as best.
        """
        check_state(state)
        if buffer is not None:
            check_buffer(buffer)
            self._save_buffer(step, buffer)
        path = self.checkpoint_dir / f"ckpt_{step:012d}.pt"
        is_best = is_best or any(
            m["manifest_path"] == path.with_suffix(".json") and m.get("is_best") is True
            for m in _read_manifests(self.checkpoint_dir, "ckpt", [])
        )
        with atomic_open(path) as handle:
            torch.save(state, handle)
        size, sha = _digest(path)
        manifest = {
            "format": FORMAT_VERSION,
            "step": step,
            "file": path.name,
            "size": size,
            "sha256": sha,
            "is_best": is_best,
            "with_buffer": buffer is not None,
            "created_at": _now(),
            "sidecar": sidecar_state or {},
        }
        atomic_write_json(path.with_suffix(".json"), manifest)
        self._prune()
        return path

    def _save_buffer(self, step: int, buffer: Mapping[str, np.ndarray]) -> None:
        path = self.buffer_dir / f"buffer_{step:012d}.npz"
        with atomic_open(path) as handle:
            np.savez(handle, **buffer)  # type: ignore[arg-type]
        size, sha = _digest(path)
        manifest = {
            "format": FORMAT_VERSION,
            "step": step,
            "file": path.name,
            "size": size,
            "sha256": sha,
            "arrays": {
                k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in buffer.items()
            },
            "created_at": _now(),
        }
        atomic_write_json(path.with_suffix(".json"), manifest)

    def _prune(self) -> None:
        """Keep the newest `keep_last` checkpoints, the newest one saved as best, and the
        newest `keep_last_buffers` buffer snapshots, newest by the step in their names and
        counting only the store's own (see `_is_own`): any other manifest is pruned, so none
        can hold a place for good. Manifests go first, so an interrupted prune leaves an
        orphan data file (ignored), never a manifest without its file."""
        checkpoints = _read_manifests(self.checkpoint_dir, "ckpt", [])
        buffers = _read_manifests(self.buffer_dir, "buffer", [])
        own = [m for m in checkpoints if _is_own(m, self.checkpoint_dir)]
        keep = {m["manifest_path"] for m in own[: self.keep_last]}
        best = next((m for m in own if m.get("is_best")), None)
        if best is not None:
            keep.add(best["manifest_path"])
        own_buffers = [m for m in buffers if _is_own(m, self.buffer_dir)]
        keep.update(m["manifest_path"] for m in own_buffers[: self.keep_last_buffers])
        for manifest in checkpoints:
            if manifest["manifest_path"] not in keep:
                self._delete(manifest, self.checkpoint_dir)
        for manifest in buffers:
            if manifest["manifest_path"] not in keep:
                self._delete(manifest, self.buffer_dir)

    @staticmethod
    def _delete(manifest: Mapping[str, Any], directory: Path) -> None:
        """Remove a manifest and its data file, but the data file only when it has exactly the
        name this store gives it (see `_own_file`): a manifest that names anything else (a
        crafted or copied one) never makes us delete a file we did not write."""
        manifest_path: Path = manifest["manifest_path"]
        own = _own_file(manifest)
        manifest_path.unlink(missing_ok=True)
        if manifest["file"] == own and (path := _member(directory, own)) is not None:
            path.unlink(missing_ok=True)
        else:
            logger.warning(
                "pruned %s without deleting %r: not the file this store writes beside it",
                manifest_path,
                manifest["file"],
            )

    def load_latest(
        self, validate: Validator | None = None, validate_buffer: Validator | None = None
    ) -> LoadedCheckpoint | None:
        """The newest usable checkpoint (see `_first_usable`) with the newest usable buffer
        snapshot not newer than it, or None when none was ever saved.

        Raises CheckpointError when checkpoints exist but none is usable: starting over
        silently would throw away a run.
        """
        warnings: list[str] = []
        checkpoints = _read_manifests(self.checkpoint_dir, "ckpt", warnings)
        found = _first_usable(
            self.checkpoint_dir, checkpoints, "checkpoint", _load_state, validate, warnings
        )
        if found is None:
            if warnings:
                raise CheckpointError("no usable checkpoint:\n  " + "\n  ".join(warnings))
            return None
        manifest, path, state = found
        buffers = [
            m
            for m in _read_manifests(self.buffer_dir, "buffer", warnings)
            if m["name_step"] <= manifest["step"]
        ]
        snapshot = _first_usable(
            self.buffer_dir, buffers, "buffer snapshot", _load_arrays, validate_buffer, warnings
        )
        for line in warnings:
            logger.warning(line)
        return LoadedCheckpoint(
            step=manifest["step"],
            state=state,
            buffer=None if snapshot is None else snapshot[2],
            path=path,
            buffer_step=None if snapshot is None else snapshot[0]["step"],
            buffer_path=None if snapshot is None else snapshot[1],
            warnings=warnings,
            sidecar_state=manifest["sidecar"] if isinstance(manifest.get("sidecar"), dict) else {},
        )
