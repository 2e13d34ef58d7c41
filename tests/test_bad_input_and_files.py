"""Bad input, damaged run files and a read-only directory, with the real CLI: refused with one
clear line, or survived, and nothing saved is lost."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from alphatriangle.app.runs import run_context
from tests.cli import (
    assert_mlflow_clean,
    manifest_steps,
    run_cli,
    start_cli,
    train_args,
    wait_for,
)
from tests.conftest import TINY, TRAINED, copy_trained
from tests.files import read_only


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_truncated_newest_buffer_or_checkpoint_falls_back_with_a_warning(
    workdir: Path, trained_run: Path
) -> None:
    ctx = copy_trained(trained_run, workdir)
    base = train_args("--run-name", TRAINED)

    newest_buf = sorted(ctx.buffer_dir.glob("*.npz"))[-1]
    _truncate(newest_buf)
    older_buf = manifest_steps(ctx.buffer_dir)[-2]
    result = run_cli(workdir, *base, "--max-steps", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed '{TRAINED}' at step 4 from" in result.stdout
    assert f"positions from step {older_buf})" in result.stdout
    assert f"warning: buffer snapshot {newest_buf} is unusable" in result.stdout

    newest_ckpt = sorted(ctx.checkpoint_dir.glob("*.pt"))[-1]
    _truncate(newest_ckpt)
    previous = manifest_steps(ctx.checkpoint_dir)[-2]
    result = run_cli(workdir, *base, "--max-steps", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed '{TRAINED}' at step {previous} from" in result.stdout
    assert f"warning: checkpoint {newest_ckpt} is unusable" in result.stdout
    assert_mlflow_clean(workdir, TRAINED)


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Size and time of every file but the run lock (which a refused trainer takes briefly)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["--run-name", "../x"], {}, "invalid run name '../x'"),
        (["--run-name", "a/b"], {}, "invalid run name 'a/b'"),
        (["--run-name", ""], {}, "invalid run name ''"),
        (["--run-name", "x" * 200], {}, "invalid run name"),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nbatch_sise = 3\n"},
            "train.batch_sise: unknown field",
        ),
        (["--config", "c.toml"], {"c.toml": "[mcts]\nsimulations = 0\n"}, "mcts.simulations"),
        (["--config", "c.toml"], {"c.toml": "[train\nx=1"}, "invalid TOML"),
        (["--config", "c.json"], {"c.json": "{not json"}, "invalid JSON"),
        (["--config", "c.yaml"], {"c.yaml": "a: 1"}, "use .toml or .json"),
        (["--config", "missing.toml"], {}, "does not exist"),
        (
            ["--run-name", TRAINED, "--config", "big.toml"],
            {"big.toml": "[model]\nchannels = 48\n"},
            "use a new --run-name",
        ),
        # Non-finite numbers, one field of each family, in TOML and in JSON.
        (
            ["--config", "c.toml"],
            {"c.toml": "[model]\nvalue_scale = inf\n"},
            "model.value_scale: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[mcts]\ncpuct = inf\n"},
            "mcts.cpuct: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[mcts]\ntemperature = nan\n"},
            "mcts.temperature: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nlearning_rate = nan\n"},
            "train.learning_rate: Input should be a finite number",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nreplay_ratio = inf\n"},
            "train.replay_ratio: Input should be a finite number",
        ),
        (
            ["--config", "c.json"],
            {"c.json": '{"train": {"value_loss_weight": Infinity}}'},
            "train.value_loss_weight: Input should be a finite number",
        ),
        (
            ["--config", "c.json"],
            {"c.json": '{"mcts": {"dirichlet_alpha": NaN}}'},
            "mcts.dirichlet_alpha: Input should be a finite number",
        ),
        # Sizes that cannot be allocated, files that are not config files, a new run included.
        (
            ["--config", "c.toml"],
            {"c.toml": "[train]\nbuffer_capacity = 9223372036854775807\n"},
            "train.buffer_capacity: Input should be less than or equal to",
        ),
        (
            ["--run-name", "fresh", "--config", "c.toml"],
            {"c.toml": "[train]\nbuffer_capacity = 900000000\n"},
            "GiB of memory; lower it",
        ),
        (
            ["--config", "c.toml"],
            {"c.toml": b"\xff\xfe[train]\x00"},
            "c.toml: not a UTF-8 text file",
        ),
        (["--config", "confs"], {"confs/": ""}, "confs is a directory"),
        (["--run-name", "fresh", "--workers", "10000"], {}, "use at most"),
        (["--max-steps", "0"], {}, "Invalid value for '--max-steps'"),
        # A data root that cannot be one; rich markup, a name the system refuses, and input
        # of any size echoed in the one line, cut to a readable length.
        (["--data-dir", "afile"], {"afile": "a file\n"}, "afile is not a directory"),
        (["--data-dir", "afile/data"], {"afile": "a file\n"}, "afile is not a directory"),
        (["--run-name", "[/x]"], {}, "invalid run name '[/x]'"),
        (["--config", "[/x].toml"], {}, "config file [/x].toml does not exist"),
        pytest.param(
            ["--config", "y" * 300 + ".toml"], {}, "File name too long", id="long-config-name"
        ),
        pytest.param(
            ["--run-name", "x" * 100_000],
            {},
            "(100000 characters): use at most 100",
            id="100000-character-run-name",
        ),
        pytest.param(
            ["--config", "big.toml"],
            {"big.toml": "[train]\n" + "k" * 5_000_000 + " = 1\n"},
            "big.toml: invalid configuration: train.kkk",
            id="5-MB-key",
        ),
        pytest.param(
            ["--config", "many.toml"],
            {"many.toml": "[train]\n" + "".join(f"k{i} = 1\n" for i in range(10_000))},
            "train.k9: unknown field; and 9990 more",
            id="10000-unknown-keys",
        ),
        pytest.param(["--bogus" + "y" * 100_000], {}, "No such option: --bogus", id="long-option"),
        pytest.param(
            ["--run-name", "fresh", "--config", "mz.toml"],
            {"mz.toml": 'algorithm = "muzero"\n[mcts]\ncpuct = 2.0\n'},
            "mcts.cpuct = 2.0 is not used by algorithm = 'muzero' (its PUCT rule uses",
            id="muzero-ignores-cpuct",
        ),
        pytest.param(
            ["--run-name", "fresh", "--config", "r.toml"],
            {"r.toml": "[train]\nlearner_replicas = 3\n"},
            "batch_size (128) does not split into learner_replicas (3) equal shares",
            id="replicas-do-not-divide-the-batch",
        ),
        pytest.param(
            ["--run-name", "fresh", "--config", "r.toml"],
            {"r.toml": "[train]\nbatch_size = 1024\nlearner_replicas = 1024\n"},
            "train.learner_replicas = 1024: the Ray cluster has",
            id="more-replicas-than-cpus",
        ),
    ],
)
def test_bad_input_is_refused_with_one_line_and_changes_nothing(
    existing_run: Path, args: list[str], files: dict[str, str | bytes], message: str
) -> None:
    for name, content in files.items():
        if name.endswith("/"):
            (existing_run / name).mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            (existing_run / name).write_bytes(content)
        else:
            (existing_run / name).write_text(content)
    before = _snapshot(existing_run / "data")
    result = run_cli(existing_run, "train", "--max-steps", "1", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert len(lines[0]) < MAX_LINE, len(lines[0])
    assert "Traceback" not in result.stderr
    assert _snapshot(existing_run / "data") == before
    assert not run_context("fresh", existing_run / "data").run_dir.exists()


MAX_LINE = 600
"""Characters a one-line error may take, whatever the size of the input it echoes."""


def test_runs_and_the_ui_commands_refuse_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file\n")
    for command in ("runs", "ml", "tb"):
        result = run_cli(tmp_path, command, "--data-dir", "afile")
        assert result.returncode == 2, result.stdout + result.stderr
        assert [line for line in result.stdout.splitlines() if line.strip()] == [
            f"error: --data-dir (or $ALPHATRIANGLE_DATA): {tmp_path / 'afile'} is not a directory"
        ]
        assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_data_dir_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        result = run_cli(tmp_path, "train", "--run-name", "x", "--data-dir", "locked/data")
    assert result.returncode == 2, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if line.strip()] == [
        f"error: --data-dir (or $ALPHATRIANGLE_DATA): cannot write in {locked} (Operation not "
        "permitted); give another --data-dir (or $ALPHATRIANGLE_DATA)"
    ]
    assert result.stderr == ""
    assert list(locked.iterdir()) == []


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> Path:
    """A copy of the finished run ``TRAINED``, to check that bad input leaves it alone."""
    workdir = tmp_path_factory.mktemp("badinput")
    (workdir / "tiny.toml").write_text(TINY)
    copy_trained(trained_run, workdir)
    return workdir


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a dir read-only")
def test_disk_errors_while_saving_are_reported_and_retried(workdir: Path) -> None:
    proc = start_cli(workdir, *train_args("--run-name", "ro"))
    ctx = run_context("ro", workdir / "data")
    wait_for(lambda: len(manifest_steps(ctx.checkpoint_dir)) >= 1, proc)
    # Root ignores permission bits; the immutable flag makes the directory really read-only.
    subprocess.run(["chattr", "+i", str(ctx.checkpoint_dir)], check=True)
    try:
        blocked_at = manifest_steps(ctx.checkpoint_dir)[-1]
        proc.wait_output("checkpoint save failed")
    finally:
        subprocess.run(["chattr", "-i", str(ctx.checkpoint_dir)], check=True)
    # Saved again once the directory came back, while training went on.
    wait_for(lambda: manifest_steps(ctx.checkpoint_dir)[-1] > blocked_at + 2, proc)
    proc.send_signal(signal.SIGINT)
    out = proc.finish()
    assert proc.returncode == 0, out
    final = re.search(r"stopped 'ro' at step (\d+)", out)
    assert final, out
    assert manifest_steps(ctx.checkpoint_dir)[-1] == int(final.group(1))
