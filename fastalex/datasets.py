"""Data sources for `fastalex train` / `fastalex eval`: the paper's recipe on uint8 images.

Every dataset here returns ``(image, label)`` with ``image`` a uint8 tensor of shape (3, S, S)
(S = ``image_size``, 256 by default: the paper's rescaled-and-centre-cropped images) and ``label``
an int. The random 224 x 224 crops, flips and colour noise of the paper happen later, batched on the
GPU (:mod:`fastalex.transforms`): keeping the workers' output uint8 and full size makes them cheap
and the host-to-device copy four times smaller than float32.

* :class:`SyntheticShapes` -- procedurally drawn shapes and textures, no download needed: a
  learnable stand-in for ImageNet for smoke tests, benchmarks and CPU tests.
* :class:`ImageFolder` / :func:`image_folders` -- ``root/<class>/<image>`` trees (ImageNet layout).
* :func:`collate_uint8` -- the DataLoader ``collate_fn`` that drops unreadable images.
* :func:`prepare_image_folder` -- the paper's one-off preprocessing (shorter side to 256, centre
  crop) written out as JPEGs, so that training decodes small files.

    from torch.utils.data import DataLoader
    from fastalex.datasets import SyntheticShapes, collate_uint8, image_folders

    train, val = image_folders("/data/imagenet256")      # or SyntheticShapes(50_000)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=8,
                        collate_fn=collate_uint8, pin_memory=True)
    for images, labels, skipped in loader:                # uint8 (n, 3, 256, 256), int64 (n,), int
        ...
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "SyntheticShapes", "collate_uint8", "image_folders",
           "prepare_image_folder"]

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

_MIN_SYNTHETIC_SIZE = 16


# --------------------------------------------------------------------------------------------------
# SyntheticShapes
# --------------------------------------------------------------------------------------------------

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
        num_images = _check_int("num_images", num_images, 1)
        image_size = _check_int("image_size", image_size, _MIN_SYNTHETIC_SIZE,
                                hint=" (textures and shapes need some pixels; the paper uses 256)")
        seed = _check_int("seed", seed, None)
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
        label, mask, u, g = self._draw(_check_index(index, self.num_images, "SyntheticShapes"))
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


# --------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------


def _is_image_file(name: str) -> bool:
    # Hidden files are skipped too: macOS "._x.jpg" resource forks look like images but are not.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _image_files(folder: str) -> list[str]:
    """Image files under `folder` (recursively, following links), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(os.path.join(dirpath, f) for f in filenames if _is_image_file(f))
    return sorted(found, key=lambda p: os.path.relpath(p, folder))


def _check_root(root, who: str) -> str:
    root = os.fspath(root)
    if not os.path.exists(root):
        raise FileNotFoundError(f"{who}: {root} does not exist")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{who}: {root} is not a directory")
    return root


