"""The whole model: fastalex.AlexNet (paper variant) against reference_alexnet with the same weights,
a training step (forward, cross-entropy, backward, SGD momentum 0.9 + weight decay) and inference.

CUDA: batch 128 at 224x224, bf16 autocast and fp32, channels_last; references: eager and, on a GPU,
torch.compile; plus the first step's latency (fastalex's tuner cache cleared, Triton's disk cache
warm) and the peak memory of a training step. CPU: batch 8, eager reference only.
H200 anchors (bf16 autocast, channels_last): reference eager 13.9 ms per train step, compiled 6.54 ms
(first step 44.6 s); inference 4.98 / 1.97 ms. Targets: train step >= 1.5x the compiled reference
and >= 3x eager; inference >= 1.5x compiled; first step <= 10 s; peak memory <= the eager reference's.
"""
from __future__ import annotations

import time

import pytest
import torch

from conftest import DEVICE
from fastalex.bench import model, timing
from fastalex.kernels import _common

CASES = model.model_cases(DEVICE)
REFS = ("torch", "torch.compile") if DEVICE.type == "cuda" else ("torch",)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_alexnet(benchmark, case, record):
    rows = model.measure_model(case, DEVICE, REFS)
    record(rows)
    benchmark.extra_info.update(rows=[r.as_dict() for r in rows])
    _, train_step = model.model_fns(case, "fastalex", DEVICE)

    def once():
        train_step()
        timing.sync(DEVICE)

    benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="first-step latency and peak memory are GPU figures")
@pytest.mark.parametrize("case", CASES[:1], ids=lambda c: c.name.replace(" ", "-"))
def test_alexnet_first_step_and_memory(benchmark, case):
    _common._TUNED.clear()  # fastalex tunes again; Triton's compiled kernels come from its disk cache
    _, ours = model.model_fns(case, "fastalex", DEVICE)
    timing.sync(DEVICE)
    t0 = time.perf_counter()
    ours()
    timing.sync(DEVICE)
    first_s = time.perf_counter() - t0
    del ours  # its weights, gradients and momentum would sit under both peaks below
    peaks = {}
    for which in ("fastalex", "torch"):
        _, step = model.model_fns(case, which, DEVICE)
        step()
        timing.sync(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        step()
        timing.sync(DEVICE)
        peaks[which] = torch.cuda.max_memory_allocated(DEVICE) / 2**20
        del step
    benchmark.extra_info.update(first_step_s=first_s, peak_mib=peaks)
    print(f"\nfirst train step (fastalex, tuner cold, Triton cache warm): {first_s:.2f} s; peak memory of a "
          f"train step: fastalex {peaks['fastalex']:.0f} MiB, reference eager {peaks['torch']:.0f} MiB")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
