"""The input pipeline of `fastalex train`: the paper's augmentation on the device, and one epoch of
training on the default synthetic dataset.

Targets (H100/H200): augmentation (random crop + flip, PCA colour noise, normalisation; batch 128,
uint8 256 -> 224) at least 10x the training step's img/s, so it never limits training; a training
epoch waiting for data under 5% of its time (train_epoch rows: speed-up column >= 0.95x), with the
synthetic images preloaded on the device (the default) and drawn by loader workers every step (the
stand-in for decoding an image folder). On the CPU
the rows use a batch of 32 and a small epoch (72 -> 64), to check that everything runs.
"""
from __future__ import annotations

import pytest

from conftest import DEVICE
from fastalex.bench import pipeline, timing


@pytest.mark.parametrize("case", pipeline.augment_cases(DEVICE), ids=lambda c: c.name.replace(" ", "-"))
def test_augment(benchmark, case, record):
    row = pipeline.measure_augment(case, DEVICE)
    record([row])
    benchmark.extra_info.update(rows=[row.as_dict()])
    run = pipeline.augment_fn(case, DEVICE)

    def once():
        run()
        timing.sync(DEVICE)

    benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "loader-workers"])
def test_train_epoch(benchmark, record, preload):
    quick = DEVICE.type != "cuda"
    rows = []

    def once():
        rows.append(pipeline.measure_train_epoch(DEVICE, quick=quick, preload=preload))

    benchmark.pedantic(once, rounds=1, iterations=1)
    row, epoch = rows[0]
    record([row])
    benchmark.extra_info.update(rows=[row.as_dict()], epoch=epoch)
