"""AlexNet's five convolutions (paper variant, batch 128, channels_last) per direction against cuDNN:
forward (fastalex conv+bias+ReLU against cuDNN's convolution + a separate ReLU, an explicit pad for
conv1's asymmetric padding), grad_input (dgrad; not conv1) and grad_weight with grad_bias (wgrad),
each timed alone. cuDNN's backward directions are aten.convolution_backward with one output mask each,
on a grad_output already masked by the ReLU (the mask's cost is left out of cuDNN's figure; fastalex's
kernels apply it as they load). We have no measured anchor for cuDNN's backward: this is it.

Rated in TFLOP/s of the forward's FLOPs (each direction is one GEMM of that size) against the bf16
matmul rate measured in the same run. GPU only (benchmarks/gpu_check.sh, stage 4).
"""
from __future__ import annotations

import pytest
import torch

import fastalex
from conftest import DEVICE
from fastalex.bench import conv, timing
from fastalex.bench.report import Row

CASES = conv.conv_cases(DEVICE) if DEVICE.type == "cuda" else []
DIRECTIONS = ("fwd", "dgrad", "wgrad")


def _fns(case: conv.ConvCase, x, w, b, grad):
    """{direction: (fastalex's closure, cuDNN's closure)}."""
    left, right, top, bottom = case.padding
    stride, pad4 = [case.stride] * 2, list(case.padding)
    ours_fwd, ref_fwd = (conv.conv_fns(case, backend, x, w, b, grad)[0] for backend in ("triton", "torch"))
    y = ours_fwd()  # the forward output: the ReLU's mask for the backward kernels
    masked = torch.ops.aten.threshold_backward(grad, y, 0.0)
    x_ref = x if (left, top) == (right, bottom) else torch.nn.functional.pad(x, case.padding)
    pad_ref = [top, left] if (left, top) == (right, bottom) else [0, 0]

    def cudnn_backward(mask):
        return lambda: torch.ops.aten.convolution_backward(masked, x_ref, w, [w.shape[0]], stride, pad_ref, [1, 1],
                                                            False, [0, 0], 1, mask)

    out = {"fwd": (ours_fwd, ref_fwd),
           "wgrad": (lambda: torch.ops.fastalex.conv2d_grad_weight(grad, y, x, list(w.shape), stride, pad4, 1, True,
                                                                   "triton"), cudnn_backward([False, True, True]))}
    if case.input_grad:
        out["dgrad"] = (lambda: torch.ops.fastalex.conv2d_grad_input(grad, y, w, list(x.shape), case.channels_last,
                                                                     stride, pad4, 1, "triton"),
                        cudnn_backward([True, False, False]))
    return out


@pytest.mark.skipif(DEVICE.type != "cuda" or "triton" not in fastalex.backends(), reason="needs a GPU and triton")
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_conv_direction(benchmark, case, direction, device, matmul_tflops, record):
    x, w, b, grad = case.make(device)
    fns = _fns(case, x, w, b, grad)
    if direction not in fns:
        pytest.skip(f"{case.layer}'s input needs no gradient")
    ours, cudnn = fns[direction]
    ms, ref_ms = timing.time_ms(ours, device), timing.time_ms(cudnn, device)
    row = Row(f"conv_{direction}", case.name, "triton", ms, ref_ms, case.flops()[0], matmul_tflops, "torch", "TFLOP/s")
    record([row])
    benchmark.extra_info.update(rows=[row.as_dict()])

    def once():
        ours()
        timing.sync(device)

    benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)
