"""The input pipeline: the paper's augmentation on the device against the training step it feeds, and
a whole `fastalex train` epoch with the share of time spent waiting for data."""
from __future__ import annotations

import dataclasses
import tempfile

import torch

from fastalex import transforms
from fastalex.bench.model import ModelCase, model_fns
from fastalex.bench.report import Row
from fastalex.bench.timing import Timing, load_average, time_ms
from fastalex.train import TrainConfig, train


@dataclasses.dataclass
class AugmentCase:
    batch: int
    size: int  # stored images (uint8)
    crop: int

    @property
    def name(self) -> str:
        return f"{self.batch}x3x{self.size}->{self.crop} uint8"


def augment_cases(device: torch.device, quick: bool = False) -> list[AugmentCase]:
    """Batch 128, 256 -> 224 (the paper's); quick: batch 4, 72 -> 64."""
    return [AugmentCase(4, 72, 64)] if quick else [AugmentCase(128 if device.type == "cuda" else 32, 256, 224)]


def augment_fn(case: AugmentCase, device: torch.device):
    """One training batch's augmentation as `fastalex train` runs it: random crop + flip, PCA colour
    noise and normalisation of a uint8 batch already on the device (channels_last out on a GPU)."""
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (case.batch, 3, case.size, case.size), generator=g, device=device,
                           dtype=torch.uint8)
    crop, lighting, normalize = transforms.RandomCropFlip(case.crop), transforms.PCALighting(), transforms.Normalize()
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def run():
        x = lighting(crop(images, generator=g), generator=g)
        return normalize(x).contiguous(memory_format=layout)

    return run


def measure_augment(case: AugmentCase, device: torch.device) -> Row:
    """img/s of the augmentation against the model's training step at the same batch and crop
    (fastalex.AlexNet, bf16 autocast on a GPU): the speed-up column is how many times faster the
    pipeline is than the training it feeds (target >= 10x)."""
    ms = time_ms(augment_fn(case, device), device)
    step = ModelCase("paper", case.batch, case.crop, torch.bfloat16 if device.type == "cuda" else None)
    _, train_step = model_fns(step, "fastalex", device)
    step_ms = time_ms(train_step, device, warmup=3, samples=5, budget_s=2.0)
    return Row("augment", case.name, "fastalex", ms, step_ms, case.batch, 0.0, "train step", "img/s")


def measure_train_epoch(device: torch.device, quick: bool = False, preload: bool = True,
                        workers: int | None = None) -> tuple[Row, dict]:
    """One epoch of `fastalex train` on the default synthetic dataset with the device's defaults
    (GPU: 12800 images, batch 128, 256 -> 224, bf16; quick: 64 images at 72 -> 64), its images
    preloaded on the device (the default) or, preload=False, drawn by the loader workers every step
    as a folder's images are decoded.

    The row's ms is the wall time per step and its reference the same without the time spent waiting
    for the loader, so the speed-up column is the fraction of the time NOT spent waiting (target
    >= 0.95x on a GPU). The row is marked noisy when the load average exceeded the cores (one epoch is
    one sample: there is no spread to judge). The dict is the epoch's metrics row."""
    sizes = dict(train_images=64, val_images=16, image_size=72, crop_size=64, batch_size=8) if quick else {}
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, epochs=1, device=str(device), progress=False, plot=False, workers=workers,
                             preload=preload, **sizes)
        result = train(config)
    row, config = result["history"][0], result["config"]
    steps = config.train_images // config.batch_size
    step_ms = Timing(row["epoch_s"] / steps * 1e3, load=load_average())
    case = (f"{config.train_images}x{config.image_size}->{config.crop_size} {config.amp} "
            + ("preloaded" if preload else f"{config.workers} workers"))
    return Row("train_epoch", case, "fastalex", step_ms, step_ms * (1 - row["data_wait_frac"]),
               config.batch_size, 0.0, "no data wait", "img/s"), row
