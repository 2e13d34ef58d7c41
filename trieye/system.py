"""System metrics of the processes of a run: CPU and memory per role, GPU when there is one.

``ProcessSampler(role)`` samples the calling process with ``psutil`` at the first call and then
at most every ``every_s`` seconds: ``system/<role>/cpu_percent`` (percent of one core since the previous
sample, so a busy single-threaded process reads about 100) and ``system/<role>/rss_mb``.
With ``gpus=True`` and NVIDIA devices present (``pynvml``), also
``system/gpu<i>/utilization_percent`` and ``system/gpu<i>/memory_mb`` for every device.
Processes of one role log the same names, so the sidecar's default mean aggregates them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psutil

logger = logging.getLogger(__name__)

DEFAULT_EVERY_S = 15.0
"""How often each process samples itself by default: a modest cadence for a chart."""


class ProcessSampler:
    """Samples of this process under ``system/<role>/``; ``sample()`` returns {} until due."""

    def __init__(self, role: str, every_s: float = DEFAULT_EVERY_S, *, gpus: bool = False) -> None:
        self.role = role
        self.every_s = every_s
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the interval
        self._next = float("-inf")  # the first sample is due at once
        self._nvml: Any = _nvml() if gpus else None

    def sample(self, now: float | None = None) -> dict[str, float]:
        """The metrics of this process (and the GPUs) when ``every_s`` has passed, else {}."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return {}
        self._next = now + self.every_s
        with self._process.oneshot():
            metrics = {
                f"system/{self.role}/cpu_percent": self._process.cpu_percent(None),
                f"system/{self.role}/rss_mb": self._process.memory_info().rss / 2**20,
            }
        if self._nvml is not None:
            metrics.update(_gpu_metrics(self._nvml))
        return metrics


def _nvml() -> Any:
    """``pynvml``, initialised, when it and at least one NVIDIA device are present; else None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() > 0:
            return pynvml
    except Exception as exc:  # no driver, no library, no device: no GPU metrics
        logger.debug("no GPU metrics: %s", exc)
    return None


def _gpu_metrics(nvml: Any) -> dict[str, float]:
    metrics = {}
    for i in range(nvml.nvmlDeviceGetCount()):
        device = nvml.nvmlDeviceGetHandleByIndex(i)
        metrics[f"system/gpu{i}/utilization_percent"] = float(
            nvml.nvmlDeviceGetUtilizationRates(device).gpu
        )
        metrics[f"system/gpu{i}/memory_mb"] = nvml.nvmlDeviceGetMemoryInfo(device).used / 2**20
    return metrics
