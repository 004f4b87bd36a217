"""`fastalex train`'s options: TrainConfig (defaults by device, checks) and what --resume may change."""
from __future__ import annotations

import dataclasses
import os

import torch

from fastalex._checks import check_finite, check_int
from fastalex.models.alexnet import INITS, VARIANTS, min_input_size

WHO = "fastalex train"
# The defaults on a GPU: the paper's recipe (its batch, lr, dropout, 256 -> 224 images; no warm-up).
PAPER = dict(epochs=30, batch_size=128, lr=0.01, dropout=0.5, warmup_steps=0, image_size=256, crop_size=224,
             train_images=12800, val_images=1280)
# On the CPU, `fastalex train` with no arguments is a demo that must learn in about 2 minutes on 2 cores
# (benchmarks/RESULTS.md, 2026-12-02): the smallest images the paper variant takes, 6 epochs of 36 steps,
# and for so short a run half the lr after a one-epoch warm-up, without dropout (it only slows a model
# that is far from fitting its data).
CPU_DEMO = dict(epochs=6, batch_size=32, lr=0.005, dropout=0.0, warmup_steps=36, image_size=72, crop_size=64,
                train_images=1152, val_images=288)
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What --resume lets a user change; everything else comes from the checkpoint.
# (data: the class lists are checked; amp and channels_last: so that a run moves between devices.)
RESUME_MAY_CHANGE = ("epochs", "max_steps", "workers", "preload", "out", "device", "data", "amp", "channels_last",
                     "progress", "plot", "log_every")


