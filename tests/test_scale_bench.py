"""``bench/scale.py`` end to end: the real driver, learner, pool and sidecar against simulated
workers (opt-in: ``-m slow``, about two minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_scale_bench_measures_each_count_through_the_real_driver(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            "--workers",
            "2",
            "20",
            "--before",
            "2",
            "--seconds",
            "4",
            "--per-process",
            "8",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rows = json.loads((out / "scale.json").read_text())["rows"]
    assert [(r["workers"], r["path"]) for r in rows] == [(2, "before"), (2, "now"), (20, "now")]
    for row in rows:
        # Episodes went through the pool into the buffer, and the learner trained on them.
        assert row["positions_per_s"] > 0
        assert row["samples_per_s"] > 0
        assert row["replay_ratio"] == row["samples_per_s"] / row["positions_per_s"]
        assert row["sidecar_lag_max_events"] >= row["sidecar_lag_mean_events"] >= 0
        assert row["driver_rss_mb"] > 0
        assert row["sidecar_rss_mb"] > 0
    # Every worker received the versions the learner published (every 10 steps: a slow
    # learner may publish none in a few seconds, then the latency is NaN).
    fast = rows[-1]
    assert fast["publish_latency_max_s"] >= fast["publish_latency_median_s"] > 0
    assert "| 20 | now | 1,500 |" in done.stdout
    assert (out / "scale.png").stat().st_size > 0
