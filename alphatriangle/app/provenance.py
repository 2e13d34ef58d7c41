"""Where a run came from, as MLflow run tags: the command, the code version, the user, and a
one-line description of the config.

MLflow's run page shows ``mlflow.source.name`` as "Source" (only the text after its last "/",
as for a script's path: so it holds the program and its command, and the whole command line
is the tag ``alphatriangle.command``), ``mlflow.source.git.commit`` beside it, ``mlflow.user``
as "Created by" and ``mlflow.note.content`` as the run's "Description".
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from alphatriangle.core.algorithm import algorithm_name
from alphatriangle.core.config import AlphaTriangleConfig

COMMAND_TAG = "alphatriangle.command"
"""The whole command line (the program by its name, the arguments as given)."""
CODE_VERSION_TAG = "alphatriangle.code_version"
"""``git <commit>`` (`` (modified)`` after it when files differ from the commit) when the
code runs from a git checkout, else ``alphatriangle <package version>``."""

# This file is alphatriangle/app/provenance.py: the checkout's root is three levels up.
_CHECKOUT = Path(__file__).resolve().parents[2]


def source_tags(argv: Sequence[str], description: str) -> dict[str, str]:
    """The tags of a run started by the command ``argv`` (``sys.argv``), with
    ``description`` (see `describe`) as the run's note."""
    program = Path(argv[0]).name
    commit, code_version = _code_version()
    tags = {
        "mlflow.source.name": shlex.join([program, *argv[1:2]]),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _user(),
        "mlflow.note.content": description,
        COMMAND_TAG: shlex.join([program, *argv[1:]]),
        CODE_VERSION_TAG: code_version,
    }
    if commit is not None:
        tags["mlflow.source.git.commit"] = commit
    return tags


def describe(cfg: AlphaTriangleConfig) -> str:
    """The config in one line: algorithm, search, network, learner and budget."""
    m, mc, t = cfg.model, cfg.mcts, cfg.train
    algorithm = algorithm_name(cfg)
    search = f"{mc.variant} search, {mc.simulations} simulations"
    if mc.variant == "gumbel":
        search += f" ({mc.considered_actions} considered)"
    workers = "workers: auto" if t.num_workers is None else _count(t.num_workers, "worker")
    return (
        f"{algorithm}; {search}; network {m.channels} channels, "
        f"{_count(m.num_blocks, 'residual block')}; "
        f"batch {t.batch_size}, lr {t.learning_rate:g} ({t.lr_schedule}), replay ratio "
        f"{t.replay_ratio:g}, buffer {t.buffer_capacity}; {t.max_steps} steps, {workers}, "
        f"seed {t.seed}"
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _code_version() -> tuple[str | None, str]:
    """The commit of the git checkout this package runs from (None when it was installed
    elsewhere), and the code version to record."""
    installed = f"alphatriangle {version('alphatriangle')}"
    try:
        top, commit = _git("rev-parse", "--show-toplevel", "HEAD").splitlines()
    except (FileNotFoundError, subprocess.CalledProcessError):  # no git, or no checkout
        return None, installed
    if Path(top).resolve() != _CHECKOUT:  # installed into a folder inside another checkout
        return None, installed
    modified = _git("status", "--porcelain", "--untracked-files=no")
    return commit, f"git {commit}" + (" (modified)" if modified else "")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_CHECKOUT), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's user id with no name (no passwd entry)
        return f"uid {os.getuid()}"
