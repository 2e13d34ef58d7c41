"""AppContext and RunContext: the one place that turns (root dir, app name[, run name]) into
paths and names."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 100


class InvalidRunName(ValueError):  # noqa: N818 (the public name the callers use)
    """A run or app name that is not a safe single file name."""


def validate_name(name: str, what: str = "run name") -> str:
    """Return `name` unchanged if it is a safe directory name, else raise InvalidRunName."""
    if not isinstance(name, str) or not (
        0 < len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name) and ".." not in name
    ):
        raise InvalidRunName(
            f"invalid {what} {name!r}: use 1 to {MAX_NAME_LENGTH} characters from letters, "
            "digits, '-', '_' and '.', starting with a letter or digit, with no path "
            "separators and no '..' (for example 'baseline-2026.11_a')"
        )
    return name


@dataclass(frozen=True)
class AppContext:
    """The paths and names an app's runs share (the MLflow store, the folder of all runs): what
    a command about every run needs, without naming one.

    `root_dir` is resolved to an absolute path at construction, like `RunContext`'s.
    """

    root_dir: Path
    app_name: str

    def __post_init__(self) -> None:
        validate_name(self.app_name, "app name")
        object.__setattr__(self, "root_dir", Path(self.root_dir).expanduser().resolve())

    @property
    def app_dir(self) -> Path:
        return self.root_dir / self.app_name

    @property
    def runs_dir(self) -> Path:
        """Every run's directory side by side: what `tensorboard --logdir` gets."""
        return self.app_dir / "runs"

    @property
    def mlflow_db(self) -> Path:
        return self.app_dir / "mlflow.db"

    @property
    def mlflow_tracking_uri(self) -> str:
        # Four slashes for an absolute path: "sqlite:///" + "/abs/path/mlflow.db".
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifact_root(self) -> Path:
        return self.app_dir / "mlartifacts"

    @property
    def experiment_name(self) -> str:
        return self.app_name

    @property
    def namespace(self) -> str:
        return f"trieye.{self.app_name}"

    def run(self, run_name: str) -> RunContext:
        """The context of run `run_name` of this app (InvalidRunName for an unsafe name)."""
        return RunContext(root_dir=self.root_dir, app_name=self.app_name, run_name=run_name)


@dataclass(frozen=True)
class RunContext:
    """Identity of one run. Every path and Ray name of the run is derived here and nowhere else.

    `root_dir` is resolved to an absolute path at construction, so a context pickled to a
    Ray worker with another working directory still points at the same files.
    """

    root_dir: Path
    app_name: str
    run_name: str

    def __post_init__(self) -> None:
        validate_name(self.app_name, "app name")
        validate_name(self.run_name, "run name")
        object.__setattr__(self, "root_dir", Path(self.root_dir).expanduser().resolve())

    @property
    def app(self) -> AppContext:
        """What this run shares with the app's other runs."""
        return AppContext(root_dir=self.root_dir, app_name=self.app_name)

    @property
    def app_dir(self) -> Path:
        return self.app.app_dir

    @property
    def tensorboard_root(self) -> Path:
        """What `tensorboard --logdir` gets: every run of the app side by side."""
        return self.app.runs_dir

    @property
    def run_dir(self) -> Path:
        return self.tensorboard_root / self.run_name

    @property
    def run_json(self) -> Path:
        return self.run_dir / "run.json"

    @property
    def config_json(self) -> Path:
        return self.run_dir / "config.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def buffer_dir(self) -> Path:
        return self.run_dir / "buffers"

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def eval_dir(self) -> Path:
        """Evaluation reports of the run (JSON)."""
        return self.run_dir / "evals"

    @property
    def mlflow_db(self) -> Path:
        return self.app.mlflow_db

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.app.mlflow_tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.app.artifact_root

    @property
    def experiment_name(self) -> str:
        return self.app.experiment_name

    @property
    def namespace(self) -> str:
        return self.app.namespace

    @property
    def actor_name(self) -> str:
        # The digest of the run directory keeps two data roots with the same run name (tests,
        # two checkouts) apart inside one Ray cluster, and is the same in every process.
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:10]
        return f"trieye:{self.run_name}:{digest}"

    def exists(self) -> bool:
        """Whether this run was started before (its run.json exists)."""
        return self.run_json.is_file()
