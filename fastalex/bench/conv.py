"""AlexNet's five convolutions (paper variant): fastalex's conv+bias+ReLU against torch's convolution
(cuDNN on a GPU) followed by a separate ReLU, and an explicit pad where the padding is asymmetric
(conv1), as a torch user must write it; rated in TFLOP/s of the bf16 matmul rate."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex._checks import conv_output_size
from fastalex.bench.report import Row
from fastalex.bench.timing import time_ms


@dataclasses.dataclass
class ConvCase:
    layer: str
    batch: int
    c_in: int
    hw: int
    c_out: int
    kernel: int
    stride: int
    padding: tuple[int, int, int, int]  # left, right, top, bottom
    dtype: torch.dtype
    channels_last: bool = True

    @property
    def name(self) -> str:
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"{self.layer} {self.batch}x{self.c_in}x{self.hw}x{self.hw} {dt}{' cl' if self.channels_last else ''}"

    @property
    def input_grad(self) -> bool:
        return self.layer != "conv1"  # the first layer's input (the image) needs no gradient

    @property
    def out_hw(self) -> int:
        left, right, _, _ = self.padding
        return conv_output_size(self.hw, self.kernel, self.stride, left, right)

    def flops(self) -> tuple[float, float]:
        """(forward, forward+backward) FLOPs: 2 N Ho Wo Cout Cin k^2 per GEMM; the backward is one GEMM
        (grad_weight) for conv1 and two (grad_input too) for the others."""
        fwd = 2.0 * self.batch * self.out_hw**2 * self.c_out * self.c_in * self.kernel**2
        return fwd, fwd * (3 if self.input_grad else 2)

    def make(self, device: torch.device, seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(self.batch, self.c_in, self.hw, self.hw, generator=g, device=device).to(self.dtype)
        w = (torch.randn(self.c_out, self.c_in, self.kernel, self.kernel, generator=g, device=device)
             / (self.c_in * self.kernel**2) ** 0.5).to(self.dtype)
        b = torch.randn(self.c_out, generator=g, device=device).mul_(0.1).to(self.dtype)
        grad = torch.randn(self.batch, self.c_out, self.out_hw, self.out_hw, generator=g, device=device).to(self.dtype)
        if self.channels_last:
            x, w, grad = (t.to(memory_format=torch.channels_last) for t in (x, w, grad))
        return x, w, b, grad


def conv_cases(device: torch.device, quick: bool = False) -> list[ConvCase]:
    """AlexNet's convolutions (paper variant) at batch 128 on a GPU; quick: conv1 and conv3 at batch 2."""
    layers = [("conv1", 3, 224, 96, 11, 4, (1, 2, 1, 2)), ("conv2", 96, 27, 256, 5, 1, (2, 2, 2, 2)),
              ("conv3", 256, 13, 384, 3, 1, (1, 1, 1, 1)), ("conv4", 384, 13, 384, 3, 1, (1, 1, 1, 1)),
              ("conv5", 384, 13, 256, 3, 1, (1, 1, 1, 1))]
    if quick:
        return [ConvCase(*layers[0][:1], 2, *layers[0][1:], torch.float32),
                ConvCase(*layers[2][:1], 2, *layers[2][1:], torch.float32)]
    return [ConvCase(layer, 128, *rest, dtype) for dtype in (torch.bfloat16, torch.float32)
            for layer, *rest in layers]


def conv_fns(case: ConvCase, backend: str, x, w, b, grad):
    """(forward, forward+backward) closures: fastalex's conv2d_relu on `backend`, or "torch" (conv2d,
    an F.pad first where the padding is asymmetric, then a separate ReLU)."""
    left, right, top, bottom = case.padding
    if backend == "torch":
        def call(inp, weight, bias):
            if left == right and top == bottom:
                return F.relu(F.conv2d(inp, weight, bias, case.stride, (top, left)))
            return F.relu(F.conv2d(F.pad(inp, case.padding), weight, bias, case.stride))
    else:
        def call(inp, weight, bias):
            with fastalex.backend(backend):
                return fa.conv2d_relu(inp, weight, bias, case.stride, case.padding)
    xg = x.detach().clone().requires_grad_(case.input_grad)
    wg, bg = w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return call(x, w, b)

    def forward_backward():
        xg.grad = wg.grad = bg.grad = None
        call(xg, wg, bg).backward(grad)

    return forward, forward_backward


def measure_conv(case: ConvCase, backend: str, device: torch.device, matmul: float, ref_ms: dict | None = None,
                 kinds: tuple[str, ...] = ("fwd", "fwd+bwd")) -> list[Row]:
    """Rows for fastalex's conv2d_relu on `backend` against torch's, in TFLOP/s of the bf16 matmul rate."""
    x, w, b, grad = case.make(device)
    flops = dict(zip(("fwd", "fwd+bwd"), case.flops()))
    ref_ms = {} if ref_ms is None else ref_ms
    ours = dict(zip(("fwd", "fwd+bwd"), conv_fns(case, backend, x, w, b, grad)))
    theirs = dict(zip(("fwd", "fwd+bwd"), conv_fns(case, "torch", x, w, b, grad)))
    rows = []
    for kind in kinds:
        key = (case.name, "conv", kind, "torch")
        if key not in ref_ms:
            ref_ms[key] = time_ms(theirs[kind], device)
        rows.append(Row(f"conv_relu_{kind}", case.name, backend, time_ms(ours[kind], device), ref_ms[key],
                        flops[kind], matmul, "torch", "TFLOP/s"))
    return rows


_DIRECTIONS = {"conv2d_fwd": "fwd", "conv2d_dgrad": "dgrad", "conv2d_wgrad": "wgrad"}


def tuned_choices() -> list[dict]:
    """What the tuner chose for each convolution launch of this process (the triton backend on a GPU):
    direction, dtype, input shape (C, H, W), weight shape, batch, and the choice: "torch" (torch's own
    convolution, cuDNN) or the Triton config."""
    from fastalex.kernels._common import tuned_configs
    from fastalex.kernels.conv2d_torch import TorchRoute

    out = []
    for key, cfg in tuned_configs().items():
        if not (isinstance(key, tuple) and key and key[0] in _DIRECTIONS):
            continue
        choice = "torch" if isinstance(cfg, TorchRoute) else "triton " + " ".join(
            f"{k}={v}" for k, v in dataclasses.asdict(cfg).items())
        out.append(dict(direction=_DIRECTIONS[key[0]], dtype=str(key[2]).removeprefix("torch."), input=list(key[3]),
                        weight=list(key[4]), batch=key[-1], choice=choice))
    return out
