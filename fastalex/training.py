"""`fastalex train`: AlexNet with the paper's recipe, the data pipeline that keeps a GPU fed, and
checkpoints that resume exactly.

The pipeline: worker processes decode (or, for the default dataset, draw) uint8 images at 256x256;
uint8 batches are pinned and copied to the device, where the paper's augmentation runs on the
whole batch (random 224 crop + flip, PCA colour noise, normalisation). The loop times how long it
waits for the loader.

Reproducibility: the crop, flip and colour noise of step s in epoch e come from a generator seeded
by (seed, e, s), drawn for the GLOBAL batch and sliced by rank, and the shuffled order is a
function of (seed, e). So a resumed run sees the same images and augmentation, and N ranks at
batch B see exactly what one process sees at batch N*B (DDP then averages the same gradient).
Dropout draws from torch's generator, whose state the checkpoint keeps.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastalex import checkpoint as ckpt
from fastalex.models import AlexNet
from fastalex.models.alexnet import INITS, VARIANTS, min_input_size

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
        def positive(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"fastalex train: --{name.replace('_', '-')} must be a positive integer, got {value!r}")

        for name in ("epochs", "batch_size", "image_size", "crop_size", "train_images", "val_images", "log_every"):
            positive(name)
        if self.workers < 0:
            raise ValueError(f"fastalex train: --workers must be >= 0, got {self.workers}")
        if self.max_steps is not None:
            positive("max_steps")
        for name in ("lr", "momentum", "weight_decay", "pca_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
                raise ValueError(f"fastalex train: --{name.replace('_', '-')} must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"fastalex train: --lr-factor must be in (0, 1), got {self.lr_factor!r}")
        if not 0 <= self.flip <= 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"fastalex train: --flip must be in [0, 1] and --dropout in [0, 1), "
                             f"got {self.flip!r} and {self.dropout!r}")
        for name, value, choices in (("variant", self.variant, VARIANTS), ("init", self.init, INITS),
                                     ("amp", self.amp, tuple(AMP_DTYPES))):
            if value not in choices:
                raise ValueError(f"fastalex train: --{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.crop_size > self.image_size:
            raise ValueError(f"fastalex train: --crop-size {self.crop_size} is larger than --image-size "
                             f"{self.image_size}")
        smallest = min_input_size(self.variant)
        if self.crop_size < smallest:
            raise ValueError(f"fastalex train: --crop-size must be at least {smallest} for the {self.variant!r} "
                             f"variant, got {self.crop_size}")
        if self.amp == "fp16" and not str(self.device).startswith("cuda"):
            raise ValueError("fastalex train: --amp fp16 needs a GPU (use bf16 or none on the CPU)")


# --- Several processes: torchrun sets WORLD_SIZE, RANK, LOCAL_RANK.

@dataclasses.dataclass
class Distributed:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group (and destroys it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(values)
        return values

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def setup_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on the CPU) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("fastalex train: --device cuda, but torch sees no CUDA device")
    if world <= 1:
        return Distributed(), dev
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    owns = not torch.distributed.is_initialized()
    if owns:
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(world, rank, local_rank, owns), dev


# --- Data.

class ShardedSampler(torch.utils.data.Sampler):
    """This rank's share of a permutation fixed by (seed, epoch), optionally resumed mid-epoch.

    Only whole global batches are kept (world * batch_size images), so every rank takes the same
    number of steps; rank r takes positions r, r + world, ... of the permutation, which makes N
    ranks at batch B read exactly the images one process reads at batch N * B.
    """

    def __init__(self, size: int, batch_size: int, dist: Distributed, seed: int, shuffle: bool = True,
                 drop_last: bool = True):
        self.size, self.batch_size, self.dist, self.seed = size, batch_size, dist, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, "order"))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[:self.size - self.size % (self.batch_size * self.dist.world)]
        return order[self.dist.rank::self.dist.world][self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def _mix(*parts) -> int:
    """A 63-bit seed from any parts (stable across processes and runs, unlike hash())."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def build_datasets(config: TrainConfig):
    """(train, val, classes, description) from --data or the synthetic default."""
    from fastalex import datasets

    if config.data is not None:
        train, val = datasets.image_folders(config.data, image_size=config.image_size)
        return train, val, list(train.classes), f"image folders under {config.data}"
    train = datasets.SyntheticShapes(config.train_images, image_size=config.image_size, seed=config.seed,
                                     split="train", num_classes=config.num_classes)
    val = datasets.SyntheticShapes(config.val_images, image_size=config.image_size, seed=config.seed,
                                   split="val", num_classes=config.num_classes)
    return train, val, list(train.classes), f"the synthetic shapes dataset (seed {config.seed})"


