"""Timing primitives and what the device can do (copy bandwidth, bf16 matmul rate), measured in the
running process; GPU times come from CUDA events (median of many launches after a warm-up), CPU
times from perf_counter."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 5, samples: int = 15,
            budget_s: float = 0.5) -> float:
    """Median milliseconds of one fn() on `device`: device time on CUDA, wall clock on CPU.

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
        return statistics.median(out)
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
    return statistics.median(out)


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
