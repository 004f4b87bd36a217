"""The paper's data augmentation as batched tensor transforms (GPU or CPU, uint8 or float).

Krizhevsky, Sutskever & Hinton (2012), sections 2 and 4.1:

* training: random 224 x 224 crops of the 256 x 256 images and their horizontal reflections
  (:class:`RandomCropFlip`), plus "fancy PCA" colour noise along the principal components of the
  RGB pixel values (:class:`PCALighting`, :func:`compute_pca_lighting`);
* test: the four corner and the centre crops and their reflections, predictions averaged over the
  ten (:class:`TenCrop`, :func:`average_ten_crop`);
* preprocessing: rescale to 256 on the shorter side and centre-crop (:func:`resize_and_center_crop`),
  subtract the mean image of the training set (:func:`compute_mean_image`, :class:`Normalize`).

Every transform takes a whole batch (N, C, H, W) on any device and runs as a few batched kernels: no
loop over images in Python and no host synchronisation, so they can sit in a GPU input pipeline.
Random transforms split into ``sample`` (draw the parameters from a :class:`torch.Generator`) and
``apply`` (use them), so a run is reproducible from a seed and the same draws can be replayed.

Convention: a float image is in [0, 1]; uint8 is converted by / 255 wherever a transform must produce
float. The PCA constants below are on that scale.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from fastalex.functional import _check_finite, _check_int

__all__ = [
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC", "IMAGENET_MEAN", "IMAGENET_STD",
    "CropFlipParams", "RandomCropFlip", "TenCrop", "average_ten_crop",
    "PCALighting", "compute_pca_lighting", "compute_mean_image", "Normalize", "resize_and_center_crop",
]

# fb.resnet.torch's lighting constants (datasets/imagenet.lua), the customary defaults: eigenvalues,
# descending, and the eigenvectors as the COLUMNS of IMAGENET_EIGVEC. See compute_pca_lighting for how
# (not) to read them as ImageNet's covariance.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# The per-channel mean and standard deviation of ImageNet's training set in [0, 1] (torchvision's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------------------
# Argument checks (messages name the transform and the bad value, as fastalex.functional does).

def _check_generator(op: str, generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_images(op: str, images, *, numeric: bool = False) -> None:
    """images must be an (N, C, H, W) tensor; `numeric`: of dtype uint8 or floating point."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{op}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{op}: images must be a 4-D (N, C, H, W) batch, got {images.dim()}-D with shape "
                         f"{tuple(images.shape)}")
    if numeric and images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{op}: images must be uint8 (0..255) or floating point (0..1), got {images.dtype}")


def _check_fits(op: str, size: int, height: int, width: int) -> None:
    if height < size or width < size:
        raise ValueError(f"{op}: images of {height}x{width} are smaller than the crop size {size}; "
                         f"resize them first (e.g. resize_and_center_crop)")


def _to_vector(op: str, name: str, v, length: int | None = None) -> torch.Tensor:
    """A 1-D sequence/tensor of finite reals as a float64 CPU tensor (optionally of a given length)."""
    try:
        t = torch.as_tensor(v, dtype=torch.float64, device="cpu") if not isinstance(v, torch.Tensor) else \
            v.detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{op}: {name} must be a sequence of numbers, got {v!r}") from None
    if t.dim() != 1 or (length is not None and t.numel() != length):
        want = f"{length} values" if length is not None else "a 1-D sequence"
        raise ValueError(f"{op}: {name} must be {want}, got shape {tuple(t.shape)}: {v!r}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{op}: {name} must be finite, got {v!r}")
    return t


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    # torch draws on the generator's own device; without one, on the default generator of `device`.
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _float_dtype(images: torch.Tensor) -> torch.dtype:
    """The dtype a transform producing floats returns: float32 for uint8, the input's otherwise."""
    return torch.float32 if images.dtype == torch.uint8 else images.dtype


def _compute_dtype(images: torch.Tensor) -> torch.dtype:
    """Arithmetic in float32 at least (fp16/bf16 are computed in float32 and rounded once at the end)."""
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def _is_channels_last(images: torch.Tensor) -> bool:
    # A tensor that is both (C == 1, or 1 x 1 images) is treated as NCHW.
    return images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()


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
        self.size = _check_int(op, "size", size, 1)
        p_flip = _check_finite(op, "p_flip", p_flip)
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
        n = _check_int(op, "n", n, 0)
        height = _check_int(op, "height", height, 1)
        width = _check_int(op, "width", width, 1)
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
        self.size = _check_int("TenCrop", "size", size, 1)

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


