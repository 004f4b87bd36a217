"""The paper's "fancy PCA" colour noise along the principal components of the RGB pixel values."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from fastalex._checks import check_finite, check_int
from fastalex.transforms._common import (_check_generator, _check_images, _compute_dtype, _draw_device, _float_dtype,
                                         _pixel_batches, _to_vector)

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
        alphastd = check_finite(op, "alphastd", alphastd, minimum=0)
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
        n = check_int(op, "n", n, 0)
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
