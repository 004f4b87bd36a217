"""What `fastalex train` measures and writes: per-epoch sums kept on the device, the epoch line,
metrics.csv / metrics.json and curves.png."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from fastalex.train.distributed import Distributed


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


def epoch_line(row: dict) -> str:
    skipped = f", {row['skipped_images']} unreadable images skipped" if row["skipped_images"] else ""
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} top-1 err {100 * row['train_top1_err']:.1f}% | "
            f"val loss {row['val_loss']:.4f} top-1 err {100 * row['val_top1_err']:.1f}% top-5 err "
            f"{100 * row['val_top5_err']:.1f}% | {row['img_per_s']:.0f} img/s, waited for data "
            f"{100 * row['data_wait_frac']:.1f}% of the time, lr {row['lr']:.3g}{skipped}")
