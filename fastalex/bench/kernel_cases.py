"""AlexNet's Triton launches, for the compiled-code report (fastalex/bench/compiled_code.py).

One Job per (launcher, AlexNet shape, dtype, layout, candidate config): batch 128; both variants'
five convolutions forward, grad_input (dgrad; not conv1, whose input needs no gradient) and
grad_weight (wgrad), the paper's conv2/4/5 also with groups=2; LRN, max-pool and the fused
ReLU -> LRN -> max-pool, forward and backward, at 96x55x55, 256x27x27 and 256x13x13. Tensors are meta
tensors laid out as the model lays them out ("cl": activations and weights channels_last; "nchw":
contiguous), handed to the launchers exactly as fastalex/ops hands them (LRN as (N, C, S) views,
max-pool winners as uint8), so Triton specialises every integer, divisibility and alignment as it
would on a GPU launch. Nothing here compiles: Job.run() calls the launcher with config=Job.config,
and compiled_code.py turns the launch into a compile.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
from typing import Callable

import torch

from fastalex.kernels import conv2d as conv
from fastalex.kernels import local_response_norm as lrn
from fastalex.kernels import max_pool2d as pool
from fastalex.kernels import relu_lrn_max_pool2d as fused
from fastalex.kernels import _pool as pool_helpers
from fastalex.kernels import _window as window_helpers
from fastalex.kernels._common import Pool

BATCH = 128
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LAYOUTS = ("cl", "nchw")
OPS = ("lrn", "max_pool", "relu_lrn_max_pool", "conv")
TRAINING_PATH = ("bf16", "cl")  # the dtype and layout of a bf16-autocast channels_last training step
PLANES = ((96, 55), (256, 27), (256, 13))  # (channels, height = width) for LRN, max-pool and the fused op
LRN_ARGS = (5, 5e-4, 0.75, 2.0)  # size, alpha, beta, k (AlexNet's; the floats are not specialised)
POOL = Pool((3, 3), (2, 2), (0, 0), (1, 1))
# fp32 convolutions run as TF32 when torch's would (fastalex/ops/conv2d.py); torch's default allows it.
CONV_FP32_PRECISION = "tf32"


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    name: str  # e.g. "paper conv2 g2"
    cin: int
    cout: int
    k: int
    stride: int
    pad: tuple[int, int, int, int]  # left, right, top, bottom
    groups: int
    relu: bool  # ReLU fused into the forward (else the next op applies it); the backward gets grad_y masked
    # by it already (fastalex/ops/conv2d.py), so grad_input and grad_weight run without the mask
    size: int  # input height = width


def _convs() -> list[ConvSpec]:
    # (models/alexnet.py) a convolution followed by a pool carries no ReLU: the fused ReLU-LRN-pool or
    # ReLU-pool applies it (paper conv1, conv2, conv5; torchvision conv1, conv2, conv5).
    paper = [(3, 96, 11, 4, (1, 2, 1, 2), 224, False), (96, 256, 5, 1, (2,) * 4, 27, False),
             (256, 384, 3, 1, (1,) * 4, 13, True), (384, 384, 3, 1, (1,) * 4, 13, True),
             (384, 256, 3, 1, (1,) * 4, 13, False)]
    tv = [(3, 64, 11, 4, (2,) * 4, 224, False), (64, 192, 5, 1, (2,) * 4, 27, False),
          (192, 384, 3, 1, (1,) * 4, 13, True), (384, 256, 3, 1, (1,) * 4, 13, True),
          (256, 256, 3, 1, (1,) * 4, 13, False)]
    out = []
    for i, (cin, cout, k, s, pad, size, relu) in enumerate(paper):
        for g in ((1, 2) if i in (1, 3, 4) else (1,)):
            out.append(ConvSpec(f"paper conv{i + 1}{' g2' if g == 2 else ''}", cin, cout, k, s, pad, g, relu, size))
    out += [ConvSpec(f"tv conv{i + 1}", cin, cout, k, s, pad, 1, relu, size)
            for i, (cin, cout, k, s, pad, size, relu) in enumerate(tv)]
    return out


CONVS = _convs()


@dataclasses.dataclass
class Job:
    op: str  # one of OPS
    direction: str  # fwd | bwd | dgrad | wgrad
    case: str
    dtype: str
    layout: str
    config: object
    default: bool  # the first candidate: what an untuned run (FASTALEX_TUNE=0, CUDA-graph capture) uses
    launch: Callable[[object], None]  # launch(config): calls the launcher with config=config
    flops: float = 0.0  # the operation's useful FLOPs (convolutions), for the cost model
    group: str = ""  # jobs likely to share one compile (same kernel, config and geometry): one worker's


    def run(self) -> None:
        self.launch(self.config)


def config_name(cfg) -> str:
    """'dot bc32 bs32 nw4': a config's fields, strategy by value, the rest as initials + value."""
    parts = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        parts.append(v if isinstance(v, str) else "".join(w[0] for w in f.name.split("_")) + str(v))
    return " ".join(parts)


