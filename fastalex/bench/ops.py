"""LRN, max-pool and the fused ReLU/LRN/max-pool at AlexNet's shapes, on a fastalex backend against
torch (eager, or torch.compile of the same torch code); GB/s count the bytes an operator must move."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex._checks import pool_output_size
from fastalex.bench.report import Row
from fastalex.bench.timing import time_ms


# The operators measured; each row compares one of them on a fastalex backend with a reference.
OPS = ("lrn", "max_pool", "relu_lrn_max_pool")
# AlexNet's settings: LRN (torch's arguments: the paper's k=2, n=5, alpha 1e-4 on the raw sum is 5e-4
# here) and the overlapping 3x3/2 max-pool.
LRN_ARGS = (5, 5e-4, 0.75, 2.0)
POOL_ARGS = (3, 2)


@dataclasses.dataclass
class Case:
    op: str  # one of OPS
    batch: int
    channels: int
    hw: int
    dtype: torch.dtype
    channels_last: bool = False

    @property
    def name(self) -> str:
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))
        return f"{self.batch}x{self.channels}x{self.hw}x{self.hw} {dt}{' cl' if self.channels_last else ''}"

    @property
    def pooled(self) -> bool:
        return self.op != "lrn"

    def make(self, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, gradient of the output), in the case's dtype and layout."""
        g = torch.Generator(device=device).manual_seed(seed)
        shape = (self.batch, self.channels, self.hw, self.hw)
        if self.op == "relu_lrn_max_pool":  # a convolution's output: half of it below zero
            x = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
        else:  # post-ReLU-like magnitudes, never all zeros (zeros hide unwritten outputs and run faster)
            x = torch.rand(shape, generator=g, device=device, dtype=torch.float32).mul_(4)
        out_hw = pool_output_size(self.hw, *POOL_ARGS, pad=0) if self.pooled else self.hw
        grad = torch.randn((self.batch, self.channels, out_hw, out_hw), generator=g, device=device,
                           dtype=torch.float32)
        x, grad = x.to(self.dtype), grad.to(self.dtype)
        if self.channels_last:
            x, grad = x.to(memory_format=torch.channels_last), grad.to(memory_format=torch.channels_last)
        return x, grad

    def traffic(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[int, int]:
        """Bytes the forward and the forward+backward must move at least: read the input, write the
        output; then read the output's gradient and write the input's (the LRN backward also reads x)."""
        nx, ny = x.numel() * x.element_size(), grad.numel() * grad.element_size()
        fwd = nx + ny
        return fwd, fwd + ny + nx + (nx if self.op != "max_pool" else 0)


def cases(op: str, device: torch.device, quick: bool = False) -> list[Case]:
    """AlexNet's inputs to `op`: batch 128 on a GPU, batch 16 on the CPU; quick: one small case."""
    if quick:
        return [Case(op, 2, 96, 27, torch.float32)]
    if device.type != "cuda":
        return [Case(op, 16, 96, 55, torch.float32), Case(op, 16, 256, 27, torch.float32),
                Case(op, 16, 96, 55, torch.float32, channels_last=True)]
    if op == "max_pool":
        shapes = [(96, 55), (256, 27), (256, 13)]
        return ([Case(op, 128, c, hw, dt) for dt in (torch.float32, torch.bfloat16) for c, hw in shapes]
                + [Case(op, 128, 96, 55, dt, channels_last=True) for dt in (torch.float32, torch.bfloat16)])
    return ([Case(op, 128, c, hw, dt) for dt in (torch.float32, torch.bfloat16) for c, hw in ((96, 55), (256, 27))]
            + [Case(op, 128, 96, 55, dt, channels_last=True) for dt in (torch.float32, torch.bfloat16)])


def _torch_op(op: str):
    if op == "lrn":
        return lambda t: F.local_response_norm(t, *LRN_ARGS)
    if op == "max_pool":
        return lambda t: F.max_pool2d(t, *POOL_ARGS)
    return lambda t: F.max_pool2d(F.local_response_norm(F.relu(t), *LRN_ARGS), *POOL_ARGS)


def _fastalex_op(op: str, backend: str):
    fn = {"lrn": lambda t: fa.local_response_norm(t, *LRN_ARGS),
          "max_pool": lambda t: fa.max_pool2d(t, *POOL_ARGS),
          "relu_lrn_max_pool": lambda t: fa.relu_lrn_max_pool2d(t, *LRN_ARGS, *POOL_ARGS)}[op]

    def call(t):
        with fastalex.backend(backend):
            return fn(t)

    return call


_COMPILED: dict = {}


def fns(case: Case, backend: str, x: torch.Tensor, grad: torch.Tensor):
    """(forward, forward+backward) closures for a fastalex backend, "torch" (eager torch.nn.functional)
    or "torch.compile" (the same torch code compiled by inductor, once per op)."""
    if backend == "torch":
        call = _torch_op(case.op)
    elif backend == "torch.compile":
        if case.op not in _COMPILED:
            # Static shapes, as torch.compile would serve one model; every case is a new shape, so let
            # dynamo keep more than its default 8 specialisations before it falls back to eager.
            import torch._dynamo.config as cfg

            name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, name, max(getattr(cfg, name), 64))
            _COMPILED[case.op] = torch.compile(_torch_op(case.op), dynamic=False)
        call = _COMPILED[case.op]
    else:
        call = _fastalex_op(case.op, backend)
    xg = x.detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return call(x)

    def forward_backward():
        xg.grad = None
        call(xg).backward(grad)

    return forward, forward_backward


def measure(case: Case, backend: str, device: torch.device, copy_gbps: float, ref_ms: dict | None = None,
            refs: tuple[str, ...] = ("torch",), kinds: tuple[str, ...] = ("fwd", "fwd+bwd")) -> list[Row]:
    """Rows for `backend` against each reference in `refs` (eager torch, "torch.compile") on the same
    inputs, for each of `kinds` ("fwd", "fwd+bwd"). ref_ms caches the references' timings by
    (case, op, kind, ref), so several backends share one measurement."""
    x, grad = case.make(device)
    nbytes = dict(zip(("fwd", "fwd+bwd"), case.traffic(x, grad)))
    ref_ms = {} if ref_ms is None else ref_ms
    ours = dict(zip(("fwd", "fwd+bwd"), fns(case, backend, x, grad)))
    ours_ms = {kind: time_ms(ours[kind], device) for kind in kinds}
    rows = []
    for ref in refs:
        theirs = dict(zip(("fwd", "fwd+bwd"), fns(case, ref, x, grad)))
        for kind in kinds:
            key = (case.name, case.op, kind, ref)
            if key not in ref_ms:
                ref_ms[key] = time_ms(theirs[kind], device)
            rows.append(Row(f"{case.op}_{kind}", case.name, backend, ours_ms[kind], ref_ms[key], nbytes[kind],
                            copy_gbps, ref))
    return rows