def _worker_signals(worker_id: int) -> None:
    # Loader processes are forked inside StopRequest: Ctrl-C is the main process's to handle (it
    # finishes the step and shuts them down), and SIGTERM must kill them, as the DataLoader expects.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def make_loader(dataset, sampler, batch_size: int, workers: int, device: torch.device):
    from fastalex.datasets import collate_uint8

    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_uint8,
        pin_memory=device.type == "cuda", drop_last=False, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # its own generator: iter() on a loader draws a seed, which must not move the global RNG
        # that dropout uses (a resumed run creates its iterator at another point of that stream)
        generator=torch.Generator().manual_seed(0), worker_init_fn=_worker_signals)


@torch.no_grad()
def preload(dataset, device: torch.device, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of `dataset` in one uint8 tensor on `device` (and the labels), drawn by `workers`
    processes once. SyntheticShapes at 256 px is 192 KiB an image: 2.5 GB for the default 12,800 on
    a GPU, after which a batch is one index_select there, with no loader in the way."""
    from fastalex.datasets import collate_uint8

    loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=workers, collate_fn=collate_uint8,
                                         generator=torch.Generator().manual_seed(0))  # see make_loader
    images = labels = None
    start = 0
    for batch, batch_labels, _ in loader:
        if images is None:
            images = torch.empty((len(dataset), *batch.shape[1:]), dtype=torch.uint8, device=device)
            labels = torch.empty(len(dataset), dtype=torch.int64, device=device)
        images[start:start + len(batch)].copy_(batch)
        labels[start:start + len(batch)].copy_(batch_labels)
        start += len(batch)
    return images, labels


class PreloadedLoader:
    """A DataLoader's interface over preloaded tensors: (images, labels, 0) for each batch of the
    sampler's indices, gathered on the device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sampler: "ShardedSampler", batch_size: int):
        self.images, self.labels, self.sampler, self.batch_size = images, labels, sampler, batch_size

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        order = torch.tensor(list(self.sampler), dtype=torch.int64).to(self.images.device, non_blocking=True)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images.index_select(0, index), self.labels.index_select(0, index), 0


class Augmentation:
    """The paper's training augmentation on device batches: random crop + flip, PCA colour noise,
    normalisation, drawn for the global batch from a generator seeded by (seed, epoch, step)."""

    def __init__(self, config: TrainConfig, dist: Distributed, device: torch.device):
        from fastalex import transforms

        self.crop = transforms.RandomCropFlip(config.crop_size, p_flip=config.flip)
        self.lighting = transforms.PCALighting(config.pca_std) if config.pca_std > 0 else None
        self.normalize = transforms.Normalize()
        self.seed, self.dist, self.device = config.seed, dist, device
        self.global_batch = config.batch_size * dist.world
        self.channels_last = config.channels_last

    def __call__(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        n, _, h, w = images.shape
        g = torch.Generator(device=self.device).manual_seed(_mix(self.seed, epoch, step, "augment"))
        # Draw for the whole global batch and keep this rank's interleaved share (see ShardedSampler).
        mine = slice(self.dist.rank, None, self.dist.world)
        params = self.crop.sample(self.global_batch, h, w, generator=g, device=self.device)
        params = type(params)(*(p[mine][:n] for p in params))
        x = self.crop.apply(images, params)
        if self.lighting is not None:
            alpha = self.lighting.sample(self.global_batch, generator=g, device=self.device)[mine][:n]
            x = self.lighting.apply(x, alpha)
        x = self.normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


# --- Metrics and logs.

class EpochMeter:
    """Sums kept on the device (no sync per step), reduced across ranks when read."""

    FIELDS = ("loss_sum", "correct", "count", "skipped")

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.FIELDS), dtype=torch.float64, device=device)
        self.wait_s = self.busy_s = 0.0

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int, skipped: int) -> None:
        self.sums[0] += loss_sum.detach().double()
        self.sums[1] += correct.double()
        self.sums[2] += count
        self.sums[3] += skipped

    def state(self) -> dict:
        return {"sums": self.sums.cpu(), "wait_s": self.wait_s, "busy_s": self.busy_s}

    def load(self, state: dict) -> None:
        self.sums.copy_(state["sums"])
        self.wait_s, self.busy_s = state["wait_s"], state["busy_s"]

    def local(self) -> dict:
        loss_sum, correct, count, skipped = self.sums.tolist()
        return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1), "count": count, "skipped": skipped}

    def reduced(self, dist: Distributed) -> dict:
        sums = dist.all_sum(self.sums.clone())
        loss_sum, correct, count, skipped = sums.tolist()
        return {"loss": loss_sum / max(count, 1), "top1_err": 1 - correct / max(count, 1), "images": int(count),
                "skipped": int(skipped)}


