"""`fastalex eval` and the validation pass of `fastalex train`: top-1 / top-5 error of a trained
AlexNet, with the centre crop or the paper's ten-crop average (four corners and the centre, and their
mirror images; softmax averaged)."""
from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

from fastalex import transforms
from fastalex.data import SKIP_REASONS, ImageFolder, ShardedSampler, SyntheticShapes, make_loader, skip_counts
from fastalex.models import AlexNet
from fastalex.train import checkpoint as ckpt
from fastalex.train.config import AMP_DTYPES, TrainConfig


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre size x size patch of (N, C, H, W) images (torchvision's rounding)."""
    h, w = images.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top:top + size, left:left + size]


@torch.no_grad()
def evaluate_loader(model: torch.nn.Module, loader, device: torch.device, *, crop_size: int, amp: str = "none",
                    channels_last: bool = False, dist=None, ten_crop: bool = False) -> dict:
    """Loss and top-1/top-5 error over a loader of (uint8 images, labels, skipped) batches.

    The model runs in eval mode (no dropout) and is put back in the mode it was in. With `dist`
    (fastalex.train.distributed.Distributed) the sums are reduced over ranks, each of which saw its own shard.
    A batch with no readable image counts its skipped files and nothing else. Returns loss, top1_err,
    top5_err, images, skipped (files left out, in all) and skipped_by_reason ({reason: count}, every reason).
    """
    amp_dtype = AMP_DTYPES[amp]
    normalize = transforms.Normalize()
    tens = transforms.TenCrop(crop_size) if ten_crop else None
    was_training = model.training
    model.eval()
    # loss, top-1 right, top-5 right, images, then the files skipped for each of SKIP_REASONS
    sums = torch.zeros(4 + len(SKIP_REASONS), dtype=torch.float64, device=device)
    try:
        for images, labels, skipped in loader:
            for reason, k in skip_counts(skipped).items():
                sums[4 + SKIP_REASONS.index(reason)] += k
            n = labels.numel()
            if n == 0:
                continue
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if tens is not None:
                x = tens(images).flatten(0, 1)  # (N * 10, C, crop, crop), image-major
            else:
                x = center_crop(images, crop_size)
            x = normalize(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            if tens is not None:
                probs = transforms.average_ten_crop(logits.float().view(n, 10, -1))
            else:
                probs = logits.float().softmax(1)
            sums[0] += F.nll_loss(probs.clamp_min(1e-30).log(), labels, reduction="sum").double()
            top = probs.topk(min(5, probs.shape[1]), dim=1).indices
            hit = top == labels[:, None]
            sums[1] += hit[:, 0].sum()
            sums[2] += hit.any(1).sum()
            sums[3] += n
    finally:
        model.train(was_training)
    if dist is not None:
        sums = dist.all_sum(sums)
    loss, top1, top5, count, *skipped = sums.tolist()
    images, count = int(count), max(count, 1)
    return {"loss": loss / count, "top1_err": 1 - top1 / count, "top5_err": 1 - top5 / count,
            "images": images, "skipped": int(sum(skipped)),
            "skipped_by_reason": dict(zip(SKIP_REASONS, map(int, skipped)))}


def run_eval(checkpoint: str | os.PathLike, data: str | None = None, *, ten_crop: bool = False,
             batch_size: int = 128, workers: int | None = None, device: str | None = None,
             progress: bool = True) -> dict:
    """Evaluate a `fastalex train` checkpoint on DATA/val (or the synthetic validation split it was
    trained on, when it was trained on that and no data is given)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("fastalex eval: --device cuda, but torch sees no CUDA device")
    state = ckpt.load(checkpoint)
    config = TrainConfig(**state["config"])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fastalex eval: --batch-size must be a positive integer, got {batch_size!r}")
    if data is not None:
        val_root = os.path.join(data, "val")
        if not os.path.isdir(val_root):
            raise FileNotFoundError(f"fastalex eval: {val_root!r} does not exist (expected DATA/val/<class>/<images>)")
        val = ImageFolder(val_root, image_size=config.image_size)
        if list(val.classes) != list(state["classes"]):
            only_ckpt = sorted(set(state["classes"]) - set(val.classes))
            only_data = sorted(set(val.classes) - set(state["classes"]))
            raise ckpt.CheckpointError(
                f"fastalex eval: the checkpoint's {len(state['classes'])} classes do not match the "
                f"{len(val.classes)} folders of {val_root!r}"
                + (f"; only in the checkpoint: {only_ckpt}" if only_ckpt else "")
                + (f"; only in the data: {only_data}" if only_data else ""))
        described = val_root
    elif state["data"]["synthetic"]:
        val = SyntheticShapes(config.val_images, image_size=config.image_size, seed=config.seed,
                                       split="val", num_classes=config.num_classes)
        described = "the synthetic validation split it was trained with"
    else:
        raise ValueError(f"fastalex eval: {str(checkpoint)!r} was trained on image folders ({config.data}); "
                         f"pass --data DIR")
    model = AlexNet(**state["model_args"]).to(dev)
    model.load_state_dict(state["model"])
    channels_last = dev.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    workers = (min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0) if workers is None else workers
    sampler = ShardedSampler(len(val), batch_size, 0, shuffle=False, drop_last=False)
    loader = make_loader(val, sampler, batch_size, workers, dev)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="fastalex eval", unit="batch", file=sys.stderr)
    amp = "bf16" if dev.type == "cuda" else "none"
    result = evaluate_loader(model, loader, dev, crop_size=config.crop_size, amp=amp, channels_last=channels_last,
                             ten_crop=ten_crop)
    result.update(checkpoint=str(checkpoint), data=described, crops="ten-crop" if ten_crop else "centre crop",
                  classes=len(state["classes"]))
    return result