@dataclasses.dataclass
class TrainConfig:
    """Every option of `fastalex train`. None means "the default for the device" (see resolved())."""

    data: str | None = None          # a folder with train/ and val/ class folders; None: SyntheticShapes
    out: str = "runs/alexnet"        # checkpoint.pt, best.pt, metrics.csv/json, curves.png
    epochs: int | None = None        # GPU 30, CPU 6
    batch_size: int | None = None    # per process; GPU 128 (the paper's), CPU 32
    lr: float | None = None          # GPU 0.01 (the paper's), CPU 0.005 (CPU_DEMO below)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.1           # lr *= lr_factor when the validation loss stops improving
    lr_patience: int = 2             # ... for this many epochs
    warmup_steps: int | None = None  # lr rises linearly to --lr over the first steps; GPU 0 (the paper's), CPU 36
    variant: str = "paper"
    groups: int = 1
    init: str = "kaiming"            # He et al.; "paper": N(0, 0.01) (learns late), "default": torch's
    dropout: float | None = None     # GPU 0.5 (the paper's), CPU 0
    image_size: int | None = None    # stored images: GPU 256, CPU 72
    crop_size: int | None = None     # random crops: GPU 224, CPU 64
    flip: float = 0.5                # probability of a horizontal flip
    pca_std: float = 0.1             # alphastd of the PCA colour noise (0: none)
    num_classes: int = 12            # SyntheticShapes only; a folder has as many as it has
    train_images: int | None = None  # SyntheticShapes sizes: GPU 12800 / 1280, CPU 1152 / 288
    val_images: int | None = None
    amp: str | None = None           # "none", "bf16", "fp16"; GPU bf16, CPU none
    channels_last: bool | None = None  # GPU yes
    workers: int | None = None       # loader processes per rank; GPU min(8, cores), CPU 1
    preload: bool = True             # SyntheticShapes: draw it once, keep it on the device
    device: str | None = None        # cuda when available
    seed: int = 0
    max_steps: int | None = None     # stop (and checkpoint) after this many steps of this invocation
    log_every: int = 10              # progress-bar refresh (a device sync) every this many steps
    progress: bool = True
    plot: bool = True

    def resolved(self, device: torch.device) -> "TrainConfig":
        gpu = device.type == "cuda"
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        fill = dict(PAPER if gpu else CPU_DEMO, amp="bf16" if gpu else "none", channels_last=gpu,
                    workers=max(1, min(8, cores // world - 1)) if gpu else 1)
        return dataclasses.replace(self, device=str(device),
                                   **{k: v for k, v in fill.items() if getattr(self, k) is None})

    def check(self) -> None:
        """Reject bad values before any data is touched (ValueError naming the option)."""
        def flag(name):
            return "--" + name.replace("_", "-")

        for name in ("epochs", "batch_size", "image_size", "crop_size", "train_images", "val_images", "log_every",
                     "workers", "max_steps", "warmup_steps"):
            value = getattr(self, name)
            if value is not None or name != "max_steps":  # max_steps None: no limit
                check_int(WHO, flag(name), value, 0 if name in ("workers", "warmup_steps") else 1)
        for name in ("lr", "momentum", "weight_decay", "pca_std"):
            check_finite(WHO, flag(name), getattr(self, name), minimum=0)
        if self.lr == 0:
            raise ValueError(f"{WHO}: --lr must be > 0, got 0")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"{WHO}: --lr-factor must be in (0, 1), got {self.lr_factor!r}")
        if not 0 <= self.flip <= 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"{WHO}: --flip must be in [0, 1] and --dropout in [0, 1), "
                             f"got {self.flip!r} and {self.dropout!r}")
        for name, value, choices in (("variant", self.variant, VARIANTS), ("init", self.init, INITS),
                                     ("amp", self.amp, tuple(AMP_DTYPES))):
            if value not in choices:
                raise ValueError(f"{WHO}: --{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.crop_size > self.image_size:
            raise ValueError(f"{WHO}: --crop-size {self.crop_size} is larger than --image-size "
                             f"{self.image_size}")
        smallest = min_input_size(self.variant)
        if self.crop_size < smallest:
            raise ValueError(f"{WHO}: --crop-size must be at least {smallest} for the {self.variant!r} "
                             f"variant, got {self.crop_size}")
        if self.amp == "fp16" and not str(self.device).startswith("cuda"):
            raise ValueError(f"{WHO}: --amp fp16 needs a GPU (use bf16 or none on the CPU)")


def given_options(config: TrainConfig) -> set[str]:
    """The options `config` sets to something other than TrainConfig's defaults: what the Python API
    counts as given (the command line passes the options typed on it instead, so that an explicit
    `--lr 0.01` counts even though 0.01 is the default)."""
    default = TrainConfig()
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(default, f.name)}


def resumed_config(config: TrainConfig, saved: dict, device: torch.device,
                   given: set[str] | frozenset[str] | None = None) -> TrainConfig:
    """The saved run's options, with those of `config` that RESUME_MAY_CHANGE laid over them.

    given: the options the user gave (the command line: those typed on it); None: those that differ
    from TrainConfig's defaults (given_options). Another option given with a value other than the
    saved one raises CheckpointError naming both. --max-steps counts for this invocation only; on
    another kind of device amp and channels_last take that device's defaults unless given.
    """
    from fastalex.train.checkpoint import CheckpointError

    previous = TrainConfig(**saved)
    given = given_options(config) if given is None else set(given)
    unknown = given - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{WHO}: unknown option(s) {', '.join(sorted(unknown))}")
    clash = sorted(k for k in given - set(RESUME_MAY_CHANGE) if getattr(config, k) != getattr(previous, k))
    if clash:
        raise CheckpointError(
            "--resume continues the saved run with its own options; these differ: "
            + ", ".join(f"--{k.replace('_', '-')} {getattr(config, k)!r} (saved: {getattr(previous, k)!r})"
                        for k in clash))
    keep = {k: getattr(config, k) for k in RESUME_MAY_CHANGE if k in given}
    moved = {"amp": None, "channels_last": None} if torch.device(previous.device).type != device.type else {}
    return dataclasses.replace(previous, **{"max_steps": None, **moved, **keep, "device": str(device)})
