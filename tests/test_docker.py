"""Static checks of docker/: no Docker engine runs here, so check what can be checked."""

from __future__ import annotations

import importlib
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

from alphatriangle.app.runs import app_context

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
GPU_DOCKERFILE = ROOT / "docker" / "Dockerfile.gpu"
GPU_COMPOSE = ROOT / "docker" / "compose.gpu.yaml"


def _instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in _instructions(dockerfile):
        if op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def test_dockerfile_installs_with_the_readme_install_step() -> None:
    runs = [args for op, args in _instructions() if op == "RUN"]
    assert any(re.match(r"make install\b", r) for r in runs)
    makefile = (ROOT / "Makefile").read_text()
    # The README's two commands are `make train` and `make test`; both go through `install`.
    assert re.search(r"^train: install\b", makefile, re.M)
    assert re.search(r"^test: install\b", makefile, re.M)


def test_dockerfile_copies_everything_the_install_needs() -> None:
    copied = set()
    for op, args in _instructions():
        if op == "COPY":
            *sources, _dest = shlex.split(args)
            copied.update(sources)
    for needed in ("pyproject.toml", "Makefile", "scripts", "alphatriangle", "trieye"):
        assert needed in copied, f"docker/Dockerfile does not COPY {needed}"
        assert (ROOT / needed).exists()
    assert (ROOT / "scripts" / "install.py").is_file()


def test_dockerfile_entrypoint_runs_train() -> None:
    ops = dict(_instructions())
    assert yaml.safe_load(ops["ENTRYPOINT"]) == ["/app/.venv/bin/alphatriangle"]
    assert yaml.safe_load(ops["CMD"])[0] == "train"
    assert _env()["ALPHATRIANGLE_DATA"] == "/data"


def test_compose_services_share_the_data_volume_and_point_at_the_run_data() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"train", "mlflow", "tensorboard"}
    volume = "alphatriangle-data"
    assert volume in compose["volumes"]
    for name, service in services.items():
        assert f"{volume}:/data" in service["volumes"], name
        assert service.get("image") == "alphatriangle:latest", name
    assert services["train"]["command"][0] == "train"

    app = app_context(Path(_env()["ALPHATRIANGLE_DATA"]))
    ml = services["mlflow"]
    ml_args = ml["command"]
    assert ml["entrypoint"] == ["/app/.venv/bin/mlflow"]
    assert ml_args[ml_args.index("--backend-store-uri") + 1] == app.mlflow_tracking_uri
    tb = services["tensorboard"]
    tb_args = tb["command"]
    assert tb["entrypoint"] == ["/app/.venv/bin/tensorboard"]
    assert tb_args[tb_args.index("--logdir") + 1] == str(app.runs_dir)

    for service, args in ((ml, ml_args), (tb, tb_args)):
        port = args[args.index("--port") + 1]
        assert service["ports"] == [f"{port}:{port}"]
    exposed = {p for op, a in _instructions() if op == "EXPOSE" for p in a.split()}
    assert exposed == {"5000", "6006"}


def test_compose_tools_are_installed_by_the_project() -> None:
    # The image's .venv is made by `make install`, like the one running these tests.
    venv_bin = Path(sys.executable).parent
    for tool in ("alphatriangle", "mlflow", "tensorboard"):
        assert (venv_bin / tool).exists(), f"{tool} is not installed beside {sys.executable}"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["alphatriangle"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_gpu_image_is_the_cpu_recipe_with_the_cuda_build_of_torch() -> None:
    cpu, gpu = _instructions(DOCKERFILE), _instructions(GPU_DOCKERFILE)
    # The same base, install step, entry point and data volume as the CPU image.
    assert [a for op, a in gpu if op == "FROM"] == [a for op, a in cpu if op == "FROM"]
    assert [a for op, a in gpu if op == "RUN"] == [a for op, a in cpu if op == "RUN"]
    ops = dict(gpu)
    assert yaml.safe_load(ops["ENTRYPOINT"]) == ["/app/.venv/bin/alphatriangle"]
    assert yaml.safe_load(ops["CMD"])[0] == "train"
    env = _env(GPU_DOCKERFILE)
    assert env["ALPHATRIANGLE_DATA"] == "/data"
    # No CPU wheel index: pip takes PyPI's torch, the CUDA build; the toolkit passes the GPUs.
    assert not any("whl/cpu" in a for _, a in gpu)
    assert "PIP_EXTRA_INDEX_URL" not in env
    assert "PIP_INDEX_URL" not in env
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    copied = {s for op, a in gpu if op == "COPY" for s in shlex.split(a)[:-1]}
    assert {"pyproject.toml", "Makefile", "scripts", "alphatriangle", "trieye"} <= copied
    # The GPU check its header names runs inside the image.
    assert "bench" in copied
    assert (ROOT / "bench" / "gpu_check.py").is_file()
    assert "bench/gpu_check.py" in GPU_DOCKERFILE.read_text()


def test_the_gpu_compose_file_trains_on_the_gpu_image_beside_the_same_tools() -> None:
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    gpu = yaml.safe_load(GPU_COMPOSE.read_text())["services"]
    assert set(gpu) <= set(base)
    train = gpu["train"]
    assert train["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.gpu"}
    assert train["command"][0] == "train"
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    # Every service of the merged file runs the image the override builds.
    assert {name: s["image"] for name, s in gpu.items()} == dict.fromkeys(gpu, "alphatriangle:gpu")
    assert set(gpu) == {"train", "mlflow", "tensorboard"}
