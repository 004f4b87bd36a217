"""LRN forward and forward+backward, fastalex vs torch, at AlexNet's shapes.

CUDA: batch 128, 96x55x55 and 256x27x27, fp32 and bf16 (NCHW and channels_last), triton and cuda
backends. CPU: batch 16, cpu backend. Each result's extra_info holds the event-timed median for
both sides, the speed-up and the GB/s as a fraction of the copy bandwidth measured in this run.
Targets (H100/H200): triton forward >= 80% of copy bandwidth, forward+backward >= 70%, cuda within
1.2x of triton; on the 2-core CPU, cpu forward+backward >= 8x torch at batch 16, 96x55x55.
"""
from __future__ import annotations

import pytest
import torch

import fastalex
from fastalex import bench

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = bench.lrn_cases(DEVICE)
BACKENDS = [b for b in (("triton", "cuda") if DEVICE.type == "cuda" else ("cpu",)) if b in fastalex.backends()]


@pytest.mark.parametrize("op", ["lrn_fwd", "lrn_fwd+bwd"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_lrn(benchmark, case, backend, op, device, copy_gbps, torch_ms, record):
    rows = bench.measure_lrn(case, backend, device, copy_gbps, torch_ms)
    row = next(r for r in rows if r.op == op)
    record(row)
    benchmark.extra_info.update(row.as_dict())
    x, grad = case.make(device)
    fwd, fwdbwd = bench.lrn_fns(case, backend, x, grad)
    fn = fwd if op == "lrn_fwd" else fwdbwd

    def run():
        fn()
        bench.sync(device)

    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)
