"""Install AlphaTriangle into ./.venv from a machine with Python 3.11, a C++ compiler and cmake.

Run as ``python3.11 scripts/install.py`` (``make install`` does this). Idempotent: when nothing
that shapes the environment changed since the last successful run, it only re-runs the
self-check and exits in about a second.

Why a script and not just ``pip install -e .``: the PyPI wheels of trianglengin 2.0.7 and
trimcts 1.3.0 carry an extension compiled for CPython 3.7 under every tag, so importing either
fails on 3.11. Both are rebuilt here, each with a patch from ``scripts/patches/``:

- trianglengin from its sdist (its CMake must be told which interpreter to build for). Patches:
  ``shared-lines``: a game state's copy deep-copied the board's immutable line tables (~250 us
  per copy); they are shared between copies instead (~12 us). MCTS copies one state per
  simulation. ``reseed``: ``GameState.reseed(seed)`` restarts the generator that deals future
  hands, so that a search root does not carry the real game's future (``copy()`` keeps it).
- trimcts has no sdist, but its wheel ships the C++ sources in ``trimcts/cpp/``, from which
  ``trimcts_cpp`` is built. Patches, in order: ``multi-game``: ``run_mcts_many_cpp`` runs many
  PUCT searches in lockstep with one dense-array network call for the pending leaves of all
  their trees (leaves evaluated in batches as the simulations go: the released loop selected
  every path before evaluating any leaf, so a search followed one path; that single-root entry
  point is no longer exposed), with root noise drawn by the caller from the player's seeded
  generator. ``gumbel``: ``run_gumbel_many_cpp`` runs Gumbel searches (Gumbel-top-k and
  sequential halving at the root, improved-policy targets) on the same lockstep, its rules
  exposed as ``trimcts_cpp.gumbel_rules`` for the tests that hold them to the Python reference.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".alphatriangle-install-stamp"
BUILD = ROOT / "build"
PATCHES = ROOT / "scripts" / "patches"
# Applied in this order to the sources shipped in the trimcts wheel.
TRIMCTS_PATCHES = (
    PATCHES / "trimcts-1.3.0-multi-game.patch",
    PATCHES / "trimcts-1.3.0-gumbel.patch",
)
# Each engine patch with the folder of the sdist it applies in.
ENGINE_PATCHES = (
    (PATCHES / "trianglengin-2.0.7-shared-lines.patch", Path("src/trianglengin/cpp")),
    (PATCHES / "trianglengin-2.0.7-reseed.patch", Path("src/trianglengin")),
)
PYBIND11 = "pybind11==3.1.0"
TRIANGLENGIN = "trianglengin==2.0.7"

SELF_CHECK = r"""
import os
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
from types import SimpleNamespace
import numpy as np
import trianglengin, trimcts.trimcts_cpp as engine
from trianglengin import GameState

if not hasattr(engine, "run_mcts_many_cpp"):
    raise SystemExit("self-check failed: trimcts_cpp lacks the multi-game patch (run_mcts_many_cpp)")
if not hasattr(engine, "run_gumbel_many_cpp"):
    raise SystemExit("self-check failed: trimcts_cpp lacks the Gumbel patch (run_gumbel_many_cpp)")
if not hasattr(GameState, "reseed"):
    raise SystemExit("self-check failed: trianglengin is the unpatched build (no GameState.reseed)")

class Uniform:
    def evaluate_arrays(self, states):
        priors = np.zeros((len(states), 360), np.float32)
        for row, state in zip(priors, states):
            actions = sorted(state.valid_actions())
            row[actions] = 1.0 / len(actions)
        return priors, np.array([s.game_score() for s in states], np.float32)

settings = SimpleNamespace(
    simulations=16, max_depth=32, mcts_batch_size=8, cpuct=1.0, dirichlet_epsilon=0.0,
    considered_actions=16, c_visit=50.0, c_scale=0.1,
)
state = GameState(initial_seed=0)
[(visits, _, _)] = engine.run_mcts_many_cpp([state], Uniform(), settings, None, [None], [-1])
if not visits or not set(visits) <= state.valid_actions():
    raise SystemExit(f"self-check failed: MCTS returned visits {visits!r}")
if sum(1 for count in visits.values() if count) < 2:
    raise SystemExit("self-check failed: the search followed one path (unpatched trimcts_cpp)")
[(_, _, action, _)] = engine.run_gumbel_many_cpp(
    [state], Uniform(), settings, np.zeros((1, 360), np.float32))
if action not in state.valid_actions():
    raise SystemExit(f"self-check failed: Gumbel search chose {action}, not a legal move")
import time
start = time.perf_counter()
for _ in range(200):
    state.copy()
copy_us = (time.perf_counter() - start) / 200 * 1e6
if copy_us > 80:
    print(f"install: warning: a game-state copy takes {copy_us:.0f} us (patched build: ~12 us); "
          "self-play will be slow. Run `make install FORCE=1`.")
print(f"self-check ok: trianglengin {trianglengin.__file__!s}, one 16-simulation search over "
      f"{len(state.valid_actions())} legal moves")
