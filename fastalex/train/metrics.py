"""What `fastalex train` measures and writes: per-epoch sums kept on the device (with the files skipped,
by reason, and the first non-finite loss), the epoch line, metrics.csv / metrics.json and curves.png."""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

from fastalex.data import SKIP_REASONS, skip_counts
from fastalex.train.distributed import Distributed


class NonFiniteLoss(ValueError):
    """The training loss (or the weights) stopped being finite: the run stops, and no checkpoint is
    written with such weights (the last one written before stays as it was). exit_code: what the
    command exits with."""

    exit_code = 3


class EpochMeter:
    """Sums kept on the device (no sync per step), reduced across ranks when read; and the first step
    whose training loss was not finite (-1: none), also without a sync per step."""

    FIELDS = ("loss_sum", "correct", "count") + tuple(f"skipped_{r}" for r in SKIP_REASONS)

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.FIELDS), dtype=torch.float64, device=device)
        self.bad_step = torch.full((), -1.0, dtype=torch.float64, device=device)
        self.bad_loss = torch.zeros((), dtype=torch.float64, device=device)
        self.wait_s = self.busy_s = 0.0

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, count: int, skipped, step: int | None = None) -> None:
        """One batch: its loss sum and right answers (device tensors), images, skipped files (a dict by
        reason, or a count) and, for a training step, its number (0-based), watched for a non-finite loss."""
        loss = loss_sum.detach().double()
        self.sums[0] += loss
        self.sums[1] += correct.double()
        self.sums[2] += count
        for reason, k in skip_counts(skipped).items():
            self.sums[3 + SKIP_REASONS.index(reason)] += k
        if step is not None:
            first = ~torch.isfinite(loss) & (self.bad_step < 0)
            self.bad_step = torch.where(first, float(step), self.bad_step)
            self.bad_loss = torch.where(first, loss, self.bad_loss)

    def nonfinite(self, dist: Distributed) -> tuple[int, str] | None:
        """(step, "nan" or "inf") of the epoch's first non-finite training loss on any rank ("non-finite":
        another rank's), or None. A device sync; under DDP a collective (every rank calls it together)."""
        step, loss = torch.stack([self.bad_step, self.bad_loss]).tolist()
        first = step
        if dist.enabled:  # the earliest step of any rank; none (-1) counts as after every step
            earliest = torch.tensor([math.inf if step < 0 else step], dtype=torch.float64, device=self.sums.device)
            torch.distributed.all_reduce(earliest, op=torch.distributed.ReduceOp.MIN)
            first = earliest.item() if math.isfinite(earliest.item()) else -1
        if first < 0:
            return None
        return int(first), (str(loss) if first == step else "non-finite")

    def state(self) -> dict:
        return {"sums": self.sums.cpu(), "wait_s": self.wait_s, "busy_s": self.busy_s}

    def load(self, state: dict) -> None:
        sums = state["sums"]
        if sums.numel() == 4:  # saved before skipped files were counted by reason: all "unreadable"
            sums = torch.cat([sums[:3], torch.zeros(len(SKIP_REASONS), dtype=sums.dtype)])
            sums[3 + SKIP_REASONS.index("unreadable")] = state["sums"][3]
        self.sums.copy_(sums)
        self.wait_s, self.busy_s = state["wait_s"], state["busy_s"]

    def local(self) -> dict:
        loss_sum, correct, count, *skipped = self.sums.tolist()
        return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1), "count": count,
                "skipped": sum(skipped)}

    def reduced(self, dist: Distributed) -> dict:
        sums = dist.all_sum(self.sums.clone())
        loss_sum, correct, count, *skipped = sums.tolist()
        return {"loss": loss_sum / max(count, 1), "top1_err": 1 - correct / max(count, 1), "images": int(count),
                "skipped": int(sum(skipped)), "skipped_by_reason": dict(zip(SKIP_REASONS, map(int, skipped)))}


def skipped_columns(*by_reason: dict) -> dict:
    """The epoch row's skipped-file columns from dicts {reason: count} (training's and validation's):
    skipped_images (the total) and skipped_<reason> for every reason."""
    columns = {f"skipped_{r}": sum(d.get(r, 0) for d in by_reason) for r in SKIP_REASONS}
    return {"skipped_images": sum(columns.values()), **columns}


def nonfinite_message(step: int, loss: str | None, *, epoch: int, batch: int, lr: float, base_lr: float,
                      checkpoint: Path, amp: str) -> str:
    """What NonFiniteLoss says: the step (0-based here, 1-based in the message), the loss ("nan", "inf";
    None: the weights, not the loss), the learning rate (lr: the step's, base_lr: --lr) and what to try."""
    what = f"the training loss became {loss}" if loss is not None else "the weights became non-finite"
    kept = (f"{checkpoint} still holds the last finite state" if checkpoint.is_file()
            else "no checkpoint had been written yet")
    fp16 = "; with --amp fp16, try bf16 or none" if amp == "fp16" else ""
    return (f"fastalex train: {what} at step {step + 1} (epoch {epoch + 1}, batch {batch + 1}) at lr {lr:.3g}; "
            f"stopped without writing a checkpoint ({kept}). Try a lower --lr (e.g. {base_lr / 10:.3g}) in a new run "
            f"(--resume keeps the saved --lr and would repeat this step){fp16}; or look for bad data")


def write_logs(out: Path, history: list[dict], plot: bool) -> None:
    """metrics.json (everything), metrics.csv (one row per epoch) and curves.png (when matplotlib is
    there), each written to a temporary file and renamed: a full disk leaves the previous one."""
    _write_atomic(out / "metrics.json", json.dumps(history, indent=1).encode())
    keys = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(keys)] + [",".join(_csv(row.get(k)) for k in keys) for row in history]
    _write_atomic(out / "metrics.csv", ("\n".join(lines) + "\n").encode())
    if plot and history:
        try:
            plot_curves(history, out / "curves.png")
        except ImportError:
            if len(history) == 1:
                print("fastalex train: no curves.png (needs matplotlib: pip install matplotlib)", file=sys.stderr)


def _write_atomic(path: Path, data: bytes | None = None, write=None) -> None:
    """`data` (or what write(temporary path) writes) to `path`, through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if data is not None:
                f.write(data)
        if write is not None:
            write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    try:
        _write_atomic(path, write=lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def epoch_line(row: dict) -> str:
    counts = [f"{row.get(f'skipped_{r}', 0)} {r.replace('_', ' ')}" for r in SKIP_REASONS if row.get(f"skipped_{r}")]
    skipped = (f", {row['skipped_images']} files skipped" + (f" ({', '.join(counts)})" if counts else "")
               if row.get("skipped_images") else "")
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} top-1 err {100 * row['train_top1_err']:.1f}% | "
            f"val loss {row['val_loss']:.4f} top-1 err {100 * row['val_top1_err']:.1f}% top-5 err "
            f"{100 * row['val_top5_err']:.1f}% | {row['img_per_s']:.0f} img/s, waited for data "
            f"{100 * row['data_wait_frac']:.1f}% of the time, lr {row['lr']:.3g}{skipped}")
