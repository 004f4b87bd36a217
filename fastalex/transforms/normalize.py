"""Normalisation (per-channel mean/std or the paper's mean image) and the paper's dataset preparation."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from fastalex._checks import check_int
from fastalex.transforms._common import (_check_images, _compute_dtype, _float_dtype, _pixel_batches,
                                         _to_vector)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def compute_mean_image(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """The mean image of a dataset, (C, H, W) float32 in [0, 1], for :class:`Normalize` (the paper
    subtracted "the mean activity over the training set from each pixel").

    ``batches``: an iterable of (N, C, H, W) tensors of one C, H, W (uint8 scaled by 1 / 255, or float).
    Sums are accumulated in float64 on the first batch's device, where the result is returned.
    """
    op = "compute_mean_image"
    total, count, shape = None, 0, None
    for i, b, scale in _pixel_batches(op, batches):
        if shape is None:
            shape = tuple(b.shape[1:])
        elif tuple(b.shape[1:]) != shape:
            raise ValueError(f"{op}: all batches must have the same (C, H, W); batch 0 has {shape}, "
                             f"batch {i} has {tuple(b.shape[1:])}")
        s = b.sum(dim=0, dtype=torch.float64)
        if scale != 1.0:
            s = s * scale
        total = s if total is None else total + s.to(total.device)
        count += b.shape[0]
    if shape is None:
        raise ValueError(f"{op}: batches is empty; need at least one (N, C, H, W) batch")
    if count == 0:
        raise ValueError(f"{op}: the batches hold no images")
    return (total / count).float()


# ---------------------------------------------------------------------------------------------------
# Normalisation.

class Normalize:
    """Images to network input: per-channel ``(x - mean[c]) / std[c]``, or the paper's mean-image
    subtraction ``x - mean_image``.

    ``images`` (N, C, H, W), uint8 (converted to float32 / 255 first) or float in [0, 1]; returns float32
    for uint8 and the input's dtype for float (fp16/bf16 computed in float32, rounded once). The
    per-channel form is evaluated as one fused ``x * (1 / std) + (-mean / std)`` (the /255 folded in),
    which agrees with ``(x - mean) / std`` to within float32 rounding.

    With ``mean_image`` (a float (C, H, W) tensor in [0, 1], e.g. from :func:`compute_mean_image`)
    the result is ``x - mean_image``: no division, as in the paper; ``mean`` and ``std`` must then be
    left at their defaults (or None) and are ignored. The mean image must have the images' H and W. The
    paper's arrangement is to subtract the full-size (256 x 256) mean image before cropping: crop and
    flip commute with a per-pixel subtraction only when the mean image is cropped and flipped the same
    way, so either normalise before RandomCropFlip (then it crops the difference) or pass a centre-crop
    of the mean image (an approximation).
    """

    def __init__(self, mean: Sequence[float] | torch.Tensor | None = IMAGENET_MEAN,
                 std: Sequence[float] | torch.Tensor | None = IMAGENET_STD,
                 mean_image: torch.Tensor | None = None) -> None:
        op = "Normalize"
        self._cache = {}  # the constants per (device, dtype), so a call moves nothing from the host
        if mean_image is not None:
            if not (mean is None or mean is IMAGENET_MEAN) or not (std is None or std is IMAGENET_STD):
                raise ValueError(f"{op}: mean_image replaces mean and std (the paper only subtracts the mean "
                                 f"image); leave mean and std at their defaults or None, got mean={mean!r}, "
                                 f"std={std!r}")
            if not isinstance(mean_image, torch.Tensor):
                raise TypeError(f"{op}: mean_image must be a torch.Tensor, got {type(mean_image).__name__}")
            if mean_image.dim() != 3:
                raise ValueError(f"{op}: mean_image must be 3-D (C, H, W), got {mean_image.dim()}-D with shape "
                                 f"{tuple(mean_image.shape)}")
            if not mean_image.is_floating_point():
                raise TypeError(f"{op}: mean_image must be floating point in [0, 1] (see compute_mean_image), "
                                f"got {mean_image.dtype}")
            self.mean_image, self.mean, self.std = mean_image.detach(), None, None
            return
        if mean is None or std is None:
            raise ValueError(f"{op}: mean and std are required without a mean_image, got mean={mean!r}, std={std!r}")
        mean_t, std_t = _to_vector(op, "mean", mean), _to_vector(op, "std", std)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"{op}: mean and std must have the same length, got {mean_t.numel()} and "
                             f"{std_t.numel()}")
        if (std_t == 0).any():
            raise ValueError(f"{op}: std must not contain zeros, got {tuple(std_t.tolist())}")
        self.mean_image, self.mean, self.std = None, mean_t, std_t

    def __repr__(self) -> str:
        if self.mean_image is not None:
            return f"Normalize(mean_image=<{tuple(self.mean_image.shape)} {self.mean_image.dtype}>)"
        return f"Normalize(mean={tuple(self.mean.tolist())}, std={tuple(self.std.tolist())})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        op = "Normalize"
        _check_images(op, images, numeric=True)
        c, h, w = images.shape[1:]
        dev, dtype = images.device, _compute_dtype(images)
        uint8 = images.dtype == torch.uint8
        if self.mean_image is not None:
            if tuple(self.mean_image.shape) != (c, h, w):
                raise ValueError(f"{op}: mean_image has shape {tuple(self.mean_image.shape)} but the images are "
                                 f"(C, H, W) = {(c, h, w)}; crop or resize the mean image to the images' size "
                                 f"(or normalise before cropping)")
            key = (dev, dtype)
            m = self._cache.get(key)
            if m is None:
                m = self._cache[key] = self.mean_image.to(dev, dtype)
            x = images.div(255) if uint8 else images
            return torch.sub(x, m).to(_float_dtype(images))
        if c != self.mean.numel():
            raise ValueError(f"{op}: images have {c} channels but mean and std have {self.mean.numel()} values")
        key = (dev, dtype, uint8)
        consts = self._cache.get(key)
        if consts is None:
            # In float64 before rounding: (x / 255 - mean) / std = x * (1 / (255 std)) - mean / std.
            scale = 1.0 / (self.std * (255.0 if uint8 else 1.0))
            bias = -self.mean / self.std
            consts = self._cache[key] = (scale.to(dev, dtype)[None, :, None, None],
                                         bias.to(dev, dtype)[None, :, None, None])
        scale, bias = consts
        return torch.addcmul(bias, images, scale).to(_float_dtype(images))


# ---------------------------------------------------------------------------------------------------
# Dataset preparation.

def resize_and_center_crop(images: torch.Tensor, size: int = 256) -> torch.Tensor:
    """The paper's dataset preparation: rescale so the shorter side is `size`, then crop the central
    `size` x `size` patch. (C, H, W) or (N, C, H, W), uint8 or float; returns the same dtype.

    Bilinear with antialiasing (a downscale must average, not skip, pixels); uint8 is rounded back.
    The crop starts at ((H - size) // 2, (W - size) // 2). (torchvision's center_crop rounds
    (H - size) / 2 half to even instead: one pixel further when H - size is 3 mod 4.)
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"resize_and_center_crop: images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() not in (3, 4):
        raise ValueError(f"resize_and_center_crop: images must be (C, H, W) or (N, C, H, W), "
                         f"got shape {tuple(images.shape)}")
    size = check_int("resize_and_center_crop", "size", size, 1)
    h, w = images.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"resize_and_center_crop: empty image of {h}x{w}")
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    if min(h, w) != size:
        # Shorter side to `size`; the longer one keeps the aspect ratio (at least `size`).
        nh, nw = (size, max(size, round(w * size / h))) if h <= w else (max(size, round(h * size / w)), size)
        # interpolate's antialiased bilinear wants float; fp16/bf16 go through float32 for accuracy.
        x = batch.float() if batch.dtype in (torch.uint8, torch.float16, torch.bfloat16) else batch
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        batch = x.round_().clamp_(0, 255).to(torch.uint8) if batch.dtype == torch.uint8 else x.to(batch.dtype)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    out = batch[..., top:top + size, left:left + size].contiguous()
    return out if images.dim() == 4 else out[0]