def _class_folders(root: str) -> list[str]:
    """Sorted names of the non-hidden subdirectories of `root`."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def _load_image(path: str, size: int) -> torch.Tensor:
    """Decode `path` to RGB, shorter side to `size`, centre crop: uint8 (3, size, size). Raises on a bad file."""
    from PIL import Image

    with Image.open(path) as im:
        # JPEG (a no-op for other formats): let libjpeg downscale by 1/2, 1/4 or 1/8 while decoding,
        # never below `size` on either side: big photos decode several times faster (a 2000x1500
        # one: 11 ms instead of 43), and the antialiased resize below does the rest.
        im.draft("RGB", (size, size))
        if im.mode.startswith("I;16"):
            # 16-bit greyscale (PNG, TIFF): converting clips at 255 (a white image); scale instead.
            im = im.point(lambda v: v / 256).convert("L")
        rgb = im.convert("RGB")  # also loads the pixels: greyscale, palette, RGBA, CMYK, ... all work
    array = np.array(rgb, dtype=np.uint8)  # a writable copy (np.asarray of a PIL image is read-only)
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise ValueError(f"decoded to an unexpected array of shape {array.shape}")
    from fastalex.transforms import resize_and_center_crop

    return resize_and_center_crop(torch.from_numpy(array).permute(2, 0, 1), size)


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>`` as uint8 (3, S, S) tensors, the paper's way.

    Each image is decoded with Pillow, converted to RGB (greyscale, palette, RGBA, CMYK all work;
    EXIF orientation is ignored, as in the usual ImageNet pipelines), its shorter side rescaled to
    ``image_size`` and the central square cropped (:func:`fastalex.transforms.resize_and_center_crop`).
    On data prepared by :func:`prepare_image_folder` that is just a decode and a crop.

    An unreadable file (corrupt, truncated, empty, not an image) does not raise: ``__getitem__``
    returns ``(None, label)`` with a warning naming it, and :func:`collate_uint8` leaves it out of the
    batch and counts it. A training run should not die at hour 40 on one bad JPEG.

    Args:
        root: the folder holding one subfolder per class.
        image_size: S, the side of the returned square images (256 for the paper).
        classes: class (subfolder) names in label order. Default: every non-hidden subfolder, sorted.
            When given, each must exist under ``root``; other subfolders are ignored.

    Files are found recursively under each class folder (hidden files and folders skipped), by
    extension (:data:`IMAGE_EXTENSIONS`, any case), sorted by path.

    Attributes:
        classes: the class names; label ``k`` is ``classes[k]``.
        samples: ``(path, label)`` for every image, grouped by class, sorted.
        root, image_size: as given.
    """

    def __init__(self, root, image_size: int = 256, classes: list[str] | None = None):
        image_size = _check_int("image_size", image_size, 1, who="ImageFolder")
        root = _check_root(root, "ImageFolder")
        if classes is None:
            classes = _class_folders(root)
            if not classes:
                loose = [f for f in os.listdir(root) if _is_image_file(f)]
                hint = (f"; it holds {len(loose)} image file(s) directly, but the labels come from the "
                        f"folders: expected {root}/<class>/<image>") if loose else \
                    f" (expected {root}/<class>/<image>)"
                raise FileNotFoundError(f"ImageFolder: no class subfolders in {root}{hint}")
        else:
            if isinstance(classes, str):
                raise TypeError("ImageFolder: classes must be a list of folder names, not a string")
            classes = list(classes)
            if not classes:
                raise ValueError("ImageFolder: classes is empty; pass None to use every subfolder of root")
            repeated = sorted({c for c in classes if classes.count(c) > 1})
            if repeated:
                raise ValueError(f"ImageFolder: classes lists {', '.join(map(repr, repeated))} more than once")
            missing = [c for c in classes if not os.path.isdir(os.path.join(root, c))]
            if missing:
                raise FileNotFoundError(f"ImageFolder: no folder for class(es) {', '.join(map(repr, missing))} "
                                        f"in {root}")
        samples: list[tuple[str, int]] = []
        empty = []
        for label, name in enumerate(classes):
            files = _image_files(os.path.join(root, name))
            if not files:
                empty.append(name)
            samples.extend((path, label) for path in files)
        if not samples:
            raise FileNotFoundError(f"ImageFolder: no image files in {root} (looked in {len(classes)} class "
                                    f"folder(s) for {', '.join(IMAGE_EXTENSIONS)})")
        if empty:
            shown = ", ".join(os.path.join(root, c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
            raise FileNotFoundError(f"ImageFolder: {len(empty)} class folder(s) are empty (no image files): "
                                    f"{shown}")
        self.root = root
        self.image_size = image_size
        self.classes: list[str] = list(classes)
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"ImageFolder({self.root!r}, image_size={self.image_size}: {len(self.samples)} images, "
                f"{len(self.classes)} classes)")

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int]:
        path, label = self.samples[_check_index(index, len(self.samples), "ImageFolder")]
        try:
            return _load_image(path, self.image_size), label
        except Exception as e:  # noqa: BLE001 -- any decoder failure means "skip this file"
            warnings.warn(f"ImageFolder: skipping unreadable image {path}: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)
            return None, label


def image_folders(data_dir, image_size: int = 256) -> tuple[ImageFolder, ImageFolder]:
    """The ``(train, val)`` datasets of ``data_dir/train/<class>/...`` and ``data_dir/val/<class>/...``.

    Both must have exactly the same class folders; val uses train's label order.
    """
    data_dir = _check_root(data_dir, "image_folders")
    train_dir, val_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, "val")
    for d in (train_dir, val_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"image_folders: {d} is missing (expected {data_dir}/train/<class>/<image> "
                                    f"and {data_dir}/val/<class>/<image>)")
    train = ImageFolder(train_dir, image_size)
    val_classes = _class_folders(val_dir)
    if val_classes != train.classes:
        only_train = sorted(set(train.classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train.classes))
        raise ValueError(f"image_folders: the class folders of {train_dir} and {val_dir} differ: "
                         f"only in train: {_names(only_train)}; only in val: {_names(only_val)}")
    return train, ImageFolder(val_dir, image_size, classes=train.classes)


def _names(names: list[str], limit: int = 10) -> str:
    if not names:
        return "none"
    return ", ".join(map(repr, names[:limit])) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


def collate_uint8(samples) -> tuple[torch.Tensor, torch.Tensor, int]:
    """DataLoader ``collate_fn``: ``(images, labels, skipped)`` from ``(image or None, label)`` pairs.

    ``images`` is the uint8 (n, 3, S, S) stack of the images that are not None, ``labels`` their
    int64 (n,) labels, ``skipped`` the number of Nones (unreadable files). When no image is valid
    (or `samples` is empty) the batch is ``torch.empty(0, 3, 0, 0, dtype=torch.uint8)`` -- the size
    is unknown -- with empty labels: check ``images.shape[0]`` (or ``labels.numel()``) before use.

    A module-level function, so it pickles into worker processes; in a worker the stack is written
    straight into shared memory (as by torch's default collate), and ``pin_memory=True`` pins both
    tensors (the int passes through).
    """
    images, labels = [], []
    for image, label in samples:
        if image is not None:
            images.append(image)
            labels.append(int(label))
    skipped = len(samples) - len(images)
    if not images:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped
    first = images[0]
    for image in images:
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.shape != first.shape:
            raise ValueError(f"collate_uint8: images must be uint8 tensors of one shape; got "
                             f"{_describe(first)} and {_describe(image)}")
    # default_collate stacks into shared memory when called in a worker: one copy fewer per batch.
    return default_collate(images), torch.tensor(labels, dtype=torch.int64), skipped


