"""Image folders in the ImageNet layout (``root/<class>/<image>``), decoded with Pillow to uint8
(3, S, S) tensors the paper's way (shorter side to S, centre crop)."""
from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from fastalex._checks import check_index, check_int
from fastalex.transforms import resize_and_center_crop

#: File name endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

#: The most pixels (width x height, as the file's header declares them) an image may have. A larger one
#: is skipped as a decompression bomb (reason "bomb") after reading its header and before decoding a
#: pixel, so a loader's memory stays bounded: 89,478,485 is Pillow's own warning threshold (0.25 GiB
#: as RGB), applied here whatever ``PIL.Image.MAX_IMAGE_PIXELS`` is set to; Pillow's warning and error
#: (DecompressionBombWarning / Error) count as "bomb" too. ImageNet's largest photo has 12.5 million.
MAX_IMAGE_PIXELS = 89_478_485

#: Why ImageFolder skipped a file, as collate_uint8, the epoch line and metrics.csv count them:
#: over MAX_IMAGE_PIXELS; not decodable (truncated, not an image); zero bytes; could not be opened
#: (permissions, vanished, a dangling link); not a regular file (a directory named like an image, a FIFO).
SKIP_REASONS = ("bomb", "corrupt", "empty", "unreadable", "not_a_file")


class Skipped(Exception):
    """Why _load_image refused a file: `reason` (one of SKIP_REASONS) and the details."""

    def __init__(self, reason: str, why: str):
        super().__init__(f"{reason.replace('_', ' ')}: {why}")
        self.reason = reason


def _is_image_file(name: str) -> bool:
    # Hidden files are skipped too: macOS "._x.jpg" resource forks look like images but are not.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


class _Seen:
    """What one listing has reached: directories by (device, inode), files by real path."""

    def __init__(self, *folders: str):
        self.dirs: set[tuple[int, int]] = set()
        self.files: set[str] = set()
        for folder in folders:
            self.visit(folder)

    def visit(self, folder: str) -> bool:
        """Mark `folder` walked; False if it was already (or cannot be stat()ed)."""
        try:
            st = os.stat(folder)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.dirs:
            return False
        self.dirs.add(key)
        return True


def _image_files(folder: str, seen: _Seen | None = None) -> list[str]:
    """Image files under `folder`, recursively, sorted by relative path.

    Links are followed, but no directory is walked twice (`seen`, shared by the classes of one
    ImageFolder, knows them by device and inode): a link back into the tree, or a loop, is not
    followed again; and a file reached by several links is listed once (by real path). Entries named
    like images that are not files (a directory "x.jpg") are listed too, and skipped when read
    ("not_a_file"), so that they are counted rather than silently ignored.
    """
    seen = _Seen() if seen is None else seen
    seen.visit(folder)
    found, stack = [], [folder]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            warnings.warn(f"ImageFolder: cannot list {top} ({e.strerror or e}); its images are left out",
                          RuntimeWarning, stacklevel=3)
            continue
        real_top, subdirs = os.path.realpath(top), []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows a link
            except OSError:
                is_dir = False
            if is_dir and seen.visit(entry.path):
                subdirs.append(entry.path)
            if _is_image_file(entry.name):
                real = None if is_dir else (os.path.realpath(entry.path) if entry.is_symlink()
                                            else os.path.join(real_top, entry.name))
                found.append((entry.path[len(folder):].lstrip(os.sep), entry.path, real))  # sorted by relative path
        stack.extend(reversed(subdirs))  # depth first, in name order: the same walk on every run
    listed = []
    for _, path, real in sorted(found):
        if real is None or real not in seen.files:
            if real is not None:
                seen.files.add(real)
            listed.append(path)
    return listed


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