def _t(shape, dtype, layout) -> torch.Tensor:
    fmt = torch.channels_last if layout == "cl" and len(shape) == 4 else torch.contiguous_format
    return torch.empty(shape, dtype=dtype, device="meta", memory_format=fmt)


def _out(size: int, k: int, s: int, before: int, after: int) -> int:
    return (size + before + after - k) // s + 1


def _conv_jobs(spec: ConvSpec, dt: str, layout: str):
    """(direction, candidates, launch, flops, geometry) of one convolution."""
    dtype, n, g = DTYPES[dt], BATCH, spec.groups
    ho = _out(spec.size, spec.k, spec.stride, spec.pad[2], spec.pad[3])
    wo = _out(spec.size, spec.k, spec.stride, spec.pad[0], spec.pad[1])
    x = _t((n, spec.cin, spec.size, spec.size), dtype, layout)
    w = _t((spec.cout, spec.cin // g, spec.k, spec.k), dtype, layout)
    b, y = torch.empty(spec.cout, dtype=dtype, device="meta"), _t((n, spec.cout, ho, wo), dtype, layout)
    gy, dx = _t(y.shape, dtype, layout), _t(x.shape, dtype, layout)
    geo = conv.ConvGeometry(spec.k, spec.k, spec.stride, spec.stride, spec.pad[2], spec.pad[0], g)
    prec = CONV_FP32_PRECISION if dtype == torch.float32 else "tf32"
    flops = 2.0 * n * ho * wo * spec.cout * (spec.cin // g) * spec.k * spec.k
    cl = x.stride(1) == 1  # as the launchers tell the layouts apart
    out = [("fwd", conv.forward_candidates(spec.cout // g, cl),
            lambda cfg: conv.conv2d_forward(x, w, b, y, geo, prec, spec.relu, config=cfg))]
    if spec.cin != 3:  # conv1's input (the image) needs no gradient
        out.append(("dgrad", conv.grad_input_candidates(spec.cin // g, cl),
                    lambda cfg: conv.conv2d_grad_input(gy, None, w, dx, geo, prec, config=cfg)))
    out.append(("wgrad", conv.grad_weight_candidates(spec.cout // g, cl, dtype == torch.float32),
                lambda cfg: conv.conv2d_grad_weight(gy, None, x, tuple(w.shape), geo, prec, True, config=cfg)))
    geometry = f"k{spec.k} s{spec.stride} p{spec.pad} relu{spec.relu}"
    return [(d, cands, fn, flops, geometry) for d, cands, fn in out]


def _plane_jobs(op: str, c: int, hw: int, dt: str, layout: str):
    """(direction, candidates, launch) of LRN, max-pool or the fused op on a c x hw x hw plane."""
    dtype, n = DTYPES[dt], BATCH
    x, gx = _t((n, c, hw, hw), dtype, layout), _t((n, c, hw, hw), dtype, layout)
    cl = layout == "cl"
    if op == "lrn":
        x3, y3, g3, d3 = (_t(x.shape, dtype, layout).view(n, c, hw * hw) for _ in range(4))
        half = dtype != torch.float32
        return [("fwd", lrn.forward_candidates(LRN_ARGS[0], cl, half),
                 lambda cfg: lrn.lrn_forward(x3, y3, *LRN_ARGS, cfg)),
                ("bwd", lrn.backward_candidates(LRN_ARGS[0], cl, half),
                 lambda cfg: lrn.lrn_backward(x3, g3, d3, *LRN_ARGS, cfg))]
    ho = _out(hw, 3, 2, 0, 0)
    y, gy = _t((n, c, ho, ho), dtype, layout), _t((n, c, ho, ho), dtype, layout)
    win = _t((n, c, ho, ho), torch.uint8, layout)  # ops/max_pool2d.py: uint8 winners for windows of <= 256 taps
    if op == "max_pool":
        return [("fwd", pool.candidates(cl), lambda cfg: pool.max_pool2d_forward(x, y, win, POOL, cfg)),
                ("bwd", pool.candidates(cl), lambda cfg: pool.max_pool2d_backward(gy, win, gx, POOL, cfg))]
    return [("fwd", fused.forward_candidates(LRN_ARGS[0], POOL, cl),
             lambda cfg: fused.relu_lrn_max_pool2d_forward(x, y, win, *LRN_ARGS, POOL, cfg)),
            ("bwd", fused.backward_candidates(cl),
             lambda cfg: fused.relu_lrn_max_pool2d_backward(x, gy, win, gx, *LRN_ARGS, POOL, cfg))]


def _launches(ops, dtypes, layouts):
    """(op, direction, case, dtype, layout, candidates, launch, flops, geometry) for every selected launch."""
    for dt in dtypes:
        for layout in layouts:
            for op in ops:
                if op == "conv":
                    for spec in CONVS:
                        for d, cands, fn, flops, geometry in _conv_jobs(spec, dt, layout):
                            yield op, d, spec.name, dt, layout, cands, fn, flops, geometry
                else:
                    for c, hw in PLANES:
                        for d, cands, fn in _plane_jobs(op, c, hw, dt, layout):
                            yield op, d, f"{c}x{hw}x{hw}", dt, layout, cands, fn, 0.0, ""


def jobs(ops=OPS, dtypes=tuple(DTYPES), layouts=LAYOUTS, sweep: str = "all") -> list[Job]:
    """The selected jobs in a fixed order. sweep: "all" candidates, "defaults" only, or "ci" (every
    candidate on the training path, bf16 channels_last; the defaults elsewhere)."""
    out = []
    for op, d, case, dt, layout, cands, fn, flops, geometry in _launches(ops, dtypes, layouts):
        every = sweep == "all" or (sweep == "ci" and (dt, layout) == TRAINING_PATH)
        for i, cfg in enumerate(cands if every else cands[:1]):
            group = f"{op} {d} {dt} {layout} {geometry} {config_name(cfg)}"
            out.append(Job(op, d, case, dt, layout, cfg, i == 0, fn, flops, group))
    return out


def shards(jobs: list[Job], n: int) -> list[int]:
    """The worker (0..n-1) of each job: whole groups to a worker, so a compile two cases share is done
    once (Triton's in-process cache), groups dealt round-robin in order of first appearance."""
    order = {g: i % n for i, g in enumerate(dict.fromkeys(j.group for j in jobs))}
    return [order[j.group] for j in jobs]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# Main-loop iterations one program runs, from the launch's named arguments (for the cost model).
STEPS: dict[str, Callable[[dict], int]] = {
    "_conv2d_forward_kernel": lambda a: a["KH"] * a["KW"] * a["C_STEPS"],
    "_conv2d_forward_gather_kernel": lambda a: _cdiv(a["CG_IN"] * a["KH"] * a["KW"], a["BLOCK_K"]),
    "_conv2d_grad_input_kernel": lambda a: a["KH"] * a["KW"] * a["C_STEPS"],
    "_conv2d_grad_weight_kernel": lambda a: _cdiv(min(a["R_CHUNK"], a["R"]), a["BLOCK_R"]),
    "_conv2d_grad_weight_gather_kernel": lambda a: _cdiv(min(a["R_CHUNK"], a["R"]), a["BLOCK_R"]),
    "_lrn_forward_kernel": lambda a: _cdiv(a["C"], a["BLOCK_C"] - (a["SIZE"] - 1 if a["WINDOW_BY_DOT"] else 0)),
    "_lrn_backward_kernel": lambda a: _cdiv(a["C"], a["BLOCK_C"] - a["SIZE"] + 1),
    "_lrn_forward_seq_kernel": lambda a: a["C"] + a["SIZE"] - 1,
    "_lrn_backward_seq_kernel": lambda a: a["C"] + a["SIZE"] - 1,
    "_forward_seq_kernel": lambda a: a["C"] + a["SIZE"] - 1,
    "_backward_seq_kernel": lambda a: a["C"] + a["SIZE"] - 1,
}


def fingerprint() -> str:
    """A hash of what the report depends on: the source of every Triton kernel and helper (jitted
    functions, _window.py's and _pool.py's included), the launchers' source, and every case's candidate
    list. benchmarks/KERNELS.md records it; tests/test_kernel_report.py fails when it changes without
    the report being regenerated."""
    h = hashlib.sha256()
    for mod in (conv, lrn, pool, fused, window_helpers, pool_helpers):
        for name, obj in sorted(vars(mod).items()):
            fn = getattr(obj, "fn", obj)  # a @triton.jit function (JITFunction, or the interpreter's) or a plain one
            if inspect.isfunction(fn) and fn.__module__ == mod.__name__:
                h.update(name.encode() + inspect.getsource(fn).encode())
    h.update(repr((CONVS, PLANES, LRN_ARGS, POOL, BATCH, CONV_FP32_PRECISION)).encode())
    for op, d, case, dt, layout, cands, *_ in _launches(OPS, tuple(DTYPES), LAYOUTS):
        h.update(f"{op} {d} {case} {dt} {layout} {[config_name(c) for c in cands]}".encode())
    return h.hexdigest()[:16]
