"""ReLU -> LRN -> max-pool fused, forward and forward+backward, against the eager torch chain and
against torch.compile of that chain, at AlexNet's conv1 and conv2 outputs.

CUDA: batch 128, 96x55x55 and 256x27x27, fp32 and bf16 (and 96x55x55 channels_last); triton (fused)
and cuda (composed) backends. CPU: batch 16, cpu backend, against eager torch only (inductor's C++
build would dominate the run); on a GPU torch.compile at 96x55x55 NCHW only (each new shape recompiles).
Targets (H100/H200): fused forward >= 20x the eager chain (1.604 ms fp32 at 96x55x55 on an H200) and
>= 1.5x the compiled chain; fused forward+backward >= 10x the eager chain.
Floors: forward 0.045 ms, forward+backward 0.125 ms at 96x55x55 fp32 on an H200.
"""
from __future__ import annotations

import pytest

from conftest import BACKENDS, DEVICE
from fastalex.bench import ops



def _refs(case: ops.Case) -> tuple[str, ...]:
    compiled = DEVICE.type == "cuda" and case.hw == 55 and not case.channels_last
    return ("torch", "torch.compile") if compiled else ("torch",)


@pytest.mark.parametrize("kind", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ops.cases("relu_lrn_max_pool", DEVICE), ids=lambda c: c.name.replace(" ", "-"))
def test_relu_lrn_max_pool2d(measure_case, case, backend, kind):
    measure_case(case, backend, kind, _refs(case))
