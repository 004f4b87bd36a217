"""`fastalex train`: AlexNet with the paper's recipe, split as torchvision's reference script is:
load_data, train_one_epoch, evaluate (fastalex.train.evaluate), and train() as main.

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
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastalex import data
from fastalex.models import AlexNet
from fastalex.train import checkpoint as ckpt
from fastalex.train.augment import Augmentation
from fastalex.train.config import AMP_DTYPES, TrainConfig, given_options, resumed_config
from fastalex.train.distributed import Distributed, gather, setup_distributed
from fastalex.train.evaluate import evaluate_loader
from fastalex.train.metrics import (EpochMeter, NonFiniteLoss, epoch_line, nonfinite_message, skipped_columns,
                                    write_logs)
from fastalex.train.signals import StopRequest


def load_data(config: TrainConfig):
    """(train, val, classes, description) from --data or the synthetic default."""
    if config.data is not None:
        train_set, val_set = data.image_folders(config.data, image_size=config.image_size)
        return train_set, val_set, list(train_set.classes), f"image folders under {config.data}"
    sets = [data.SyntheticShapes(n, image_size=config.image_size, seed=config.seed, split=split,
                                 num_classes=config.num_classes)
            for n, split in ((config.train_images, "train"), (config.val_images, "val"))]
    return sets[0], sets[1], list(sets[0].classes), f"the synthetic shapes dataset (seed {config.seed})"


def make_loaders(config: TrainConfig, train_set, val_set, dist: Distributed, device: torch.device):
    """(train loader, val loader, train sampler, how the images get there)."""
    train_sampler = data.ShardedSampler(len(train_set), config.batch_size, config.seed, world=dist.world,
                                        rank=dist.rank)
    val_sampler = data.ShardedSampler(len(val_set), config.batch_size, config.seed, world=dist.world,
                                      rank=dist.rank, shuffle=False, drop_last=False)
    if config.preload and config.data is None:
        loaders = [data.PreloadedLoader(*data.preload(ds, device, config.workers), sampler, config.batch_size)
                   for ds, sampler in ((train_set, train_sampler), (val_set, val_sampler))]
        how = f", drawn once and held on {device}"
    else:
        loaders = [data.make_loader(ds, sampler, config.batch_size, config.workers, device)
                   for ds, sampler in ((train_set, train_sampler), (val_set, val_sampler))]
        how = ", decoded by the loader workers" if config.data else ", drawn by the loader workers"
    return loaders[0], loaders[1], train_sampler, how


def model_args(config: TrainConfig, num_classes: int) -> dict:
    return {"num_classes": num_classes, "variant": config.variant, "groups": config.groups,
            "dropout": config.dropout}


@dataclasses.dataclass
class Run:
    """Everything a training run changes as it goes, and what a checkpoint keeps of it."""

    config: TrainConfig
    classes: list
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    meter: EpochMeter
    history: list = dataclasses.field(default_factory=list)
    epoch: int = 0
    batch: int = 0  # the next batch of the epoch
    step: int = 0  # steps taken in all
    best: float = math.inf  # best validation top-1 error so far


def build_run(config: TrainConfig, classes: list, dist: Distributed, device: torch.device, state: dict | None) -> Run:
    """The model, optimizer, scheduler and scaler, from scratch or from a checkpoint's `state`."""
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    model = AlexNet(init=config.init, **model_args(config, len(classes))).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[config.amp] == torch.float16)
    torch.manual_seed(data.mix_seed(config.seed, dist.rank, "dropout"))  # each rank its own dropout masks
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    run = Run(config, classes, model, net, optimizer, scheduler, scaler, EpochMeter(device))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        run.history, run.epoch, run.batch, run.step = state["history"], state["epoch"], state["batch"], state["step"]
        run.best = state.get("best_val_top1_err", math.inf)
        if state["world"] == dist.world:
            ckpt.set_rng_state(state["rng"][dist.rank], device)
            run.meter.load(state["meter"][dist.rank])
        elif state["batch"]:  # the epoch's remaining images are sharded by the number of processes
            raise ckpt.CheckpointError(f"the checkpoint was saved mid-epoch by {state['world']} process(es); "
                                       f"resume it with as many (this run has {dist.world})")
    return run


