import re
from pathlib import Path

import pytest

from trieye import AppContext, InvalidRunName, RunContext


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", "..", "x" * 200, "a\\b", ".hidden", "a..b", "a b"]
)
def test_unsafe_run_names_are_rejected_with_the_rule(tmp_path: Path, name: str) -> None:
    with pytest.raises(
        InvalidRunName, match=re.escape("letters, digits, '-', '_' and '.'")
    ) as info:
        RunContext(root_dir=tmp_path, app_name="app", run_name=name)
    assert repr(name) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unsafe_app_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRunName, match="invalid app name"):
        RunContext(root_dir=tmp_path, app_name="a/b", run_name="ok")


@pytest.mark.parametrize("name", ["run-1", "Run_2026.11", "x" * 100, "7"])
def test_safe_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert RunContext(root_dir=tmp_path, app_name="app", run_name=name).run_name == name


def test_paths_are_derived_from_the_absolute_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = RunContext(root_dir=Path("data"), app_name="myapp", run_name="r1")
    root = tmp_path.resolve() / "data"
    assert ctx.root_dir == root
    assert ctx.app_dir == root / "myapp"
    assert ctx.tensorboard_root == root / "myapp" / "runs"
    assert ctx.run_dir == root / "myapp" / "runs" / "r1"
    assert ctx.run_json == ctx.run_dir / "run.json"
    assert ctx.config_json == ctx.run_dir / "config.json"
    assert ctx.checkpoint_dir == ctx.run_dir / "checkpoints"
    assert ctx.buffer_dir == ctx.run_dir / "buffers"
    assert ctx.tensorboard_dir == ctx.run_dir / "tensorboard"
    assert ctx.log_dir == ctx.run_dir / "logs"
    assert ctx.mlflow_db == root / "myapp" / "mlflow.db"
    assert ctx.mlflow_tracking_uri == f"sqlite:///{root}/myapp/mlflow.db"
    assert ctx.mlflow_tracking_uri.startswith("sqlite:////")
    assert ctx.artifact_root == root / "myapp" / "mlartifacts"
    assert ctx.experiment_name == "myapp"
    assert ctx.namespace == "trieye.myapp"
    assert not ctx.exists()


def test_actor_name_is_stable_and_separates_data_roots(tmp_path: Path) -> None:
    a = RunContext(root_dir=tmp_path / "one", app_name="app", run_name="r")
    again = RunContext(root_dir=tmp_path / "one", app_name="app", run_name="r")
    other_root = RunContext(root_dir=tmp_path / "two", app_name="app", run_name="r")
    assert a.actor_name == again.actor_name
    assert a.actor_name.startswith("trieye:r:")
    assert a.actor_name != other_root.actor_name


def test_context_is_frozen(tmp_path: Path) -> None:
    ctx = RunContext(root_dir=tmp_path, app_name="app", run_name="r")
    with pytest.raises(AttributeError):
        ctx.run_name = "other"  # type: ignore[misc]


def test_the_app_context_holds_what_every_run_of_the_app_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = AppContext(root_dir=Path("data"), app_name="myapp")
    root = tmp_path.resolve() / "data"
    assert app.root_dir == root
    assert app.runs_dir == root / "myapp" / "runs"
    assert app.mlflow_db == root / "myapp" / "mlflow.db"
    assert app.mlflow_tracking_uri == f"sqlite:///{root}/myapp/mlflow.db"
    assert app.artifact_root == root / "myapp" / "mlartifacts"
    assert (app.experiment_name, app.namespace) == ("myapp", "trieye.myapp")
    run = app.run("r1")
    assert run == RunContext(root_dir=root, app_name="myapp", run_name="r1")
    assert run.app == app
    assert run.tensorboard_root == app.runs_dir
    assert run.run_dir == app.runs_dir / "r1"
    with pytest.raises(InvalidRunName, match="invalid app name"):
        AppContext(root_dir=tmp_path, app_name="a/b")
    with pytest.raises(InvalidRunName, match="invalid run name"):
        app.run("../x")
