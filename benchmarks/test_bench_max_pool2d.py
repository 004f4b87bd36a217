"""Max-pool 3x3/2 forward and forward+backward, fastalex vs torch, at AlexNet's three pools.

CUDA: batch 128, 96x55x55, 256x27x27 and 256x13x13, fp32 and bf16 (and 96x55x55 channels_last),
triton and cuda backends. CPU: batch 16, cpu backend.
Targets (H100/H200): forward >= 2.5x torch (0.145 ms fp32 at 96x55x55 on an H200), forward+backward
>= 2x torch (0.623 ms). On the 2-core CPU: cpu forward+backward no slower than torch.
Floors: forward 0.045 ms, forward+backward 0.090 ms at 96x55x55 fp32 on an H200 (bytes / copy rate).
"""
from __future__ import annotations

import pytest

from conftest import BACKENDS, DEVICE
from fastalex.bench import ops


@pytest.mark.parametrize("kind", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ops.cases("max_pool", DEVICE), ids=lambda c: c.name.replace(" ", "-"))
def test_max_pool2d(measure_case, case, backend, kind):
    measure_case(case, backend, kind)
