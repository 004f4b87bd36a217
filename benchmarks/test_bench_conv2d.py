"""AlexNet's five convolutions (paper variant, batch 128), fastalex conv2d_relu (triton) against torch's
convolution (cuDNN) + a separate ReLU (+ an explicit pad for conv1's asymmetric padding), forward and
forward+backward (conv1: grad_weight and grad_bias only), bf16 and fp32 (TF32 as torch's flags allow),
channels_last, in TFLOP/s and as a fraction of the bf16 matmul rate measured in the same run.

Targets (H100/H200): conv1 forward >= 5x cuDNN (1.041 ms bf16 on an H200), conv1 backward >= 2x;
conv2..conv5 forward >= 1.0x cuDNN + ReLU, backward >= 0.9x. Floor: conv1 is 27 GFLOP at batch 128,
0.04 ms at 687 TFLOP/s. GPU only: on a CPU the cpu backend runs torch's own convolution.
"""
from __future__ import annotations

import pytest

import fastalex
from conftest import DEVICE
from fastalex.bench import conv, timing

CASES = conv.conv_cases(DEVICE) if DEVICE.type == "cuda" else []


@pytest.mark.skipif(DEVICE.type != "cuda" or "triton" not in fastalex.backends(), reason="needs a GPU and triton")
@pytest.mark.parametrize("kind", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_conv2d_relu(benchmark, case, kind, device, matmul_tflops, ref_ms, record):
    rows = conv.measure_conv(case, "triton", device, matmul_tflops, ref_ms, kinds=(kind,))
    record(rows)
    benchmark.extra_info.update(rows=[r.as_dict() for r in rows])
    x, w, b, grad = case.make(device)
    fn = dict(zip(("fwd", "fwd+bwd"), conv.conv_fns(case, "triton", x, w, b, grad)))[kind]

    def once():
        fn()
        timing.sync(device)

    benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
