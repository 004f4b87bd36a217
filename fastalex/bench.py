"""Measurement helpers shared by `python -m fastalex bench` and the pytest-benchmark suites.

Every figure is measured in the running process: the device's copy bandwidth, then each operator
for a fastalex backend and for torch on the same inputs, so the ratios compare like with like.
GPU times come from CUDA events (median of many launches after a warm-up), CPU times from
perf_counter.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa


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


def copy_bandwidth_gbps(device: torch.device) -> float:
    """Device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    nbytes = (1 << 30) if device.type == "cuda" else (1 << 28)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=3)
    return 2 * nbytes / (ms * 1e-3) / 1e9


@dataclasses.dataclass
class LRNCase:
    batch: int
    channels: int
    hw: int
    dtype: torch.dtype
    channels_last: bool = False
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    @property
    def name(self) -> str:
        dt = str(self.dtype).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16")
        dt = dt.replace("float16", "fp16")
        return f"{self.batch}x{self.channels}x{self.hw}x{self.hw} {dt}{' cl' if self.channels_last else ''}"

    def make(self, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator(device=device).manual_seed(seed)
        shape = (self.batch, self.channels, self.hw, self.hw)
        # Post-ReLU-like magnitudes, never all zeros (zeros hide unwritten outputs and run faster).
        x = torch.rand(shape, generator=g, device=device, dtype=torch.float32).mul_(4).to(self.dtype)
        grad = torch.randn(shape, generator=g, device=device, dtype=torch.float32).to(self.dtype)
        if self.channels_last:
            x, grad = x.to(memory_format=torch.channels_last), grad.to(memory_format=torch.channels_last)
        return x, grad


def lrn_cases(device: torch.device, quick: bool = False) -> list[LRNCase]:
    """AlexNet's LRN inputs: batch 128 on a GPU, batch 16 on the CPU; quick: one small case."""
    if quick:
        return [LRNCase(2, 96, 27, torch.float32)]
    if device.type == "cuda":
        return [LRNCase(128, 96, 55, torch.float32), LRNCase(128, 256, 27, torch.float32),
                LRNCase(128, 96, 55, torch.bfloat16), LRNCase(128, 256, 27, torch.bfloat16),
                LRNCase(128, 96, 55, torch.float32, channels_last=True),
                LRNCase(128, 96, 55, torch.bfloat16, channels_last=True)]
    return [LRNCase(16, 96, 55, torch.float32), LRNCase(16, 256, 27, torch.float32)]


def lrn_fns(case: LRNCase, backend: str, x: torch.Tensor, grad: torch.Tensor):
    """(forward, forward+backward) closures for one backend ("torch" is torch.nn.functional)."""
    args = (case.size, case.alpha, case.beta, case.k)

    def call(inp):
        if backend == "torch":
            return F.local_response_norm(inp, *args)
        with fastalex.backend(backend):
            return fa.local_response_norm(inp, *args)

    xg = x.detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return call(x)

    def forward_backward():
        xg.grad = None
        call(xg).backward(grad)

    return forward, forward_backward


@dataclasses.dataclass
class Row:
    op: str
    case: str
    backend: str
    ms: float
    torch_ms: float
    bytes: int
    copy_gbps: float

    @property
    def gbps(self) -> float:
        return self.bytes / (self.ms * 1e-3) / 1e9

    @property
    def frac_copy(self) -> float:
        return self.gbps / self.copy_gbps

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.ms

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(gbps=self.gbps, frac_copy=self.frac_copy, speedup=self.speedup)
        return d


def measure_lrn(case: LRNCase, backend: str, device: torch.device, copy_gbps: float,
                torch_ms: dict | None = None) -> list[Row]:
    """Forward and forward+backward rows for `backend` against torch on the same inputs.

    torch_ms caches torch's timings by (case, op) so several backends share one measurement.
    """
    x, grad = case.make(device)
    elem = x.element_size() * x.numel()
    torch_ms = {} if torch_ms is None else torch_ms
    rows = []
    fwd, fwdbwd = lrn_fns(case, backend, x, grad)
    ref_fwd, ref_fwdbwd = lrn_fns(case, "torch", x, grad)
    for op, fn, ref, nbytes in (("lrn_fwd", fwd, ref_fwd, 2 * elem), ("lrn_fwd+bwd", fwdbwd, ref_fwdbwd, 5 * elem)):
        key = (case.name, op)
        if key not in torch_ms:
            torch_ms[key] = time_ms(ref, device)
        rows.append(Row(op, case.name, backend, time_ms(fn, device), torch_ms[key], nbytes, copy_gbps))
    return rows


def format_table(rows: list[Row], copy_gbps: float, device_name: str) -> str:
    head = f"device: {device_name}; copy bandwidth {copy_gbps:.0f} GB/s (read+write), measured in this run"
    lines = [head, f"{'op':<12} {'case':<24} {'backend':<8} {'ms':>9} {'torch ms':>9} {'speedup':>8} "
                   f"{'GB/s':>8} {'% copy':>7}"]
    for r in rows:
        lines.append(f"{r.op:<12} {r.case:<24} {r.backend:<8} {r.ms:>9.4f} {r.torch_ms:>9.4f} "
                     f"{r.speedup:>7.2f}x {r.gbps:>8.1f} {100 * r.frac_copy:>6.1f}%")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment() -> dict:
    import platform

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