# ---------------------------------------------------------------------------------------------------
# PCA colour augmentation ("fancy PCA").

class PCALighting:
    """The paper's colour augmentation: add multiples of the principal components of the RGB values.

    For each image, alpha ~ N(0, alphastd) (three values) and every pixel gets
    ``rgb = eigvec @ (alpha * eigval)``, i.e. rgb_i = sum_j eigvec[i, j] * alpha[j] * eigval[j], as
    fb.resnet.torch's Lighting (the paper's [p1, p2, p3][a1 l1, a2 l2, a3 l3]^T). ``eigval`` are the
    eigenvalues and the columns of ``eigvec`` the eigenvectors of the 3 x 3 covariance of RGB values
    in [0, 1] (:func:`compute_pca_lighting`); the defaults are fb.resnet.torch's constants.

    ``images`` (N, 3, H, W): uint8 gives float32 ``images / 255 + rgb``; a float input keeps its dtype
    (fp16/bf16 computed in float32, rounded once). Not clamped to [0, 1] (neither the paper nor
    fb.resnet.torch clamps). ``alphastd=0`` adds nothing.
    """

    def __init__(self, alphastd: float = 0.1, eigval: Sequence[float] | torch.Tensor = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] | torch.Tensor = IMAGENET_EIGVEC) -> None:
        op = "PCALighting"
        alphastd = _check_finite(op, "alphastd", alphastd)
        if alphastd < 0:
            raise ValueError(f"{op}: alphastd must be >= 0, got {alphastd}")
        self.alphastd = alphastd
        val = _to_vector(op, "eigval", eigval, 3)
        try:
            vec = torch.as_tensor(eigvec, dtype=torch.float64, device="cpu") if not isinstance(eigvec, torch.Tensor) \
                else eigvec.detach().to("cpu", torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{op}: eigvec must be a 3 x 3 matrix of numbers, got {eigvec!r}") from None
        if tuple(vec.shape) != (3, 3):
            raise ValueError(f"{op}: eigvec must be a 3 x 3 matrix (eigenvectors as columns), got shape "
                             f"{tuple(vec.shape)}")
        if not torch.isfinite(vec).all():
            raise ValueError(f"{op}: eigvec must be finite, got {eigvec!r}")
        self._eigval64, self._eigvec64 = val, vec
        self.eigval, self.eigvec = val.float(), vec.float()
        # rgb = alpha @ proj.T with proj[i, j] = eigvec[i, j] * eigval[j]; one copy per device, so that
        # a call moves nothing from the host.
        self._proj = {}

    def __repr__(self) -> str:
        return (f"PCALighting(alphastd={self.alphastd}, eigval={tuple(self._eigval64.tolist())}, "
                f"eigvec={tuple(tuple(r) for r in self._eigvec64.tolist())})")

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Draw alpha (n, 3) float32 ~ N(0, alphastd) on the generator's device (``generator=None``:
        torch's default generator for ``device``, default cpu); moved to ``device`` if one is given."""
        op = "PCALighting"
        n = _check_int(op, "n", n, 0)
        _check_generator(op, generator)
        alpha = torch.randn(n, 3, generator=generator, device=_draw_device(generator, device),
                            dtype=torch.float32) * self.alphastd
        return alpha.to(device) if device is not None else alpha

    def apply(self, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Add ``eigvec @ (alpha[i] * eigval)`` to every pixel of image i (``alpha``: (N, 3))."""
        op = "PCALighting"
        _check_images(op, images, numeric=True)
        n, c = images.shape[:2]
        if c != 3:
            raise ValueError(f"{op}: images must have 3 (RGB) channels, got {c} in shape {tuple(images.shape)}")
        if not isinstance(alpha, torch.Tensor):
            raise TypeError(f"{op}: alpha must be a torch.Tensor, got {type(alpha).__name__}")
        if tuple(alpha.shape) != (n, 3):
            raise ValueError(f"{op}: alpha must have shape ({n}, 3) for a batch of {n} images, got "
                             f"{tuple(alpha.shape)}")
        dev, dtype = images.device, _compute_dtype(images)
        proj = self._proj.get(dev)
        if proj is None:
            proj = self._proj[dev] = (self._eigvec64 * self._eigval64).to(dev, torch.float32)
        rgb = (alpha.to(dev, torch.float32) @ proj.T).to(dtype)[:, :, None, None]  # (N, 3, 1, 1)
        x = images.div(255) if images.dtype == torch.uint8 else images
        # fp16/bf16 + the float32 offset promotes to float32: one rounding back at the end.
        return torch.add(x, rgb).to(_float_dtype(images))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``apply(images, sample(N, generator))``, drawn on the generator's (else the images') device."""
        op = "PCALighting"
        _check_images(op, images, numeric=True)
        _check_generator(op, generator)
        device = generator.device if generator is not None else images.device
        return self.apply(images, self.sample(images.shape[0], generator=generator, device=device))


def _pixel_batches(op: str, batches: Iterable[torch.Tensor]):
    """Each batch of `batches` checked, with its scale to [0, 1]."""
    for i, b in enumerate(batches):
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"{op}: batch {i} must be a torch.Tensor, got {type(b).__name__}")
        if b.dim() != 4:
            raise ValueError(f"{op}: batch {i} must be 4-D (N, C, H, W), got {b.dim()}-D with shape {tuple(b.shape)}")
        if b.dtype != torch.uint8 and not b.is_floating_point():
            raise TypeError(f"{op}: batch {i} must be uint8 (0..255) or floating point (0..1), got {b.dtype}")
        yield i, b, (1.0 / 255.0 if b.dtype == torch.uint8 else 1.0)


def compute_pca_lighting(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's PCA of the RGB pixel values, for :class:`PCALighting`.

    ``batches``: an iterable of (N, 3, H, W) tensors (uint8 scaled by 1 / 255, or float in [0, 1]),
    e.g. a pass over the training set; the batches may differ in N, H and W. Computes the 3 x 3
    covariance of the RGB values of all pixels of all images (normalised by the pixel count minus one,
    as torch.cov), streaming: each batch is reduced in float64 and merged into the running mean and
    co-moment (Chan et al.'s pairwise update, stable over billions of pixels).

    Returns ``(eigval, eigvec)``, float32 on the CPU: the eigenvalues (3,) in descending order (the
    paper's lambda_i) and the eigenvectors as the COLUMNS of eigvec (3, 3). Sign convention: each
    eigenvector is oriented so that its largest-magnitude component is positive (the sign is
    arbitrary, and immaterial to PCALighting, whose alpha is symmetric about 0).

    Note on the customary constants: fb.resnet.torch's IMAGENET_EIGVAL (0.2175, 0.0188, 0.0045) are not
    the eigenvalues of ImageNet's RGB covariance on this [0, 1] scale. Their sum, 0.24, would be the
    total per-pixel variance, while ImageNet's is about 0.153 (the sum of IMAGENET_STD squared). They
    are used here as the widely copied defaults, not recomputed; run this function on your own data
    for the paper's values.
    """
    op = "compute_pca_lighting"
    count, mean, comoment, device = 0, None, None, None
    seen = False
    for i, b, scale in _pixel_batches(op, batches):
        seen = True
        if b.shape[1] != 3:
            raise ValueError(f"{op}: batch {i} must have 3 (RGB) channels, got {b.shape[1]} in shape {tuple(b.shape)}")
        m = b.shape[0] * b.shape[2] * b.shape[3]
        if m == 0:
            continue
        x = b.transpose(0, 1).reshape(3, m).to(torch.float64)
        if scale != 1.0:
            x = x * scale
        b_mean = x.mean(dim=1)
        xc = x - b_mean[:, None]
        b_comoment = xc @ xc.T
        if mean is None:
            count, mean, comoment, device = m, b_mean, b_comoment, b_mean.device
            continue
        b_mean, b_comoment = b_mean.to(device), b_comoment.to(device)
        total = count + m
        delta = b_mean - mean
        mean = mean + delta * (m / total)
        comoment = comoment + b_comoment + torch.outer(delta, delta) * (count * m / total)
        count = total
    if not seen:
        raise ValueError(f"{op}: batches is empty; need at least one (N, 3, H, W) batch")
    if count < 2:
        raise ValueError(f"{op}: need at least 2 pixels for a covariance, got {count}")
    cov = (comoment / (count - 1)).cpu()
    eigval, eigvec = torch.linalg.eigh(cov)               # ascending
    eigval, eigvec = eigval.flip(0), eigvec.flip(1)       # descending, columns kept as eigenvectors
    eigval = eigval.clamp_min(0)                          # a PSD matrix; drop rounding's -1e-18
    peak = eigvec.gather(0, eigvec.abs().argmax(dim=0, keepdim=True))  # (1, 3) largest-|.| component
    eigvec = eigvec * torch.where(peak < 0, -1.0, 1.0)
    return eigval.float(), eigvec.float()


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
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"resize_and_center_crop: size must be a positive int, got {size!r}")
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