def check_finite(run: Run, dist: Distributed, *, weights: bool = False) -> None:
    """Raise NonFiniteLoss if a training loss of this epoch (on any rank) or, with `weights`, a weight is
    not finite. A device sync; under DDP a collective."""
    bad = run.meter.nonfinite(dist)
    if bad is None and weights and not torch.stack([p.detach().isfinite().all() for p in run.model.parameters()]).all():
        bad = (run.step - 1, None)
    if bad is not None:
        step = bad[0]
        raise NonFiniteLoss(nonfinite_message(step, bad[1], epoch=run.epoch, batch=step - (run.step - run.batch),
                                              lr=run.optimizer.param_groups[0]["lr"], base_lr=run.config.lr,
                                              checkpoint=Path(run.config.out) / "checkpoint.pt", amp=run.config.amp))


def save_checkpoint(run: Run, path: Path, dist: Distributed, device: torch.device, *, full: bool = True) -> None:
    """Collective: every rank calls it; each rank's RNG state and partial sums go in the file.

    Nothing is written when the epoch's loss or the weights are not finite (NonFiniteLoss); a failed
    write (a full disk) leaves the previous file as it was and raises CheckpointWriteError on every rank.
    """
    check_finite(run, dist, weights=True)
    rng, meters = gather(ckpt.rng_state(device), dist), gather(run.meter.state(), dist)
    error = None
    if dist.main:
        config = run.config
        payload = {
            "format": ckpt.FORMAT, "model": run.model.state_dict(),
            "model_args": model_args(config, len(run.classes)), "classes": run.classes,
            "config": dataclasses.asdict(config), "epoch": run.epoch, "batch": run.batch, "step": run.step,
            "history": run.history, "best_val_top1_err": run.best,
            "data": {"image_size": config.image_size, "crop_size": config.crop_size, "synthetic": config.data is None},
            "world": dist.world,
        }
        if full:
            payload.update(optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                           scaler=run.scaler.state_dict(), rng=rng, meter=meters)
        existed = path.is_file()
        try:
            ckpt.save_atomic(payload, path)
        except OSError as e:
            error = ckpt.write_error(path, e, existed)
    if dist.enabled:  # also the barrier: no rank goes on before the file is there, or all stop
        if dist.all_sum(torch.tensor([float(error is not None)], device=device)).item() and error is None:
            error = ckpt.CheckpointWriteError(f"could not write checkpoint {path} (rank 0 failed)")
    if error is not None:
        raise error


def train_step(run: Run, images, labels, skipped, augment: Augmentation, device: torch.device,
               dist: Distributed) -> int:
    """One optimizer step on a batch; returns the number of images it trained on. A batch with no
    readable image is dropped (under DDP it goes through empty, adding nothing).

    A non-finite loss raises NonFiniteLoss: in one CPU process at this step; on a GPU or under DDP at
    the next progress sync (every log_every steps), not to sync the device every step, naming the
    step where it happened (save_checkpoint and end_epoch check too, so no such weights are saved).
    The loss is checked, not the gradients: fp16's GradScaler skipping a step is no stop."""
    config = run.config
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    n = labels.numel()
    if n == 0 and not dist.enabled:  # every image of the batch was unreadable
        run.meter.add(torch.zeros((), device=device), torch.zeros((), device=device), 0, skipped)
        return 0
    # DDP needs every rank in every step: an all-unreadable batch goes through empty
    x = augment(images, run.epoch, run.batch) if n else \
        torch.zeros(0, 3, config.crop_size, config.crop_size, device=device)
    amp_dtype = AMP_DTYPES[config.amp]
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = run.net(x)
    loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss_sum / max(n, 1)).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.meter.add(loss_sum, (logits.argmax(1) == labels).sum(), n, skipped, step=run.step)
    if _loss_check_due(run, device, dist):
        check_finite(run, dist)
    return n


def _loss_check_due(run: Run, device: torch.device, dist: Distributed) -> bool:
    """Whether train_step checks the loss now: every step in one CPU process (no device to sync), else at
    the progress sync points (every log_every steps), which every rank reaches together."""
    return (device.type == "cpu" and not dist.enabled) or (run.batch + 1) % run.config.log_every == 0


