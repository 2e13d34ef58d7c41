"""CheckpointStore against real files: round trip, retention, verification, fallback."""

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.files import code_running_pickle, forge_checkpoint
from trieye import CheckpointError, CheckpointStore, read_checkpoint


def training_state(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "counters": {"episodes": 12 + seed, "simulations": 3400},
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.Random(seed).getstate(),
        "numpy_rng": np.random.default_rng(seed).bit_generator.state,
    }


def make_store(tmp_path: Path, keep_last: int = 2, keep_last_buffers: int = 2) -> CheckpointStore:
    return CheckpointStore(tmp_path / "ckpt", tmp_path / "buf", keep_last, keep_last_buffers)


def buffer_of(step: int) -> dict[str, np.ndarray]:
    return {"obs": np.full((3, 2), step, dtype=np.float32), "action": np.arange(3, dtype=np.int64)}


def test_round_trip_of_a_real_training_state(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    state = training_state(1)
    path = store.save(10, state, buffer_of(10), sidecar_state={"last_emitted_step": {"a": 9}})
    loaded = store.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.path, loaded.buffer_step, loaded.warnings) == (10, path, 10, [])
    assert torch.equal(loaded.state["model"]["weight"], state["model"]["weight"])
    assert loaded.state["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert loaded.state["scheduler"] == state["scheduler"]
    assert loaded.state["counters"] == {"episodes": 13, "simulations": 3400}
    assert tuple(loaded.state["python_rng"]) == state["python_rng"]
    assert loaded.state["numpy_rng"] == state["numpy_rng"]
    assert loaded.buffer is not None
    np.testing.assert_array_equal(loaded.buffer["obs"], buffer_of(10)["obs"])
    assert loaded.sidecar_state == {"last_emitted_step": {"a": 9}}
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["size"] == path.stat().st_size
    assert len(manifest["sha256"]) == 64
    assert not list((tmp_path / "ckpt").glob(".trieye-tmp-*"))


def test_keeps_last_k_plus_best_and_last_buffers(tmp_path: Path) -> None:
    store = make_store(tmp_path, keep_last=2, keep_last_buffers=2)
    for step in (1, 2, 3, 4, 5):
        store.save(step, {"step": step}, buffer_of(step) if step % 2 else None, is_best=step == 2)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt")) == [
        "ckpt_000000000002.pt",
        "ckpt_000000000004.pt",
        "ckpt_000000000005.pt",
    ]
    assert sorted(p.name for p in (tmp_path / "buf").glob("*.npz")) == [
        "buffer_000000000003.npz",
        "buffer_000000000005.npz",
    ]


def test_a_step_saved_as_best_stays_best_when_saved_again(tmp_path: Path) -> None:
    store = make_store(tmp_path, keep_last=1)
    store.save(5, {"step": 5, "final": 0}, is_best=True)
    store.save(5, {"step": 5, "final": 1})  # the final save of a run, at its best step
    store.save(6, {"step": 6, "final": 0})
    best = read_checkpoint(tmp_path / "ckpt", "best")
    assert (best.step, best.state) == (5, {"step": 5, "final": 1})
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt")) == [
        "ckpt_000000000005.pt",
        "ckpt_000000000006.pt",
    ]


def test_buffer_is_the_newest_snapshot_not_newer_than_the_checkpoint(tmp_path: Path) -> None:
    store = make_store(tmp_path, keep_last=3)
    store.save(10, {"step": 10}, buffer_of(10))
    store.save(20, {"step": 20})
    loaded = store.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.buffer_step) == (20, 10)


def test_truncated_newest_checkpoint_falls_back_with_a_warning(tmp_path: Path) -> None:
    store = make_store(tmp_path, keep_last=3)
    store.save(10, training_state(1), buffer_of(10))
    newest = store.save(20, training_state(2), buffer_of(20))
    newest_buffer = tmp_path / "buf" / "buffer_000000000020.npz"
    with open(newest, "r+b") as handle:
        handle.truncate(newest.stat().st_size // 2)
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.step == 10
    assert loaded.buffer_step == 10
    assert loaded.state["counters"]["episodes"] == 13
    [warning] = loaded.warnings
    assert str(newest) in warning
    assert "truncated" in warning
    # A corrupt buffer (same size, flipped byte) is skipped the same way.
    data = bytearray(newest_buffer.read_bytes())
    data[-1] ^= 0xFF
    newest_buffer.write_bytes(bytes(data))
    store.save(30, {"step": 30})
    loaded = store.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.buffer_step) == (30, 10)
    assert any(str(newest_buffer) in w and "sha256" in w for w in loaded.warnings)


def test_all_checkpoints_corrupt_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path = store.save(1, {"step": 1})
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        store.load_latest()


def test_nothing_saved_loads_none(tmp_path: Path) -> None:
    assert make_store(tmp_path).load_latest() is None


def test_state_and_buffer_that_need_pickle_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(TypeError, match=r"state\['weights'\] is a ndarray.*torch.from_numpy"):
        store.save(1, {"weights": np.zeros(3)})
    with pytest.raises(TypeError, match="dtype object"):
        store.save(1, {"step": 1}, {"names": np.array(["a", None], dtype=object)})
    assert not list((tmp_path / "ckpt").glob("*"))