def _open_image(f):
    """The PIL image of the open file `f` (its header read, no pixel decoded yet), or Skipped."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(f)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise Skipped("bomb", str(e)) from None
        except Exception as e:  # noqa: BLE001 -- not an image Pillow can identify
            raise Skipped("corrupt", f"{type(e).__name__}: {e}") from None
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise Skipped("bomb", f"{width}x{height} = {width * height:,} pixels, over "
                              f"fastalex.data.folder.MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS:,}); not decoded")
    return im


def _load_image(path: str, size: int) -> torch.Tensor:
    """Decode `path` to RGB, shorter side to `size`, centre crop: uint8 (3, size, size). A file that is
    not a readable image within MAX_IMAGE_PIXELS raises Skipped (its reason, one of SKIP_REASONS)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise Skipped("unreadable", e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):  # a directory, a FIFO (whose open() would wait forever), a device
        raise Skipped("not_a_file", "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
    if st.st_size == 0:
        raise Skipped("empty", "0 bytes")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise Skipped("unreadable", e.strerror or str(e)) from None
    with f, _open_image(f) as im:
        try:
            # JPEG (a no-op for other formats): let libjpeg downscale by 1/2, 1/4 or 1/8 while decoding,
            # never below `size` on either side: big photos decode several times faster (a 2000x1500
            # one: 11 ms instead of 43), and the antialiased resize below does the rest.
            im.draft("RGB", (size, size))
            if im.mode.startswith("I;16"):
                # 16-bit greyscale (PNG, TIFF): converting clips at 255 (a white image); scale instead.
                im = im.point(lambda v: v / 256).convert("L")
            rgb = im.convert("RGB")  # also loads the pixels: greyscale, palette, RGBA, CMYK, ... all work
            array = np.array(rgb, dtype=np.uint8)  # a writable copy (np.asarray of a PIL image is read-only)
        except Exception as e:  # noqa: BLE001 -- truncated, damaged, unsupported: the decoder's failures
            raise Skipped("corrupt", f"{type(e).__name__}: {e}") from None
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise Skipped("corrupt", f"decoded to an unexpected array of shape {array.shape}")
    return resize_and_center_crop(torch.from_numpy(array).permute(2, 0, 1), size)


def _no_readable_image(files: list[str]) -> dict[str, int] | None:
    """None if one of `files` decodes (tried in order, stopping at the first that does), else the
    number of files skipped for each reason."""
    reasons: dict[str, int] = {}
    for path in files:
        try:
            _load_image(path, 8)  # JPEGs decode at 1/8 scale: a few ms even for a large photo
            return None
        except Skipped as e:
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
        except Exception:  # noqa: BLE001
            reasons["corrupt"] = reasons.get("corrupt", 0) + 1
    return reasons


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>`` as uint8 (3, S, S) tensors, the paper's way.

    Each image is decoded with Pillow, converted to RGB (greyscale, palette, RGBA, CMYK all work;
    EXIF orientation is ignored, as in the usual ImageNet pipelines), its shorter side rescaled to
    ``image_size`` and the central square cropped (:func:`fastalex.transforms.resize_and_center_crop`).
    On data prepared by :func:`prepare_image_folder` that is just a decode and a crop.

    An unreadable file does not raise: ``__getitem__`` returns ``(None, label, reason)`` with a warning
    naming it, reason one of :data:`SKIP_REASONS` (a decompression bomb over :data:`MAX_IMAGE_PIXELS`,
    refused before decoding; corrupt or truncated; empty; unreadable, e.g. permissions; not a file,
    e.g. a directory named like an image), and :func:`collate_uint8` leaves it out of the batch and
    counts it by reason. A training run should not die at hour 40 on one bad JPEG. A class folder
    with no readable image at all is an error, raised here: each class's files are tried in order
    until one decodes (one decode per class when the data is sound).

    Args:
        root: the folder holding one subfolder per class.
        image_size: S, the side of the returned square images (256 for the paper).
        classes: class (subfolder) names in label order. Default: every non-hidden subfolder, sorted.
            When given, each must exist under ``root``; other subfolders are ignored.

    Files are found recursively under each class folder (hidden files and folders skipped), by
    extension (:data:`IMAGE_EXTENSIONS`, any case), sorted by path. Links are followed, but no
    directory is walked twice (a link back into the tree, or a loop, is not followed again) and a
    file reached by several links is listed once.

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
        samples = _list_samples(root, classes)
        self.root = root
        self.image_size = image_size
        self.classes: list[str] = list(classes)
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"ImageFolder({self.root!r}, image_size={self.image_size}: {len(self.samples)} images, "
                f"{len(self.classes)} classes)")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[None, int, str]:
        path, label = self.samples[check_index("ImageFolder", index, len(self.samples))]
        try:
            return _load_image(path, self.image_size), label
        except Exception as e:  # noqa: BLE001 -- any failure to read one file means "skip this file"
            reason = e.reason if isinstance(e, Skipped) else "corrupt"
            detail = str(e) if isinstance(e, Skipped) else f"corrupt: {type(e).__name__}: {e}"
            warnings.warn(f"ImageFolder: skipping unreadable image {path} ({detail})", RuntimeWarning, stacklevel=2)
            return None, label, reason


def _list_samples(root: str, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) of every image of every class; raises when a class folder has no image file, or
    no readable image (one decode per class: the first file, in order, that decodes)."""
    seen = _Seen(root, *(os.path.join(root, name) for name in classes))  # a link to them is not followed
    samples: list[tuple[str, int]] = []
    empty, unreadable = [], []
    for label, name in enumerate(classes):
        files = _image_files(os.path.join(root, name), seen)
        if not files:
            empty.append(name)
        elif (reasons := _no_readable_image(files)) is not None:
            counts = ", ".join(f"{k} {r.replace('_', ' ')}" for r, k in reasons.items())
            unreadable.append(f"{os.path.join(root, name)} ({len(files)} file(s): {counts})")
        samples.extend((path, label) for path in files)
    if not samples:
        raise FileNotFoundError(f"ImageFolder: no image files in {root} (looked in {len(classes)} class "
                                f"folder(s) for {', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        shown = ", ".join(os.path.join(root, c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise FileNotFoundError(f"ImageFolder: {len(empty)} class folder(s) are empty (no image files): "
                                f"{shown}")
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        raise ValueError(f"ImageFolder: {len(unreadable)} class folder(s) have no readable image: {shown}")
    return samples


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
