"""Image folders in the ImageNet layout (``root/<class>/<image>``), decoded with Pillow to uint8
(3, S, S) tensors the paper's way (shorter side to S, centre crop)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from fastalex._checks import check_index, check_int
from fastalex.transforms import resize_and_center_crop

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


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
        image_size = check_int("ImageFolder", "image_size", image_size, 1)
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
        path, label = self.samples[check_index("ImageFolder", index, len(self.samples))]
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
