"""`fastalex train`'s options: TrainConfig (defaults by device, checks) and what --resume may change."""
from __future__ import annotations

import dataclasses
import os

import torch

from fastalex._checks import check_finite, check_int
from fastalex.models.alexnet import INITS, VARIANTS, min_input_size

WHO = "fastalex train"
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
    epochs: int | None = None        # GPU 30, CPU 3
    batch_size: int | None = None    # per process; GPU 128 (the paper's), CPU 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.1           # lr *= lr_factor when the validation loss stops improving
    lr_patience: int = 2             # ... for this many epochs
    variant: str = "paper"
    groups: int = 1
    init: str = "kaiming"            # He et al.; "paper": N(0, 0.01) (learns late), "default": torch's
    dropout: float = 0.5
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
    max_steps: int | None = None     # stop (and checkpoint) after this many steps in all
    log_every: int = 10              # progress-bar refresh (a device sync) every this many steps
    progress: bool = True
    plot: bool = True

    def resolved(self, device: torch.device) -> "TrainConfig":
        gpu = device.type == "cuda"
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        fill = dict(epochs=30 if gpu else 3, batch_size=128 if gpu else 32, image_size=256 if gpu else 72,
                    crop_size=224 if gpu else 64, train_images=12800 if gpu else 1152,
                    val_images=1280 if gpu else 288, amp="bf16" if gpu else "none", channels_last=gpu,
                    workers=max(1, min(8, cores // world - 1)) if gpu else 1)
        return dataclasses.replace(self, device=str(device),
                                   **{k: v for k, v in fill.items() if getattr(self, k) is None})

    def check(self) -> None:
        """Reject bad values before any data is touched (ValueError naming the option)."""
        def flag(name):
            return "--" + name.replace("_", "-")

        for name in ("epochs", "batch_size", "image_size", "crop_size", "train_images", "val_images", "log_every",
                     "workers", "max_steps"):
            value = getattr(self, name)
            if value is not None or name != "max_steps":  # max_steps None: no limit
                check_int(WHO, flag(name), value, 0 if name == "workers" else 1)
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
    """The options `config` sets to something other than TrainConfig's defaults."""
    default = TrainConfig()
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(default, f.name)}


def resumed_config(config: TrainConfig, saved: dict, device: torch.device) -> TrainConfig:
    """The saved run's options, with those of `config` that RESUME_MAY_CHANGE laid over them.

    Another option given with a value other than the saved one raises CheckpointError naming both.
    --max-steps counts for this invocation only; on another kind of device amp and channels_last
    take that device's defaults unless given.
    """
    from fastalex.train.checkpoint import CheckpointError

    previous = TrainConfig(**saved)
    given = given_options(config)
    clash = sorted(k for k in given - set(RESUME_MAY_CHANGE) if getattr(config, k) != getattr(previous, k))
    if clash:
        raise CheckpointError(
            "--resume continues the saved run with its own options; these differ: "
            + ", ".join(f"--{k.replace('_', '-')} {getattr(config, k)!r} (saved: {getattr(previous, k)!r})"
                        for k in clash))
    keep = {k: getattr(config, k) for k in RESUME_MAY_CHANGE if k in given}
    moved = {"amp": None, "channels_last": None} if torch.device(previous.device).type != device.type else {}
    return dataclasses.replace(previous, **{"max_steps": None, **moved, **keep, "device": str(device)})
