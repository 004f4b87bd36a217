"""Timing primitives and what the device can do (copy bandwidth, bf16 matmul rate), measured in the
running process; GPU times come from CUDA events (median of many launches after a warm-up), CPU
times from perf_counter."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

# A timing is marked noisy when its samples spread by more than this (max / min), or when the load
# average exceeded the number of cores while it ran (other work competed for them).
NOISY_SPREAD = 1.5


class Timing(float):
    """A median in milliseconds (a float: arithmetic and formatting as usual) that remembers how its
    samples spread (max / min) and the 1-minute load average against the cores when it was taken."""

    samples: tuple
    spread: float
    load: float | None
    cores: int

    def __new__(cls, median_ms: float, samples=(), load: float | None = None, cores: int | None = None):
        self = super().__new__(cls, median_ms)
        self.samples = tuple(samples)
        low = min(self.samples) if self.samples else 0.0
        self.spread = max(self.samples) / low if low > 0 else 1.0
        self.load = load
        self.cores = cores or cpu_cores()
        return self

    def __reduce__(self):  # copy, deepcopy (dataclasses.asdict) and pickle keep the type
        return Timing, (float(self), self.samples, self.load, self.cores)

    @property
    def loaded(self) -> bool:
        return self.load is not None and self.load > self.cores

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD or self.loaded

    def why_noisy(self) -> str:
        """"" or what makes the figure unreliable, e.g. "spread 2.1x, load 5.3 on 2 cores"."""
        parts = ([f"spread {self.spread:.1f}x"] if self.spread > NOISY_SPREAD else []) \
            + ([f"load {self.load:.1f} on {self.cores} cores"] if self.loaded else [])
        return ", ".join(parts)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 5, samples: int = 15,
            budget_s: float = 0.5) -> Timing:
    """Median milliseconds of one fn() on `device`: device time on CUDA, wall clock on CPU, as a
    Timing (a float) that also carries the samples' spread (max / min) and the load average.

    On CUDA the host's Python and launch overhead must stay out of the figure: each sample parks the
    GPU on a sleep kernel while the host queues `calls` launches of fn behind it, and CUDA events
    time those launches back to back. fn must not synchronize.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once_s = max(time.perf_counter() - t0, 1e-6)
    if device.type != "cuda":
        reps = int(min(200, max(3, budget_s / once_s)))
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return Timing(statistics.median(out), out, load_average())
    calls = int(min(50, max(1, 0.02 / once_s)))  # about 20 ms of work per sample
    out = []
    for _ in range(samples):
        # Long enough for the host to queue every call (at ~2 GHz; a slower clock only waits longer).
        torch.cuda._sleep(int(2e9 * (once_s * calls * 1.5 + 1e-3)))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / calls)
    return Timing(statistics.median(out), out, load_average())


def matmul_tflops(device: torch.device) -> float | None:
    """bf16 matmul rate (8192^3) in TFLOP/s on a GPU; None on the CPU."""
    if device.type != "cuda":
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, device, warmup=3)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def copy_bandwidth_gbps(device: torch.device) -> float:
    """Device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    nbytes = (1 << 30) if device.type == "cuda" else (1 << 28)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=3)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment() -> dict:
    import platform

    import fastalex

    info = {"torch": torch.__version__, "python": platform.python_version(), "fastalex": fastalex.__version__}
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        info["triton"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info