def _describe(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


# --------------------------------------------------------------------------------------------------
# One-off preprocessing
# --------------------------------------------------------------------------------------------------


def _prepare_one(job: tuple[str, str, int, int]) -> str | None:
    """Convert one image; the source path if it was unreadable, else None. Module level: picklable."""
    from PIL import Image

    src, dst, size, quality = job
    try:
        image = _load_image(src, size)
    except Exception:  # noqa: BLE001 -- counted and reported by the caller
        return src
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # Write then rename: an interrupted run leaves no truncated JPEG under a final name.
    tmp = f"{dst}.{os.getpid()}.tmp"
    try:
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp, "JPEG", quality=quality)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return None


def prepare_image_folder(src, dst, size: int = 256, quality: int = 95, progress: bool = True, *,
                         num_workers: int = 0) -> dict:
    """The paper's preprocessing, done once: every image under `src` rescaled and cropped to size x size.

    Walks `src` recursively (``src/train`` and ``src/val``, or a single ``src/<class>/`` tree:
    whatever is there is mirrored), resizes each image's shorter side to `size`, crops the central
    square and writes it as a JPEG of the given `quality` to the same relative path under `dst` with
    a ``.jpg`` extension (``a.png`` -> ``a.jpg``; should two sources of one folder share a stem, the
    later keeps its full name: ``a.png.jpg``). Existing files in `dst` are overwritten. Unreadable
    images are skipped and listed. Training then decodes small JPEGs of known size (about 4x fewer
    pixels than ImageNet's originals), which is what lets a few CPU cores feed a GPU.

    Args:
        src: the folder to convert. dst: where to write; must not be `src` or inside it.
        size: output side (256 in the paper). quality: JPEG quality, 1..100.
        progress: show a tqdm progress bar.
        num_workers: processes to use (0: this one). Decoding dominates, so this scales with cores.

    Returns:
        ``{"written": n, "skipped": m, "skipped_files": [source paths of the unreadable images]}``.
    """
    size = _check_int("size", size, 1, who="prepare_image_folder")
    num_workers = _check_int("num_workers", num_workers, 0, who="prepare_image_folder")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"prepare_image_folder: quality must be an int in 1..100, got {quality!r}")
    src = _check_root(src, "prepare_image_folder")
    src_path, dst_path = Path(src).resolve(), Path(dst).resolve()
    if dst_path == src_path or src_path in dst_path.parents:
        raise ValueError(f"prepare_image_folder: dst {dst} is {'src' if dst_path == src_path else 'inside src'} "
                         f"({src}); choose a folder outside it (the sources are read, never overwritten)")
    if dst_path.exists() and not dst_path.is_dir():
        raise NotADirectoryError(f"prepare_image_folder: dst {dst} exists and is not a directory")
    files = _image_files(src)
    if not files:
        raise FileNotFoundError(f"prepare_image_folder: no image files under {src} "
                                f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    jobs, taken = [], set()
    for path in files:
        rel = os.path.relpath(path, src)
        out = os.path.splitext(rel)[0] + ".jpg"
        # a.jpg and a.png in one folder: keep both. (Compared lower-case, for case-blind file systems.)
        if out.lower() in taken:
            out = rel + ".jpg"
        n = 1
        while out.lower() in taken:
            out, n = f"{rel}.{n}.jpg", n + 1
        taken.add(out.lower())
        out = dst_path / out
        if dst_path in src_path.parents and src_path in out.resolve().parents:
            # dst above src (allowed: src = data/raw, dst = data), but this output would land in src.
            raise ValueError(f"prepare_image_folder: {path} would be written to {out}, inside src ({src}); "
                             f"choose a dst that does not contain src")
        jobs.append((path, os.fspath(out), size, quality))

    if num_workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        # One torch thread per process: the processes are the parallelism, and a forked child must
        # not enter the OpenMP pool it inherited from a parent that used it (it would hang).
        pool = ProcessPoolExecutor(num_workers, initializer=torch.set_num_threads, initargs=(1,))
        results = pool.map(_prepare_one, jobs, chunksize=max(1, min(64, len(jobs) // (8 * num_workers))))
    else:
        pool, results = None, map(_prepare_one, jobs)
    try:
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc="prepare_image_folder", unit="img")
        skipped_files = [s for s in results if s is not None]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return {"written": len(jobs) - len(skipped_files), "skipped": len(skipped_files),
            "skipped_files": skipped_files}


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int | None, hint: str = "", who: str = "SyntheticShapes") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{who}: {name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def _check_index(index, length: int, who: str) -> int:
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{who}: index must be an int, got {type(index).__name__}")
    index = int(index)
    if not -length <= index < length:
        raise IndexError(f"{who}: index {index} out of range for {length} images")
    return index + length if index < 0 else index