"""


def fail(message: str) -> None:
    print(f"\ninstall: ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd: list[str], env: dict[str, str] | None = None, what: str = "") -> None:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, env=env, cwd=ROOT)
    if result.returncode != 0:
        fail(f"{what or cmd[0]} failed (exit {result.returncode}); see the output above.")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def python_ok(code: str) -> bool:
    env = {**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    result = subprocess.run(
        [str(venv_python()), "-c", code], env=env, cwd=ROOT, capture_output=True
    )
    return result.returncode == 0


def fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    patches = [*TRIMCTS_PATCHES, *(patch for patch, _ in ENGINE_PATCHES)]
    for path in (ROOT / "pyproject.toml", Path(__file__).resolve(), *patches):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_toolchain() -> None:
    if sys.version_info[:2] != (3, 11):
        fail(
            f"AlphaTriangle needs Python 3.11, this is {sys.version.split()[0]} ({sys.executable}). "
            "Run with a 3.11 interpreter, e.g. `make PYTHON=/path/to/python3.11 install`."
        )
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        fail(
            "no C++ compiler found (c++, g++ or clang++); install one, e.g. `apt-get install g++`."
        )
    if not shutil.which("cmake"):
        fail(
            "cmake not found on PATH; install it, e.g. `apt-get install cmake` or `pip install cmake`."
        )


def apply_patch(patch: Path, directory: Path) -> None:
    tool = ["git", "apply", "-p1"] if shutil.which("git") else ["patch", "-p1", "-i"]
    print("+", " ".join([*tool, str(patch)]), f"(in {directory})", flush=True)
    # Inside a git checkout (build/ is in this repository's), git apply reads the patch's paths
    # from the checkout's top level and silently skips them all; keep it out of the checkout.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(directory.parent)}
    if subprocess.run([*tool, str(patch)], cwd=directory, env=env).returncode != 0:
        fail(f"could not apply {patch.name} in {directory}; are the pinned versions installed?")


def build_trianglengin(pip: list[str]) -> None:
    """Build and install trianglengin from its sdist with the engine patches applied."""
    build = BUILD / "trianglengin"
    shutil.rmtree(build, ignore_errors=True)
    download = [str(venv_python()), "-m", "pip", "download", "--disable-pip-version-check"]
    run(
        [*download, "--no-deps", "--no-binary", "trianglengin", TRIANGLENGIN, "-d", str(build)],
        what="download of the trianglengin sdist",
    )
    [sdist] = build.glob("trianglengin-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(build, filter="data")
    source = build / sdist.name.removesuffix(".tar.gz")
    for patch, folder in ENGINE_PATCHES:
        apply_patch(patch, source / folder)
    # Its CMake otherwise picks another interpreter than the one it builds for.
    env = {**os.environ, "CMAKE_ARGS": f"-DPYTHON_EXECUTABLE={venv_python()}"}
    run(
        [*pip, "--force-reinstall", "--no-deps", str(source)],
        env=env,
        what="build of trianglengin from its sdist",
    )


def build_trimcts() -> None:
    """Compile trimcts_cpp from the C++ sources shipped inside the trimcts wheel, patched."""
    site = Path(
        subprocess.check_output(
            [str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    package = site / "trimcts"
    sources = package / "cpp"
    if not (sources / "CMakeLists.txt").is_file():
        fail(
            f"trimcts is installed but ships no C++ sources in {sources}; reinstall trimcts==1.3.0."
        )
    pybind11_dir = subprocess.check_output(
        [str(venv_python()), "-m", "pybind11", "--cmakedir"], text=True
    ).strip()
    build = BUILD / "trimcts_cpp"
    shutil.rmtree(build, ignore_errors=True)
    patched = build / "src"
    shutil.copytree(sources, patched)
    for patch in TRIMCTS_PATCHES:
        apply_patch(patch, patched)
    out = build / "out"
    run(
        [
            "cmake",
            "-S",
            str(patched),
            "-B",
            str(build / "cmake"),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-Dpybind11_DIR={pybind11_dir}",
            f"-DPython_EXECUTABLE={venv_python()}",
            f"-DPYTHON_EXECUTABLE={venv_python()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out}",
        ],
        what="cmake configure of trimcts_cpp",
    )
    run(
        ["cmake", "--build", str(build / "cmake"), "-j", str(os.cpu_count() or 1)],
        what="build of trimcts_cpp",
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = out / f"trimcts_cpp{suffix}"
    if not built.is_file():
        fail(f"the trimcts_cpp build produced no {built.name} in {out}.")
    for stale in package.glob("trimcts_cpp*.so"):
        stale.unlink()
    shutil.copy2(built, package / built.name)


def install() -> None:
    check_toolchain()
    if not venv_python().exists():
        run([sys.executable, "-m", "venv", str(VENV)], what="creating .venv")
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    run([*pip, "--upgrade", "pip", PYBIND11], what="pip install of build helpers")
    build_trianglengin(pip)
    run([*pip, "-e", ".[dev]"], what="pip install of alphatriangle")
    build_trimcts()


def self_check() -> None:
    env = {**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    result = subprocess.run([str(venv_python()), "-c", SELF_CHECK], env=env, cwd=ROOT)
    if result.returncode != 0:
        STAMP.unlink(missing_ok=True)
        fail(
            "the installed trianglengin/trimcts do not work (see above). "
            "Run `make install FORCE=1` to rebuild, or `rm -rf .venv build` and retry."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    args = parser.parse_args()
    start = time.monotonic()
    wanted = fingerprint()
    up_to_date = STAMP.is_file() and STAMP.read_text() == wanted and not args.force
    if not up_to_date:
        STAMP.unlink(missing_ok=True)
        install()
    self_check()
    if not up_to_date:
        STAMP.write_text(wanted)
    state = "already up to date" if up_to_date else "installed"
    print(f"install: {state} in {time.monotonic() - start:.1f}s (.venv)")


if __name__ == "__main__":
    main()
