"""SyntheticShapes: procedurally drawn shapes and textures, a download-free, learnable stand-in for
ImageNet (smoke tests, benchmarks, the CPU demo of `fastalex train`)."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from fastalex._checks import check_index, check_int

_MIN_SYNTHETIC_SIZE = 16

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of SplitMix64: a cheap bijective mixer with good avalanche."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _image_seed(seed: int, stream: int, index: int) -> int:
    # Hash (seed, split, index) into one 64-bit seed rather than adding them: nearby seeds of
    # neighbouring images or splits would otherwise share streams (seed 1 image 0 == seed 0 image 1).
    h = 0
    for v in (seed, stream, index):
        h = _splitmix64(h ^ (v & _MASK64))
    return h


def _luma(rgb: list[float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _contrasting_colours(u: list[float], contrast: float) -> tuple[list[float], list[float]]:
    """Two random RGB colours in [0, 1] whose luma differs by at least `contrast`, from 7 uniforms.

    The second colour is blended towards white or black just enough (blending is linear in luma, so
    the target is hit exactly and stays in gamut), and the pair is swapped at random: both colours
    then have the same distribution, so neither the foreground's nor the background's colour (nor
    their mean) says anything about the class.
    """
    a, b = u[0:3], u[3:6]
    la, lb = _luma(a), _luma(b)
    if abs(la - lb) < contrast:
        up = la + contrast <= 1.0 and (lb >= la or la - contrast < 0.0)
        target = la + contrast if up else la - contrast
        if up:  # b + t (1 - b): luma lb + t (1 - lb)
            t = (target - lb) / (1.0 - lb)
            b = [c + t * (1.0 - c) for c in b]
        else:  # b (1 - t): luma lb (1 - t)
            t = 1.0 - target / lb
            b = [c * (1.0 - t) for c in b]
    return (a, b) if u[6] < 0.5 else (b, a)


class SyntheticShapes(Dataset):
    """Procedural, learnable images of coloured shapes and textures: a download-free ImageNet stand-in.

    Image ``i`` shows a shape (circle, square, triangle, ...) or a texture (stripes, checkerboard,
    dots) in one random colour on a random background colour, with random position, size, rotation,
    period and phase, a faint lighting gradient and mild pixel noise. The label is ``i % num_classes``
    (balanced: every class has ``num_images // num_classes`` or one more images); the first
    ``num_classes`` names of :attr:`CLASSES` are used.

    Designed for the paper's training pipeline:

    * shapes lie inside the central region with a margin of ``image_size / 8``, so a random
      224 x 224 crop of a 256 image never cuts them; textures fill the whole image;
    * shape and texture are the only signal: the two colours are drawn independently of the class
      (with a minimum luma contrast so that colour noise cannot erase the shape), and every class is
      closed under horizontal flips;
    * deterministic: image ``i`` depends only on ``(seed, split, i)`` (its own ``torch.Generator``),
      not on worker count, access order or previous calls; ``"train"`` and ``"val"`` use different
      random streams;
    * fast: drawn with a few vectorised tensor ops on coordinate grids (well under 1 ms for a
      256 x 256 image on one core), so DataLoader workers can generate them on the fly.

    Args:
        num_images: dataset length (>= 1).
        image_size: S, the side of the square uint8 (3, S, S) images (>= 16; 256 for the paper).
        seed: selects the dataset; any int.
        split: ``"train"`` or ``"val"``.
        num_classes: 2..12.
    """

    CLASSES = ("circle", "square", "triangle", "ring", "cross", "star", "ellipse", "horizontal stripes",
               "vertical stripes", "diagonal stripes", "checkerboard", "dots")
    SPLITS = ("train", "val")

    # Drawing constants: intensities on a 0..1 scale, lengths as fractions of the image side.
    _CONTRAST = 0.3        # minimum luma difference between the two colours (luma in [0, 1])
    _NOISE_STD = 0.03      # per-pixel luminance noise
    _GRADIENT = 0.08       # largest lighting change across the image
    _MIN_RADIUS = 0.45     # shape circumradius, as a fraction of the central region's half-side
    _MAX_RADIUS = 0.9
    _MIN_PERIOD, _MAX_PERIOD = 1 / 16, 1 / 7   # texture period
    _MIN_PERIOD_PX = 5.0   # below this, textures alias into mush at small image sizes

    def __init__(self, num_images: int, image_size: int = 256, seed: int = 0, split: str = "train",
                 num_classes: int = 12):
        num_images = check_int("SyntheticShapes", "num_images", num_images, 1)
        image_size = check_int("SyntheticShapes", "image_size", image_size, _MIN_SYNTHETIC_SIZE,
                                hint=" (textures and shapes need some pixels; the paper uses 256)")
        seed = check_int("SyntheticShapes", "seed", seed, None)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or not 2 <= num_classes <= len(self.CLASSES):
            raise ValueError(f"SyntheticShapes: num_classes must be an int in 2..{len(self.CLASSES)}, "
                             f"got {num_classes!r}")
        if split not in self.SPLITS:
            raise ValueError(f"SyntheticShapes: unknown split {split!r}; choose from "
                             f"{', '.join(map(repr, self.SPLITS))}")
        self.num_images = num_images
        self.image_size = image_size
        self.seed = seed
        self.split = split
        self.num_classes = num_classes
        self.classes: list[str] = list(self.CLASSES[:num_classes])
        self._stream = self.SPLITS.index(split)
        # Pixel-centre coordinates, shaped to broadcast into (S, S) grids.
        coords = torch.arange(image_size, dtype=torch.float32) + 0.5
        self._x = coords.view(1, image_size)
        self._y = coords.view(image_size, 1)

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (f"SyntheticShapes(num_images={self.num_images}, image_size={self.image_size}, "
                f"seed={self.seed}, split={self.split!r}, num_classes={self.num_classes})")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label, mask, u, g = self._draw(check_index("SyntheticShapes", index, self.num_images))
        return self._render(mask, u, g), label

    def _draw(self, index: int) -> tuple[int, torch.Tensor, list[float], torch.Generator]:
        """Image `index`'s label, foreground mask (bool (S, S)), and what `_render` needs to colour it."""
        label = index % self.num_classes
        g = torch.Generator().manual_seed(_image_seed(self.seed, self._stream, index))
        # All scalar parameters from one call (one generator round trip, not dozens).
        u = torch.rand(24, generator=g, dtype=torch.float64).tolist()
        return label, self._mask(label, u[:12]), u[12:], g

    # The foreground mask of class `label` from 12 uniforms; bool (S, S).
    def _mask(self, label: int, u: list[float]) -> torch.Tensor:
        s = float(self.image_size)
        x, y = self._x, self._y
        name = self.CLASSES[label]
        if name in ("horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "dots"):
            period = max(self._MIN_PERIOD_PX, s * (self._MIN_PERIOD + (self._MAX_PERIOD - self._MIN_PERIOD) * u[0]))
            jitter = math.radians(10.0) * (2.0 * u[1] - 1.0)
            if name.endswith("stripes"):
                # Angle of the stripes' normal; diagonals come in both directions, so that a
                # horizontal flip (the paper's augmentation) maps the class onto itself.
                normal = {"horizontal stripes": math.pi / 2, "vertical stripes": 0.0,
                          "diagonal stripes": math.pi / 4 if u[2] < 0.5 else 3 * math.pi / 4}[name] + jitter
                duty = 0.4 + 0.2 * u[3]
                t = x * (math.cos(normal) / period) + y * (math.sin(normal) / period) + u[4]
                return t - t.floor() < duty
            theta = math.pi / 2 * u[2]  # a lattice is symmetric under quarter turns
            c, sn = math.cos(theta) / period, math.sin(theta) / period
            a = x * c + y * sn + u[3]
            b = y * c - x * sn + u[4]
            a = a - a.floor()
            b = b - b.floor()
            if name == "checkerboard":
                return (a < 0.5) ^ (b < 0.5)
            radius = 0.2 + 0.1 * u[5]  # dots, in periods
            return (a - 0.5).square_() + (b - 0.5).square_() <= radius * radius

        # A shape inside the central square [s/8, 7s/8]^2 (what every 224 crop of 256 keeps): its
        # circumradius r and centre keep its circumscribed circle in there.
        half = 3.0 * s / 8.0
        r = half * (self._MIN_RADIUS + (self._MAX_RADIUS - self._MIN_RADIUS) * u[0])
        cx = s / 2 + (half - r) * (2.0 * u[1] - 1.0)
        cy = s / 2 + (half - r) * (2.0 * u[2] - 1.0)
        dx, dy = x - cx, y - cy
        if name in ("circle", "ring"):
            d2 = dx.square() + dy.square()
            return d2 <= r * r if name == "circle" else (d2 <= r * r) & (d2 >= (0.6 * r) ** 2)
        theta = 2.0 * math.pi * u[3]
        if name in ("triangle", "star"):
            # Distances along the three edge normals of an equilateral triangle (inradius r / 2).
            # The star (hexagram) is that triangle united with its point reflection.
            p = [dx * math.cos(theta + k * 2 * math.pi / 3) + dy * math.sin(theta + k * 2 * math.pi / 3)
                 for k in range(3)]
            hi = torch.maximum(torch.maximum(p[0], p[1]), p[2])
            if name == "triangle":
                return hi <= r / 2
            lo = torch.minimum(torch.minimum(p[0], p[1]), p[2])
            return (hi <= r / 2) | (lo >= -r / 2)
        c, sn = math.cos(theta), math.sin(theta)
        pu = dx * c + dy * sn
        pv = dy * c - dx * sn
        if name == "ellipse":
            b = r * (0.35 + 0.2 * u[4])  # aspect 1.8..2.9: never mistaken for a circle
            return pu.square_().mul_(1 / (r * r)) + pv.square_().mul_(1 / (b * b)) <= 1.0
        pu, pv = pu.abs_(), pv.abs_()
        if name == "square":
            return torch.maximum(pu, pv) <= r / math.sqrt(2.0)
        if name == "cross":  # a plus sign of arm half-length L and half-width w, L^2 + w^2 = r^2
            arm = r / math.sqrt(1.0 + 0.3 ** 2)
            return (torch.maximum(pu, pv) <= arm) & (torch.minimum(pu, pv) <= 0.3 * arm)
        raise AssertionError(f"no drawing for class {name!r}")  # pragma: no cover

    # Colours, lighting gradient and noise around the mask -> uint8 (3, S, S), from 12 uniforms.
    def _render(self, mask: torch.Tensor, u: list[float], g: torch.Generator) -> torch.Tensor:
        s = self.image_size
        fg, bg = _contrasting_colours(u[:7], self._CONTRAST)
        fg_t = torch.tensor(fg, dtype=torch.float32).view(3, 1, 1) * 255.0
        bg_t = torch.tensor(bg, dtype=torch.float32).view(3, 1, 1) * 255.0
        # One luminance field shared by the channels (per-channel noise would triple the cost of the
        # dearest step, and colour variety already comes from the random colours and the GPU's PCA
        # lighting noise): a linear gradient of random direction and strength plus Gaussian noise,
        # in 0..255 units; the +0.5 makes the truncating uint8 cast round.
        angle = 2.0 * math.pi * u[7]
        slope = 255.0 * self._GRADIENT * u[8] / s
        shade = torch.randn(s, s, generator=g).mul_(255.0 * self._NOISE_STD)
        shade += (self._x - s / 2) * (slope * math.cos(angle)) + (self._y - s / 2) * (slope * math.sin(angle))
        shade += 0.5
        image = torch.addcmul(bg_t, mask.to(torch.float32), fg_t - bg_t)  # bg + mask * (fg - bg)
        image += shade
        return image.clamp_(0.0, 255.0).to(torch.uint8)