def train_one_epoch(run: Run, loader, augment: Augmentation, stop: StopRequest, dist: Distributed,
                    device: torch.device, steps_per_epoch: int, stop_at: int | None = None) -> bool:
    """Steps from run.batch to the end of the epoch, or until run.step reaches stop_at (the step this
    invocation started at plus --max-steps) or a stop request; returns whether the run was stopped."""
    config, meter = run.config, run.meter
    start = run.batch
    bar = _progress(config, dist, total=steps_per_epoch, initial=start, desc=f"epoch {run.epoch + 1}")
    epoch_start, seen, step_end, stopped = time.perf_counter(), 0, time.perf_counter(), False
    batches = iter(loader)
    while not stopped:
        if stop_at is not None and run.step >= stop_at:
            stopped = True
            break
        t0 = time.perf_counter()
        try:
            images, labels, skipped = next(batches)
        except StopIteration:
            break
        t1 = time.perf_counter()
        if run.step < config.warmup_steps:
            _warm_up(run)
        seen += train_step(run, images, labels, skipped, augment, device, dist)
        run.batch += 1
        run.step += 1
        meter.wait_s += t1 - t0
        step_end = time.perf_counter()
        meter.busy_s += step_end - t1
        last = stop_at is not None and run.step >= stop_at
        # Every rank reaches the same sync points (the same step numbers), so only there may a
        # collective run: ranks agree to stop when any of them was signalled.
        sync = run.batch % config.log_every == 0 or last
        if sync and dist.enabled:
            stop.requested = bool(dist.all_sum(torch.tensor([float(stop.requested)], device=device)).item())
        stopped = last or (stop.requested and (sync or not dist.enabled))
        if bar is not None:
            if sync or stopped:
                now, elapsed = meter.local(), time.perf_counter() - epoch_start
                bar.set_postfix(loss=f"{now['loss']:.3f}", acc=f"{now['acc']:.3f}",
                                img_s=f"{seen * dist.world / max(elapsed, 1e-9):.0f}",
                                wait=f"{meter.wait_s / max(meter.wait_s + meter.busy_s, 1e-9):.0%}")
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the queued tail of the epoch's work belongs in its time
        if run.batch > start:
            meter.busy_s += time.perf_counter() - step_end
    if bar is not None:
        bar.close()
    return stopped


def _warm_up(run: Run) -> None:
    """Linear warm-up: step s (counted from 0) of the first warmup_steps runs at lr * (s + 1) / warmup_steps.
    A function of the step alone, so a resumed run warms up as the uninterrupted one did."""
    for group in run.optimizer.param_groups:
        group["lr"] = run.config.lr * (run.step + 1) / run.config.warmup_steps


def end_epoch(run: Run, val_loader, dist: Distributed, device: torch.device, out: Path) -> None:
    """Validation, the learning-rate schedule, the epoch's row of metrics, checkpoints and logs."""
    config, meter = run.config, run.meter
    check_finite(run, dist, weights=True)  # before validating, or stepping the schedule, on non-finite weights
    train_metrics = meter.reduced(dist)
    val = evaluate_loader(run.model, val_loader, device, crop_size=config.crop_size, amp=config.amp,
                          channels_last=config.channels_last, dist=dist)
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this epoch ran at
    run.scheduler.step(val["loss"])
    # wall time and waiting summed over ranks (each rank waits for its own loader)
    wait, wall = dist.all_sum(torch.tensor([meter.wait_s, meter.wait_s + meter.busy_s], dtype=torch.float64,
                                           device=device)).tolist()
    epoch_s = wall / dist.world
    row = {"epoch": run.epoch + 1, "step": run.step, "lr": lr,
           "train_loss": train_metrics["loss"], "train_top1_err": train_metrics["top1_err"],
           "val_loss": val["loss"], "val_top1_err": val["top1_err"], "val_top5_err": val["top5_err"],
           "img_per_s": train_metrics["images"] / max(epoch_s, 1e-9), "data_wait_frac": wait / max(wall, 1e-9),
           **skipped_columns(train_metrics["skipped_by_reason"], val["skipped_by_reason"]), "epoch_s": epoch_s}
    run.history.append(row)
    run.epoch, run.batch, run.meter = run.epoch + 1, 0, EpochMeter(device)
    if val["top1_err"] < run.best:
        run.best = val["top1_err"]
        save_checkpoint(run, out / "best.pt", dist, device, full=False)
    save_checkpoint(run, out / "checkpoint.pt", dist, device)
    if dist.main:
        write_logs(out, run.history, config.plot)
        print(epoch_line(row), file=sys.stderr)


def _load_resume(config: TrainConfig, resume, device: torch.device, given=None) -> tuple[TrainConfig, dict]:
    given = given_options(config) if given is None else set(given)
    state = ckpt.load(resume, variant=config.variant if "variant" in given else None)
    if "optimizer" not in state:
        raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} holds weights only (best.pt); resume from "
                                   f"checkpoint.pt")
    return resumed_config(config, state["config"], device, given), state