def _rewrite_manifest(path: Path, **fields: Any) -> None:
    """Point a checkpoint manifest elsewhere (as a crafted or copied run folder would)."""
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    path.write_text(json.dumps(manifest))


def test_a_manifest_naming_a_file_outside_its_folder_is_neither_loaded_nor_pruned(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, keep_last=1)
    store.save(1, {"x": torch.ones(1)})
    victim = tmp_path / "victim.pt"
    store.save(2, {"x": torch.full((1,), 2.0)})
    victim.write_bytes((store.checkpoint_dir / "ckpt_000000000002.pt").read_bytes())
    manifest = store.checkpoint_dir / "ckpt_000000000002.json"
    # Same size and sha256 as the file outside: only the path check can refuse it.
    _rewrite_manifest(manifest, file="../victim.pt")
    (store.checkpoint_dir / "ckpt_000000000002.pt").unlink()
    store.save(3, {"x": torch.full((1,), 3.0)})  # pruning: keeps only step 3
    assert victim.exists(), "pruning deleted a file outside the checkpoint folder"
    assert not manifest.exists()
    _rewrite_manifest(store.checkpoint_dir / "ckpt_000000000003.json", file="../victim.pt", step=4)
    with pytest.raises(CheckpointError, match=r"names '\.\./victim\.pt', which is not a file in"):
        store.load_latest()
    assert victim.exists()


def test_crafted_manifests_with_huge_steps_never_hold_one_of_the_last_k_places(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, keep_last=2)
    for step in (1, 2):
        store.save(step, {"step": step})
    ckpt = store.checkpoint_dir
    victim = tmp_path / "victim.pt"
    victim.write_bytes((ckpt / "ckpt_000000000002.pt").read_bytes())
    outside = ckpt / "ckpt_000000999999.json"
    outside.write_text((ckpt / "ckpt_000000000002.json").read_text())
    _rewrite_manifest(outside, file="../victim.pt", step=999999)
    # A real, verified file whose manifest claims a step its name does not have.
    lying = forge_checkpoint(ckpt, 3, (ckpt / "ckpt_000000000002.pt").read_bytes())
    _rewrite_manifest(lying.with_suffix(".json"), step=999998)
    loaded = store.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.state) == (2, {"step": 2})
    assert [w.split(", ")[0] for w in loaded.warnings] == [
        f"checkpoint manifest {outside} names '../victim.pt'",
        f"checkpoint manifest {lying.with_suffix('.json')} says step 999998",
    ]

    for step in (4, 5):
        store.save(step, {"step": step})
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "ckpt_000000000004.json",
        "ckpt_000000000004.pt",
        "ckpt_000000000005.json",
        "ckpt_000000000005.pt",
    ]
    assert victim.exists(), "pruning deleted a file outside the checkpoint folder"
    loaded = store.load_latest()
    assert loaded is not None
    assert (loaded.step, loaded.warnings) == (5, [])


def test_a_pickled_newest_checkpoint_is_skipped_without_running_its_code(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    store.save(1, {"x": torch.ones(1)})
    marker = tmp_path / "code-ran"
    forged = forge_checkpoint(store.checkpoint_dir, 2, code_running_pickle(marker))
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.step == 1
    [warning] = loaded.warnings
    assert str(forged) in warning
    assert "cannot be loaded" in warning
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a checkpoint at all", "cannot be loaded"),
        (b"", "cannot be loaded"),
    ],
)
def test_a_newest_file_that_is_no_checkpoint_falls_back(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    store = make_store(tmp_path)
    store.save(1, {"x": torch.ones(1)})
    forge_checkpoint(store.checkpoint_dir, 2, data)
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.step == 1
    assert reason in loaded.warnings[0]


def test_a_state_the_validator_rejects_falls_back_to_an_older_one(tmp_path: Path) -> None:
    store = make_store(tmp_path, keep_last=3, keep_last_buffers=3)
    store.save(1, {"model": torch.ones(2)}, buffer_of(1))
    store.save(2, {"something": torch.ones(2)}, {"other": np.ones(1)})

    def has_model(state: Any) -> str | None:
        return None if "model" in state else "no 'model' entry"

    def has_obs(buffer: Any) -> str | None:
        return None if "obs" in buffer else "no 'obs' array"

    loaded = store.load_latest(validate=has_model, validate_buffer=has_obs)
    assert loaded is not None
    assert (loaded.step, loaded.buffer_step) == (1, 1)
    assert [w.split(" is unusable ")[1] for w in loaded.warnings] == [
        "(no 'model' entry); trying an older one"
    ]
    store.save(3, {"model": torch.ones(2)}, {"other": np.ones(1)})
    loaded = store.load_latest(validate=has_model, validate_buffer=has_obs)
    assert loaded is not None
    assert (loaded.step, loaded.buffer_step) == (3, 1)
    assert [w.split(" is unusable ")[1] for w in loaded.warnings] == [
        "(no 'obs' array); trying an older one"
    ] * 2
