"""LRN forward and forward+backward, fastalex vs torch, at AlexNet's shapes.

CUDA: batch 128, 96x55x55 and 256x27x27, fp32 and bf16 (NCHW and channels_last), triton and cuda
backends. CPU: batch 16, cpu backend. The summary table holds the device-timed medians for both
sides, the speed-up and the GB/s as a fraction of the copy bandwidth measured in this run.
Targets (H100/H200): triton forward >= 80% of copy bandwidth, forward+backward >= 70%, cuda within
1.2x of triton; on the 2-core CPU, cpu forward+backward >= 8x torch at batch 16, 96x55x55.
"""
from __future__ import annotations

import pytest

from conftest import BACKENDS, DEVICE
from fastalex.bench import ops


@pytest.mark.parametrize("kind", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ops.cases("lrn", DEVICE), ids=lambda c: c.name.replace(" ", "-"))
def test_lrn(measure_case, case, backend, kind):
    measure_case(case, backend, kind)
