"""The paper's random crops with horizontal reflections (training) and its ten crops (test)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fastalex._checks import check_finite, check_int
from fastalex.transforms._common import _check_fits, _check_generator, _check_images, _draw_device, _is_channels_last

# ---------------------------------------------------------------------------------------------------
# Random crop and horizontal reflection (training).

class CropFlipParams(NamedTuple):
    """Per-image parameters of :class:`RandomCropFlip`: the crop's top-left corner and whether to mirror.

    top, left: int64 (N,); flip: bool (N,).
    """
    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


class RandomCropFlip:
    """A random ``size`` x ``size`` crop of each image, mirrored left-right with probability ``p_flip``.

    The paper's main augmentation: "extracting random 224 x 224 patches (and their horizontal
    reflections) from the 256 x 256 images". Each image of the batch gets its own crop position,
    uniform over all positions that fit (top in [0, H - size], left in [0, W - size], as torchvision's
    RandomCrop), and its own flip. Works on any dtype; the output has the input's dtype and device.

    The whole batch is one gather: row and column index tensors (the columns reversed for mirrored
    images) pick the output pixels, so cropping and flipping cost one read and one write of the crops.
    The output is contiguous in the input's memory format (channels_last stays channels_last).

        crop = RandomCropFlip(224)
        g = torch.Generator(device="cuda").manual_seed(0)
        x = crop(images, generator=g)                        # (N, C, 224, 224)
        params = crop.sample(n, 256, 256, generator=g)       # or: draw, then apply (e.g. to two tensors)
        x = crop.apply(images, params)
    """

    def __init__(self, size: int = 224, p_flip: float = 0.5) -> None:
        op = "RandomCropFlip"
        self.size = check_int(op, "size", size, 1)
        p_flip = check_finite(op, "p_flip", p_flip)
        if not 0.0 <= p_flip <= 1.0:
            raise ValueError(f"{op}: p_flip must be in [0, 1], got {p_flip}")
        self.p_flip = p_flip

    def __repr__(self) -> str:
        return f"RandomCropFlip(size={self.size}, p_flip={self.p_flip})"

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
               device=None) -> CropFlipParams:
        """Draw crop positions and flips for ``n`` images of ``height`` x ``width``.

        The draws are made on the generator's device (``generator=None``: torch's default generator
        for ``device``, default cpu), so a seed gives the same crops wherever the images are. With a
        ``device`` the parameters are then moved there; otherwise they stay where they were drawn.
        """
        op = "RandomCropFlip"
        n = check_int(op, "n", n, 0)
        height = check_int(op, "height", height, 1)
        width = check_int(op, "width", width, 1)
        _check_generator(op, generator)
        _check_fits(op, self.size, height, width)
        where = _draw_device(generator, device)
        # randint's high is exclusive: every position from 0 to H - size inclusive.
        top = torch.randint(0, height - self.size + 1, (n,), generator=generator, device=where)
        left = torch.randint(0, width - self.size + 1, (n,), generator=generator, device=where)
        # rand is in [0, 1): p_flip = 0 never flips, p_flip = 1 always does.
        flip = torch.rand(n, generator=generator, device=where) < self.p_flip
        params = CropFlipParams(top, left, flip)
        if device is not None:
            params = CropFlipParams(*(t.to(device) for t in params))
        return params

    def apply(self, images: torch.Tensor, params: CropFlipParams) -> torch.Tensor:
        """Crop image i at (params.top[i], params.left[i]) and mirror it where params.flip[i].

        ``params`` (e.g. from :meth:`sample`) are moved to the images' device. Their positions must
        fit (0 <= top <= H - size, 0 <= left <= W - size): that is checked when they are on the CPU;
        on another device it would cost a host synchronisation, so it is not.
        """
        op = "RandomCropFlip"
        _check_images(op, images)
        n, c, h, w = images.shape
        s = self.size
        _check_fits(op, s, h, w)
        top, left, flip = self._check_params(params, n, h, w)
        dev = images.device
        top, left, flip = top.to(dev), left.to(dev), flip.to(dev)

        ar = torch.arange(s, device=dev)
        rows = top[:, None] + ar                                      # (N, s)
        # A mirrored crop reads its columns right to left: output column j is input column left + s-1-j.
        cols = left[:, None] + torch.where(flip[:, None], (s - 1) - ar, ar)  # (N, s)
        batch = torch.arange(n, device=dev)
        if _is_channels_last(images):
            # Gather whole pixels (C contiguous values) from the NHWC view; the result is NHWC contiguous,
            # i.e. a channels_last (N, C, s, s) tensor once permuted back.
            out = images.permute(0, 2, 3, 1)[batch[:, None, None], rows[:, :, None], cols[:, None, :]]
            return out.contiguous().permute(0, 3, 1, 2)
        chan = torch.arange(c, device=dev)
        out = images[batch[:, None, None, None], chan[None, :, None, None], rows[:, None, :, None],
                     cols[:, None, None, :]]
        return out.contiguous()  # a no-op in practice: index's output is already NCHW contiguous

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``apply(images, sample(N, H, W, generator))``, drawn on the generator's (else the images') device."""
        op = "RandomCropFlip"
        _check_images(op, images)
        _check_generator(op, generator)
        n, _, h, w = images.shape
        device = generator.device if generator is not None else images.device
        return self.apply(images, self.sample(n, h, w, generator=generator, device=device))

    def _check_params(self, params, n: int, h: int, w: int):
        op = "RandomCropFlip"
        if not isinstance(params, tuple) or len(params) != 3:
            raise TypeError(f"{op}: params must be a CropFlipParams (top, left, flip), got {type(params).__name__}")
        top, left, flip = params
        for name, t in (("top", top), ("left", left), ("flip", flip)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{op}: params.{name} must be a torch.Tensor, got {type(t).__name__}")
            if tuple(t.shape) != (n,):
                raise ValueError(f"{op}: params.{name} must have shape ({n},) for a batch of {n} images, "
                                 f"got {tuple(t.shape)}")
        for name, t in (("top", top), ("left", left)):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{op}: params.{name} must be an integer tensor, got {t.dtype}")
        if flip.dtype != torch.bool:
            raise TypeError(f"{op}: params.flip must be a bool tensor, got {flip.dtype}")
        # Range check only where it is free (CPU tensors): out-of-range indices would raise an opaque
        # IndexError, or worse, negative ones would silently wrap around.
        for name, t, limit in (("top", top, h - self.size), ("left", left, w - self.size)):
            if t.device.type == "cpu" and n:
                bad = (t < 0) | (t > limit)
                if bad.any():
                    i = int(bad.nonzero()[0, 0])
                    raise ValueError(f"{op}: params.{name} must be in [0, {limit}] for {h}x{w} images and size "
                                     f"{self.size}, got {int(t[i])} for image {i}")
        return top.long(), left.long(), flip


# ---------------------------------------------------------------------------------------------------
# Ten crops (test).

class TenCrop:
    """The paper's test-time crops: the four corner and the centre ``size`` x ``size`` patches, then
    the same five of the horizontally mirrored image.

    ``images`` (N, C, H, W) -> (N, 10, C, size, size), in torchvision's TenCrop order (``vflip=False``):
    top-left, top-right, bottom-left, bottom-right, centre, then ``five_crop(hflip(image))`` in the
    same order. Note that the mirrored image's top-left crop is the mirror of the original's
    top-right one, and that its centre crop may sit one column off the original's: the centre is at
    top = round((H - size) / 2), left = round((W - size) / 2) (torchvision's rule, Python's round, so
    2.5 rounds to 2), measured in the mirrored image.

    One gather for the whole batch. For a channels_last input each crop is channels-last too
    (``out.flatten(0, 1)`` is a channels_last (N * 10, C, size, size) batch without a copy); otherwise
    the output is contiguous. Feed ``out.flatten(0, 1)`` to the model and :func:`average_ten_crop`
    the logits.
    """

    def __init__(self, size: int = 224) -> None:
        self.size = check_int("TenCrop", "size", size, 1)

    def __repr__(self) -> str:
        return f"TenCrop(size={self.size})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        op = "TenCrop"
        _check_images(op, images)
        n, c, h, w = images.shape
        s = self.size
        _check_fits(op, s, h, w)
        ct, cl = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        tops = [0, 0, h - s, h - s, ct] * 2
        lefts = [0, w - s, 0, w - s, cl]
        # The crop at column `l` of the mirrored image is the original's crop at w - s - l, read right
        # to left.
        lefts = lefts + [w - s - x for x in lefts]
        ar = torch.arange(s)
        rows = torch.tensor(tops)[:, None] + ar                                    # (10, s)
        cols = torch.tensor(lefts)[:, None] + torch.cat([ar.expand(5, s), (s - 1 - ar).expand(5, s)])
        dev = images.device
        rows, cols = rows.to(dev), cols.to(dev)
        batch = torch.arange(n, device=dev)
        if _is_channels_last(images):
            out = images.permute(0, 2, 3, 1)[batch[:, None, None, None], rows[None, :, :, None],
                                             cols[None, :, None, :]]             # (N, 10, s, s, C)
            return out.contiguous().permute(0, 1, 4, 2, 3)
        chan = torch.arange(c, device=dev)
        out = images[batch[:, None, None, None, None], chan[None, None, :, None, None],
                     rows[None, :, None, :, None], cols[None, :, None, None, :]]  # (N, 10, C, s, s)
        return out.contiguous()


def average_ten_crop(logits: torch.Tensor) -> torch.Tensor:
    """The paper's test prediction: the mean over the ten crops of softmax(logits).

    ``logits``: (N, 10, K), or (N * 10, K) image-major (the model's output on
    ``TenCrop(...)(images).flatten(0, 1)``, i.e. ``logits.view(N, 10, K)``). Returns (N, K)
    probabilities, computed and returned in float32 (float64 for float64 logits).
    """
    op = "average_ten_crop"
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{op}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"{op}: logits must have a floating point dtype, got {logits.dtype}")
    if logits.dim() == 3:
        if logits.shape[1] != 10:
            raise ValueError(f"{op}: logits of shape (N, 10, K) must have 10 crops in dim 1, got shape "
                             f"{tuple(logits.shape)}")
    elif logits.dim() == 2:
        if logits.shape[0] % 10:
            raise ValueError(f"{op}: logits of shape (N * 10, K) must have a multiple of 10 rows, got shape "
                             f"{tuple(logits.shape)}")
        logits = logits.reshape(logits.shape[0] // 10, 10, logits.shape[1])
    else:
        raise ValueError(f"{op}: logits must be (N, 10, K) or (N * 10, K), got {logits.dim()}-D with shape "
                         f"{tuple(logits.shape)}")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return F.softmax(logits, dim=-1, dtype=dtype).mean(dim=1)
