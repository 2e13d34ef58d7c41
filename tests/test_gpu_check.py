"""``bench/gpu_check.py`` on a machine where PyTorch sees no GPU: one line, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_says_in_one_line_that_there_is_no_gpu() -> None:
    # Hidden from a CUDA build too, so the check fails the same way on a GPU machine.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--steps", "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gpu_check: ")
    assert ("is the CPU build" in lines[0]) or ("no GPU visible" in lines[0])