def write_logs(out: Path, history: list[dict], plot: bool) -> None:
    """metrics.json (everything), metrics.csv (one row per epoch) and curves.png (when matplotlib is there)."""
    (out / "metrics.json").write_text(json.dumps(history, indent=1))
    keys = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(keys)] + [",".join(_csv(row.get(k)) for k in keys) for row in history]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    if plot and history:
        try:
            plot_curves(history, out / "curves.png")
        except ImportError:
            if len(history) == 1:
                print("fastalex train: no curves.png (needs matplotlib: pip install matplotlib)", file=sys.stderr)


def _csv(value) -> str:
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    left.plot(epochs, [row["val_loss"] for row in history], "o-", label="val")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.plot(epochs, [100 * row["train_top1_err"] for row in history], "o-", label="train top-1")
    right.plot(epochs, [100 * row["val_top1_err"] for row in history], "o-", label="val top-1")
    right.plot(epochs, [100 * row["val_top5_err"] for row in history], "o-", label="val top-5")
    right.set(xlabel="epoch", ylabel="error (%)", title="error")
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- Ctrl-C: finish the step, checkpoint, stop.

class StopRequest:
    """SIGINT/SIGTERM set a flag the loop reads between steps (a half-applied optimizer step would
    make a useless checkpoint); a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfastalex train: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --- The loop.

def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _gather(obj, dist: Distributed) -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world
    torch.distributed.all_gather_object(out, obj)
    return out


def model_args(config: TrainConfig, num_classes: int) -> dict:
    return {"num_classes": num_classes, "variant": config.variant, "groups": config.groups,
            "dropout": config.dropout}


def train(config: TrainConfig, resume: str | os.PathLike | None = None) -> dict:
    """Train AlexNet as `config` says; returns {"history": per-epoch rows, "steps", "stopped",
    "interrupted", "out", "config"}.

    resume: a checkpoint written by an earlier run; the run continues from its next step with that
    run's options. Only those in RESUME_MAY_CHANGE may differ; another option set to a value other
    than the saved one raises CheckpointError.
    """
    from fastalex.evaluation import evaluate_loader

    dist, device = setup_distributed(config.device)
    state = None
    if resume is not None:
        state = ckpt.load(resume)
        if "optimizer" not in state:
            raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} holds weights only (best.pt); resume from "
                                       f"checkpoint.pt")
        saved = TrainConfig(**state["config"])
        given = {f.name for f in dataclasses.fields(TrainConfig)
                 if getattr(config, f.name) != getattr(TrainConfig(), f.name)}
        if "variant" in given and config.variant != saved.variant:
            raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} is from the {saved.variant!r} variant of "
                                       f"AlexNet, not {config.variant!r}")
        clash = sorted(k for k in given - set(RESUME_MAY_CHANGE) if getattr(config, k) != getattr(saved, k))
        if clash:
            raise ckpt.CheckpointError(
                "--resume continues the saved run with its own options; these differ: "
                + ", ".join(f"--{k.replace('_', '-')} {getattr(config, k)!r} (saved: {getattr(saved, k)!r})"
                            for k in clash))
        keep = {k: getattr(config, k) for k in RESUME_MAY_CHANGE if k in given}
        # --max-steps counts for this invocation only; on another kind of device amp and channels_last
        # take that device's defaults unless given
        moved = {"amp": None, "channels_last": None} if torch.device(saved.device).type != device.type else {}
        config = dataclasses.replace(saved, **{"max_steps": None, **moved, **keep, "device": str(device)})
    config = config.resolved(device)
    config.check()
    out = Path(config.out)

    train_set, val_set, classes, described = build_datasets(config)
    if state is not None and state["classes"] != classes:
        raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} was trained on {len(state['classes'])} classes "
                                   f"{state['classes']}; the data has {len(classes)}: {classes}")
    global_batch = config.batch_size * dist.world
    if global_batch > len(train_set):
        raise ValueError(f"fastalex train: the batch ({config.batch_size} x {dist.world} process"
                         f"{'es' if dist.world > 1 else ''}) is larger than the training set ({len(train_set)} images)")

    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    model = AlexNet(init=config.init, **model_args(config, len(classes))).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    amp_dtype = AMP_DTYPES[config.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    torch.manual_seed(_mix(config.seed, dist.rank, "dropout"))  # each rank its own dropout masks

    history, epoch, start_batch, step, best = [], 0, 0, 0, math.inf
    meter = EpochMeter(device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, epoch, start_batch, step = state["history"], state["epoch"], state["batch"], state["step"]
        best = state.get("best_val_top1_err", math.inf)
        if state["world"] == dist.world:
            _set_rng_state(state["rng"][dist.rank], device)
            meter.load(state["meter"][dist.rank])
        elif state["batch"]:  # the epoch's remaining images are sharded by the number of processes
            raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} was saved mid-epoch by {state['world']} "
                                       f"process(es); resume it with as many (this run has {dist.world})")
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)

    train_sampler = ShardedSampler(len(train_set), config.batch_size, dist, config.seed)
    val_sampler = ShardedSampler(len(val_set), config.batch_size, dist, config.seed, shuffle=False, drop_last=False)
    if config.preload and config.data is None:
        described += f", drawn once and held on {device}"
        train_loader = PreloadedLoader(*preload(train_set, device, config.workers), train_sampler, config.batch_size)
        val_loader = PreloadedLoader(*preload(val_set, device, config.workers), val_sampler, config.batch_size)
    else:
        described += ", decoded by the loader workers" if config.data else ", drawn by the loader workers"
        train_loader = make_loader(train_set, train_sampler, config.batch_size, config.workers, device)
        val_loader = make_loader(val_set, val_sampler, config.batch_size, config.workers, device)
    augment = Augmentation(config, dist, device)
    steps_per_epoch = len(train_set) // global_batch

    def save(path: Path, *, full: bool = True) -> None:
        # Collective: every rank calls save(); each rank's RNG and partial sums go in the file.
        rng, meters = _gather(_rng_state(device), dist), _gather(meter.state(), dist)
        if dist.main:
            payload = {
                "format": ckpt.FORMAT, "model": model.state_dict(), "model_args": model_args(config, len(classes)),
                "classes": classes, "config": dataclasses.asdict(config), "epoch": epoch, "batch": batch_index,
                "step": step, "history": history, "best_val_top1_err": best,
                "data": {"image_size": config.image_size, "crop_size": config.crop_size,
                         "synthetic": config.data is None},
                "world": dist.world,
            }
            if full:
                payload.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                               scaler=scaler.state_dict(), rng=rng, meter=meters)
            ckpt.save_atomic(payload, path)
        dist.barrier()

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"fastalex train: AlexNet ({config.variant}, {len(classes)} classes) on {described}: "
              f"{len(train_set)} train / {len(val_set)} val images at {config.image_size}px, crops "
              f"{config.crop_size}; batch {config.batch_size} x {dist.world} on {device}, amp {config.amp}, "
              f"{config.workers} loader workers per process; writing to {out}", file=sys.stderr)

    stopped, batch_index = False, start_batch
    with StopRequest() as stop:
        while epoch < config.epochs and not stopped:
            train_sampler.set_epoch(epoch, start_batch)
            net.train()
            bar = _progress(config, dist, total=steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}")
            epoch_start, seen = time.perf_counter(), 0
            batch_index = start_batch
            loader = iter(train_loader)
            while True:
                if config.max_steps is not None and step >= config.max_steps:
                    stopped = True
                    break
                t0 = time.perf_counter()
                try:
                    images, labels, skipped = next(loader)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                n = labels.numel()
                if n == 0 and not dist.enabled:  # every image of the batch was unreadable
                    meter.add(torch.zeros((), device=device), torch.zeros((), device=device), 0, skipped)
                else:
                    # DDP needs every rank in every step: an all-unreadable batch goes through empty
                    x = augment(images, epoch, batch_index) if n else \
                        torch.zeros(0, 3, config.crop_size, config.crop_size, device=device)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = net(x)
                    loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss_sum / max(n, 1)).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    meter.add(loss_sum, (logits.argmax(1) == labels).sum(), n, skipped)
                batch_index += 1
                step += 1
                seen += n
                meter.wait_s += t1 - t0
                step_end = time.perf_counter()
                meter.busy_s += step_end - t1
                last = config.max_steps is not None and step >= config.max_steps
                # Every rank reaches the same sync points (the same step numbers), so only there may a
                # collective run: ranks agree to stop when any of them was signalled.
                sync = batch_index % config.log_every == 0 or last
                if sync and dist.enabled:
                    flag = dist.all_sum(torch.tensor([float(stop.requested)], device=device))
                    stop.requested = bool(flag.item())
                halt = last or (stop.requested and (sync or not dist.enabled))
                if sync or halt:
                    if bar is not None:
                        now = meter.local()
                        elapsed = time.perf_counter() - epoch_start
                        bar.set_postfix(loss=f"{now['loss']:.3f}", acc=f"{now['acc']:.3f}",
                                        img_s=f"{seen * dist.world / max(elapsed, 1e-9):.0f}",
                                        wait=f"{meter.wait_s / max(meter.wait_s + meter.busy_s, 1e-9):.0%}")
                if bar is not None:
                    bar.update(1)
                if halt:
                    stopped = True
                    break
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the queued tail of the epoch's work belongs in its time
                if batch_index > start_batch:
                    meter.busy_s += time.perf_counter() - step_end
            if bar is not None:
                bar.close()
            start_batch = 0
            if stopped and batch_index < steps_per_epoch:
                save(out / "checkpoint.pt")  # mid-epoch: resume continues at batch_index
                break
            train_metrics = meter.reduced(dist)
            val = evaluate_loader(model, val_loader, device, crop_size=config.crop_size, amp=config.amp,
                                  channels_last=config.channels_last, dist=dist)
            lr = optimizer.param_groups[0]["lr"]  # the rate this epoch ran at
            scheduler.step(val["loss"])
            # wall time and waiting summed over ranks (each rank waits for its own loader)
            wait, wall = dist.all_sum(torch.tensor([meter.wait_s, meter.wait_s + meter.busy_s], dtype=torch.float64,
                                                   device=device)).tolist()
            epoch_s = wall / dist.world
            row = {"epoch": epoch + 1, "step": step, "lr": lr,
                   "train_loss": train_metrics["loss"], "train_top1_err": train_metrics["top1_err"],
                   "val_loss": val["loss"], "val_top1_err": val["top1_err"], "val_top5_err": val["top5_err"],
                   "img_per_s": train_metrics["images"] / max(epoch_s, 1e-9),
                   "data_wait_frac": wait / max(wall, 1e-9),
                   "skipped_images": train_metrics["skipped"] + val["skipped"], "epoch_s": epoch_s}
            history.append(row)
            epoch += 1
            batch_index = 0
            meter = EpochMeter(device)
            if val["top1_err"] < best:
                best = val["top1_err"]
                save(out / "best.pt", full=False)
            save(out / "checkpoint.pt")
            if dist.main:
                write_logs(out, history, config.plot)
                print(_epoch_line(row), file=sys.stderr)
    if dist.main and state is not None and step == state["step"] and epoch >= config.epochs:
        print(f"fastalex train: nothing to do, all {config.epochs} epochs are done (pass --epochs to train longer)",
              file=sys.stderr)
    elif stopped and dist.main and epoch < config.epochs:
        print(f"fastalex train: stopped at step {step}; continue with --resume {out / 'checkpoint.pt'}",
              file=sys.stderr)
    if dist.owns_group:
        torch.distributed.destroy_process_group()
    return {"history": history, "steps": step, "stopped": stopped, "interrupted": stop.requested, "out": str(out),
            "config": config}


def _progress(config: TrainConfig, dist: Distributed, total: int, initial: int, desc: str):
    if not (config.progress and dist.main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)


def _epoch_line(row: dict) -> str:
    skipped = f", {row['skipped_images']} unreadable images skipped" if row["skipped_images"] else ""
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} top-1 err {100 * row['train_top1_err']:.1f}% | "
            f"val loss {row['val_loss']:.4f} top-1 err {100 * row['val_top1_err']:.1f}% top-5 err "
            f"{100 * row['val_top5_err']:.1f}% | {row['img_per_s']:.0f} img/s, waited for data "
            f"{100 * row['data_wait_frac']:.1f}% of the time, lr {row['lr']:.3g}{skipped}")
