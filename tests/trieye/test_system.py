"""``trieye.system.ProcessSampler``: this process's CPU and memory under ``system/<role>/``."""

import psutil
import pytest

from trieye.system import ProcessSampler


def test_samples_at_once_then_at_the_cadence() -> None:
    sampler = ProcessSampler("worker", every_s=10.0)
    first = sampler.sample(now=100.0)
    assert set(first) == {"system/worker/cpu_percent", "system/worker/rss_mb"}
    assert sampler.sample(now=105.0) == {}
    assert set(sampler.sample(now=110.0)) == set(first)
    assert sampler.sample(now=119.9) == {}


def test_values_are_this_process_cpu_and_resident_memory() -> None:
    sampler = ProcessSampler("me", every_s=0.0)
    sampler.sample()
    sum(i * i for i in range(3_000_000))  # some CPU time in this process
    sample = sampler.sample()
    rss = psutil.Process().memory_info().rss / 2**20
    assert sample["system/me/rss_mb"] == pytest.approx(rss, rel=0.2)
    assert 0 < sample["system/me/cpu_percent"] <= 100 * psutil.cpu_count()


def test_gpu_metrics_exactly_when_there_is_a_gpu() -> None:
    import torch

    sample = ProcessSampler("me", every_s=0.0, gpus=True).sample()
    gpu = sorted(name for name in sample if name.startswith("system/gpu"))
    if torch.cuda.is_available():
        assert "system/gpu0/utilization_percent" in gpu
        assert "system/gpu0/memory_mb" in gpu
    else:
        assert gpu == []