def train(config: TrainConfig, resume: str | os.PathLike | None = None, *, given=None) -> dict:
    """Train AlexNet as `config` says; returns {"history": per-epoch rows, "steps", "stopped",
    "interrupted", "out", "config"}.

    resume: a checkpoint written by an earlier run; the run continues from its next step with that
    run's options. Only those in RESUME_MAY_CHANGE may differ; another option given with a value
    other than the saved one raises CheckpointError. given: the names of the options the user gave
    (the command line passes those typed on it); None: those that differ from TrainConfig's defaults.
    config.max_steps counts the steps of this call, not of the run.
    """
    dist, device = setup_distributed(config.device)
    state = None
    if resume is not None:
        config, state = _load_resume(config, resume, device, given)
    config = config.resolved(device)
    config.check()
    out = Path(config.out)
    train_set, val_set, classes, described = load_data(config)
    if state is not None and state["classes"] != classes:
        raise ckpt.CheckpointError(f"checkpoint {str(resume)!r} was trained on {len(state['classes'])} classes "
                                   f"{state['classes']}; the data has {len(classes)}: {classes}")
    global_batch = config.batch_size * dist.world
    if global_batch > len(train_set):
        raise ValueError(f"fastalex train: the batch ({config.batch_size} x {dist.world} process"
                         f"{'es' if dist.world > 1 else ''}) is larger than the training set ({len(train_set)} images)")
    run = build_run(config, classes, dist, device, state)
    train_loader, val_loader, train_sampler, how = make_loaders(config, train_set, val_set, dist, device)
    augment = Augmentation(config, dist, device)
    steps_per_epoch = len(train_set) // global_batch
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"fastalex train: AlexNet ({config.variant}, {len(classes)} classes) on {described}{how}: "
              f"{len(train_set)} train / {len(val_set)} val images at {config.image_size}px, crops "
              f"{config.crop_size}; batch {config.batch_size} x {dist.world} on {device}, amp {config.amp}, "
              f"{config.workers} loader workers per process; writing to {out}", file=sys.stderr)
    stopped = False
    stop_at = None if config.max_steps is None else run.step + config.max_steps  # --max-steps: of this call
    with StopRequest(out / "checkpoint.pt") as stop:
        while run.epoch < config.epochs and not stopped:
            train_sampler.set_epoch(run.epoch, run.batch)
            run.net.train()
            stopped = train_one_epoch(run, train_loader, augment, stop, dist, device, steps_per_epoch, stop_at)
            if stopped and run.batch < steps_per_epoch:
                save_checkpoint(run, out / "checkpoint.pt", dist, device)  # mid-epoch: resume continues at run.batch
                break
            end_epoch(run, val_loader, dist, device, out)
    if dist.main and state is not None and run.step == state["step"] and run.epoch >= config.epochs:
        print(f"fastalex train: nothing to do, all {config.epochs} epochs are done (pass --epochs to train longer)",
              file=sys.stderr)
    elif stopped and dist.main and run.epoch < config.epochs:
        print(f"fastalex train: stopped at step {run.step}; continue with --resume {out / 'checkpoint.pt'}",
              file=sys.stderr)
    if dist.main and run.step > (state["step"] if state is not None else 0):
        print(_summary(run, out), file=sys.stderr)
    if dist.owns_group:
        torch.distributed.destroy_process_group()
    return {"history": run.history, "steps": run.step, "stopped": stopped, "interrupted": stop.requested,
            "out": str(out), "config": config}


def _summary(run: Run, out: Path) -> str:
    """The run's last line: its best validation error and what it left in `out`, with the sizes."""
    def size(n: int) -> str:
        return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"

    rows = [r for r in run.history if r.get("val_top1_err") == run.best]
    best = (f"best validation top-1 error {100 * run.best:.1f}% (epoch {rows[0]['epoch']}, top-5 "
            f"{100 * rows[0]['val_top5_err']:.1f}%)" if rows else "no epoch finished yet")
    files = [out / name for name in ("checkpoint.pt", "best.pt", "metrics.csv", "metrics.json", "curves.png")]
    return f"fastalex train: {best}; in {out}: " + ", ".join(f"{p.name} ({size(p.stat().st_size)})"
                                                              for p in files if p.is_file())


def _progress(config: TrainConfig, dist: Distributed, total: int, initial: int, desc: str):
    if not (config.progress and dist.main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
