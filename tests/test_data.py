"""fastalex.data: SyntheticShapes, ImageFolder, image_folders, collate_uint8, prepare_image_folder (CPU)."""
import os
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fastalex import data
from fastalex.data import (ImageFolder, SyntheticShapes, collate_uint8, image_folders,
                               prepare_image_folder)

# ------------------------------------------------------------------------------------------------
# SyntheticShapes
# ------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "ring", "cross", "star", "ellipse")
TEXTURES = ("horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "dots")


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_synthetic_shapes_shape_dtype_label(size):
    ds = SyntheticShapes(30, image_size=size)
    assert len(ds) == 30
    for i in (0, 7, 29, -1):
        image, label = ds[i]
        assert image.shape == (3, size, size) and image.dtype == torch.uint8
        assert type(label) is int and 0 <= label < 12
    assert ds[-1][1] == ds[29][1]
    with pytest.raises(IndexError, match="index 30 out of range for 30 images"):
        ds[30]


def test_synthetic_shapes_classes():
    ds = SyntheticShapes(10)
    assert ds.classes == list(SHAPES + TEXTURES) and len(set(ds.classes)) == 12
    assert SyntheticShapes(10, num_classes=5).classes == list(SHAPES[:5])
    assert SyntheticShapes(10, num_classes=2).classes == ["circle", "square"]


def test_synthetic_shapes_deterministic():
    a = SyntheticShapes(50, image_size=64, seed=3)
    b = SyntheticShapes(50, image_size=64, seed=3)
    for i in (49, 0, 17, 3):  # any order, separate objects: image i depends on (seed, split, i) only
        assert torch.equal(a[i][0], b[i][0])
    assert torch.equal(a[5][0], a[5][0])
    val = SyntheticShapes(50, image_size=64, seed=3, split="val")
    other = SyntheticShapes(50, image_size=64, seed=4)
    for i in range(12):
        assert val[i][1] == a[i][1]
        assert not torch.equal(val[i][0], a[i][0])
        assert not torch.equal(other[i][0], a[i][0])
    # Neighbouring (seed, index) pairs must not share a stream.
    assert not torch.equal(SyntheticShapes(50, 64, seed=1)[0][0], SyntheticShapes(50, 64, seed=0)[1][0])
    # The images are not copies of one another within a split either.
    assert not torch.equal(a[0][0], a[12][0])


def test_synthetic_shapes_balanced_labels():
    for n, k in ((120, 12), (100, 12), (7, 2), (50, 5)):
        counts = torch.bincount(torch.tensor([SyntheticShapes(n, 16, num_classes=k)[i][1] for i in range(n)]),
                                minlength=k)
        assert counts.numel() == k and counts.max() - counts.min() <= 1, (n, k, counts)


def test_synthetic_shapes_geometry():
    """Shapes stay inside the central region (margin S/8: a 224 crop of 256 keeps them whole) and are
    big enough to see; textures cover the whole image with both colours."""
    size = 64
    ds = SyntheticShapes(12 * 20, image_size=size)
    m = size // 8
    for i in range(len(ds)):
        label, mask, _, _ = ds._draw(i)
        assert mask.shape == (size, size) and mask.dtype == torch.bool
        name = ds.classes[label]
        if name in SHAPES:
            inner = mask[m:size - m, m:size - m]
            assert inner.sum() == mask.sum(), f"{name} (image {i}) leaves the central region"
            assert mask.float().mean() > 0.02, f"{name} (image {i}) is too small"
        else:
            crop = mask[m:size - m, m:size - m].float().mean()  # what any random crop sees, at least
            assert 0.1 < mask.float().mean() < 0.9 and 0.08 < crop < 0.92, (name, i)


def test_synthetic_shapes_colour_does_not_predict_class():
    """Per-class mean images are flat and alike (colours are independent of the class), while the
    foreground masks differ: shape, not colour, is the signal."""
    ds = SyntheticShapes(12 * 40, image_size=32, seed=5)
    images = torch.stack([ds[i][0] for i in range(len(ds))]).float()
    labels = torch.tensor([ds[i][1] for i in range(len(ds))])
    colour = images.mean((2, 3))  # (n, 3) mean colour per image
    centroids = torch.stack([colour[labels == k].mean(0) for k in range(12)])
    # Nearest class centroid by mean colour, on held-out images: about chance (1/12).
    val = SyntheticShapes(12 * 20, image_size=32, seed=5, split="val")
    vcolour = torch.stack([val[i][0] for i in range(len(val))]).float().mean((2, 3))
    vlabels = torch.tensor([val[i][1] for i in range(len(val))])
    accuracy = (torch.cdist(vcolour, centroids).argmin(1) == vlabels).float().mean()
    assert accuracy < 0.2, f"mean colour predicts the class ({accuracy:.2f} vs chance 0.08)"
    # The two colours always contrast (luma 0.3 apart): the shape survives colour noise.
    for i in range(24):
        image, _ = ds[i]
        _, mask, _, _ = ds._draw(i)
        luma = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * image.float()).sum(0)
        assert abs(luma[mask].mean() - luma[~mask].mean()) > 0.25 * 255
    # Mean foreground masks are pairwise different.
    masks = torch.stack([ds._draw(i)[1] for i in range(len(ds))]).float()
    mean_masks = torch.stack([masks[labels == k].mean(0) for k in range(12)]).flatten(1)
    d = torch.cdist(mean_masks, mean_masks) + torch.eye(12) * 1e9
    assert d.min() > 0.5


def test_synthetic_shapes_learnable():
    """A tiny CNN learns all 12 classes from 32x32 images in 300 SGD steps (held-out accuracy)."""
    torch.manual_seed(0)
    train = SyntheticShapes(1200, image_size=32, seed=1)
    val = SyntheticShapes(240, image_size=32, seed=1, split="val")
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.tensor([train[i][1] for i in range(len(train))])
    xv = torch.stack([val[i][0] for i in range(len(val))])
    yv = torch.tensor([val[i][1] for i in range(len(val))])

    def prep(images):  # per-image standardisation: what little colour cue there is goes away too
        images = images.float()
        return (images - images.mean((1, 2, 3), keepdim=True)) / (images.std((1, 2, 3), keepdim=True) + 1)

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(64, 12))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for step in range(300):
        idx = torch.randint(0, len(x), (64,))
        i, j = torch.randint(0, 5, (2,)).tolist()  # random 28x28 crops and flips, as in the paper
        batch = x[idx, :, i:i + 28, j:j + 28]
        if step % 2:
            batch = batch.flip(3)
        loss = torch.nn.functional.cross_entropy(net(prep(batch)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        predicted = net(prep(xv[:, :, 2:30, 2:30])).argmax(1)
    accuracy = (predicted == yv).float().mean()
    assert accuracy > 0.6, f"held-out accuracy {accuracy:.2f} after 300 steps (chance 0.08)"


def test_synthetic_shapes_errors():
    with pytest.raises(ValueError, match="num_images must be >= 1, got 0"):
        SyntheticShapes(0)
    with pytest.raises(ValueError, match="image_size must be >= 16, got 8"):
        SyntheticShapes(10, image_size=8)
    for k in (1, 13, 0):
        with pytest.raises(ValueError, match=re.escape(f"num_classes must be an int in 2..12, got {k}")):
            SyntheticShapes(10, num_classes=k)
    with pytest.raises(ValueError, match="unknown split 'test'; choose from 'train', 'val'"):
        SyntheticShapes(10, split="test")
    with pytest.raises(TypeError, match="num_images must be an int, got float"):
        SyntheticShapes(10.0)
    with pytest.raises(TypeError, match="index must be an int"):
        SyntheticShapes(10)["0"]
    assert SyntheticShapes(np.int64(3), np.int64(16)).image_size == 16  # numpy ints are ints


def test_synthetic_shapes_in_dataloader_workers():
    ds = SyntheticShapes(20, image_size=32)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate_uint8)
    images, labels, skipped = zip(*loader)
    assert sum(map(len, labels)) == 20 and all(s == {} for s in skipped)
    assert torch.equal(torch.cat(images), torch.stack([ds[i][0] for i in range(20)]))
    assert torch.cat(labels).tolist() == [i % 12 for i in range(20)]


# ------------------------------------------------------------------------------------------------
# ImageFolder
# ------------------------------------------------------------------------------------------------


def _write(path, mode="RGB", size=(40, 30), colour=None, fmt=None, array=None):
    """A small image file: solid `colour`, or noise, in PIL `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is not None:
        image = Image.fromarray(array)
    elif colour is not None:
        image = Image.new(mode, size, colour)
    else:
        rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    image.save(path, format=fmt)
    return path


def _jpeg_bytes(size=(64, 48)):
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _corrupt(root):
    """Three unreadable 'images' in root/bad: random bytes, a truncated JPEG, an empty file."""
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "noise.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (bad / "truncated.jpg").write_bytes(_jpeg_bytes()[:200])
    (bad / "zero.png").write_bytes(b"")
    return [str(bad / n) for n in ("noise.jpg", "truncated.jpg", "zero.png")]


def test_image_folder_formats_and_modes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "rgb.png", "RGB", (40, 30), (10, 200, 30))
    _write(a / "grey.png", "L", (30, 50), 100)
    _write(a / "rgba.png", "RGBA", (33, 33), (1, 2, 3, 0))
    _write(a / "palette.bmp", "P", (20, 60))
    _write(a / "photo.JPEG", "RGB", (500, 375))
    _write(b / "cmyk.jpg", "CMYK", (64, 32))
    _write(b / "x.webp", "RGB", (24, 40))
    _write(b / "y.tif", "RGB", (40, 24))
    _write(b / "z.ppm", "RGB", (17, 19))
    _write(b / "w.pgm", "L", (19, 17))
    _write(b / "deep" / "nested.jpg", "RGB", (50, 50))
    _write(b / "grey16.png", array=np.full((20, 30), 32768, dtype=np.uint16))
    (b / "notes.txt").write_text("not an image")
    _write(b / ".hidden.jpg", "RGB")  # hidden files (macOS ._x.jpg) are ignored
    ds = ImageFolder(tmp_path, image_size=16)
    assert ds.classes == ["a", "b"]
    names = [(os.path.relpath(p, tmp_path), label) for p, label in ds.samples]
    assert names == [("a/grey.png", 0), ("a/palette.bmp", 0), ("a/photo.JPEG", 0), ("a/rgb.png", 0),
                     ("a/rgba.png", 0), ("b/cmyk.jpg", 1), ("b/deep/nested.jpg", 1), ("b/grey16.png", 1),
                     ("b/w.pgm", 1), ("b/x.webp", 1), ("b/y.tif", 1), ("b/z.ppm", 1)]
    assert len(ds) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no image here is "unreadable"
        items = [ds[i] for i in range(len(ds))]
    for (image, label), (_, expected) in zip(items, ds.samples):
        assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == expected
    by_name = {os.path.basename(p): image for (p, _), (image, _) in zip(ds.samples, items)}
    assert (by_name["rgb.png"] == torch.tensor([10, 200, 30], dtype=torch.uint8).view(3, 1, 1)).all()
    assert (by_name["grey.png"] == 100).all()
    assert (by_name["rgba.png"] == torch.tensor([1, 2, 3], dtype=torch.uint8).view(3, 1, 1)).all()
    assert (by_name["grey16.png"] == 128).all()  # 16-bit scaled to 8, not clipped to white


def test_image_folder_resize_and_center_crop(tmp_path):
    # 64x32, left half red, right half blue: shorter side 32 -> 16, then 32x16 -> central 16x16.
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:, :32, 0] = 255
    array[:, 32:, 2] = 255
    _write(tmp_path / "c" / "wide.png", array=array)
    # 20x80 (tall), top green: shorter side 20 -> 16 (80 -> 64), central rows 24..40 all green.
    tall = np.zeros((80, 20, 3), dtype=np.uint8)
    tall[:40, :, 1] = 255
    _write(tmp_path / "c" / "tall.png", array=tall)
    ds = ImageFolder(tmp_path, image_size=16)
    wide, _ = ds[1]
    assert wide[:, :, :7].tolist() == [[[255] * 7] * 16, [[0] * 7] * 16, [[0] * 7] * 16]
    assert wide[:, :, 9:].tolist() == [[[0] * 7] * 16, [[0] * 7] * 16, [[255] * 7] * 16]
    tall_image, _ = ds[0]
    assert (tall_image[1, :7] == 255).all() and (tall_image[1, 9:] == 0).all()


def test_image_folder_class_order_and_given_classes(tmp_path):
    for name in ("zebra", "ant", "moose"):
        _write(tmp_path / name / "1.png", size=(8, 8))
        _write(tmp_path / name / "0.png", size=(8, 8))
    (tmp_path / ".cache").mkdir()  # hidden folders are not classes
    ds = ImageFolder(tmp_path, image_size=8)
    assert ds.classes == ["ant", "moose", "zebra"]
    assert [(os.path.basename(os.path.dirname(p)), os.path.basename(p), y) for p, y in ds.samples] == [
        ("ant", "0.png", 0), ("ant", "1.png", 0), ("moose", "0.png", 1), ("moose", "1.png", 1),
        ("zebra", "0.png", 2), ("zebra", "1.png", 2)]
    given = ImageFolder(tmp_path, image_size=8, classes=["zebra", "ant"])  # moose left out
    assert given.classes == ["zebra", "ant"]
    assert [(os.path.basename(os.path.dirname(p)), y) for p, y in given.samples] == [
        ("zebra", 0), ("zebra", 0), ("ant", 1), ("ant", 1)]
    assert given[3][1] == 1
    with pytest.raises(FileNotFoundError, match=r"no folder for class\(es\) 'yak'"):
        ImageFolder(tmp_path, classes=["ant", "yak"])
    with pytest.raises(ValueError, match="lists 'ant' more than once"):
        ImageFolder(tmp_path, classes=["ant", "ant"])
    with pytest.raises(ValueError, match="classes is empty"):
        ImageFolder(tmp_path, classes=[])


def test_image_folder_corrupt_files_are_skipped(tmp_path):
    _write(tmp_path / "good" / "ok.jpg", size=(30, 20))
    bad = _corrupt(tmp_path)
    _write(tmp_path / "bad" / "zz_ok.png", size=(20, 20))  # a class needs one readable image
    ds = ImageFolder(tmp_path, image_size=16)
    assert ds.classes == ["bad", "good"] and len(ds) == 5
    for i, (path, reason) in enumerate(zip(bad, ("corrupt", "corrupt", "empty"))):
        with pytest.warns(RuntimeWarning, match=f"skipping unreadable image {re.escape(path)} \\({reason}: "):
            image, label, why = ds[i]
        assert image is None and label == 0 and why == reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batch = [ds[i] for i in (4, 0, 1, 4, 2)]
    images, labels, skipped = collate_uint8(batch)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [1, 1] and labels.dtype == torch.int64 and skipped == {"corrupt": 2, "empty": 1}


def test_image_folder_dataloader_workers(tmp_path):
    for k in range(3):
        for j in range(5):
            _write(tmp_path / f"c{k}" / f"{j}.jpg", size=(20 + j, 24))
    _corrupt(tmp_path)
    _write(tmp_path / "bad" / "ok.png", size=(20, 20))  # a class needs one readable image
    ds = ImageFolder(tmp_path, image_size=16)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, collate_fn=collate_uint8,
                        generator=torch.Generator().manual_seed(0))
    seen, skipped = [], {}
    for images, labels, n_skipped in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] in ((3, 16, 16), (3, 0, 0))
        assert labels.shape == (images.shape[0],)
        seen += labels.tolist()
        for reason, k in n_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + k
    assert skipped == {"corrupt": 2, "empty": 1} and sorted(seen) == [0] + [1] * 5 + [2] * 5 + [3] * 5


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"ImageFolder: {re.escape(str(tmp_path / 'nope'))} does not exist"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match=f"{re.escape(str(tmp_path / 'file.jpg'))} is not a directory"):
        ImageFolder(tmp_path / "file.jpg")
    with pytest.raises(FileNotFoundError, match=rf"no class subfolders in {re.escape(str(tmp_path))}; it holds "
                                                r"1 image file\(s\) directly"):
        ImageFolder(tmp_path)
    (tmp_path / "file.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"no class subfolders in {re.escape(str(tmp_path))} \(expected"):
        ImageFolder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match=rf"no image files in {re.escape(str(tmp_path))} \(looked in 2 class"):
        ImageFolder(tmp_path)
    _write(tmp_path / "a" / "x.png", size=(8, 8))
    with pytest.raises(FileNotFoundError, match=rf"1 class folder\(s\) are empty \(no image files\): "
                                                rf"{re.escape(str(tmp_path / 'b'))}"):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="image_size must be >= 1, got 0"):
        ImageFolder(tmp_path, image_size=0)


# ------------------------------------------------------------------------------------------------
# image_folders
# ------------------------------------------------------------------------------------------------


def test_image_folders(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for name in ("dog", "cat"):
            for j in range(n):
                _write(tmp_path / split / name / f"{j}.png", size=(12, 10))
    train, val = image_folders(tmp_path, image_size=8)
    assert train.classes == val.classes == ["cat", "dog"]
    assert len(train) == 6 and len(val) == 2
    assert val[1][0].shape == (3, 8, 8) and val[1][1] == 1


def test_image_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "x"))):
        image_folders(tmp_path / "x")
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path / 'train'))} is missing"):
        image_folders(tmp_path)
    for name in ("cat", "dog", "emu"):
        _write(tmp_path / "train" / name / "0.png", size=(8, 8))
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path / 'val'))} is missing"):
        image_folders(tmp_path)
    for name in ("cat", "dog", "fox", "gnu"):
        _write(tmp_path / "val" / name / "0.png", size=(8, 8))
    with pytest.raises(ValueError, match="only in train: 'emu'; only in val: 'fox', 'gnu'"):
        image_folders(tmp_path)


# ------------------------------------------------------------------------------------------------
# collate_uint8
# ------------------------------------------------------------------------------------------------


def test_collate_uint8():
    x = [torch.full((3, 4, 4), k, dtype=torch.uint8) for k in range(3)]
    images, labels, skipped = collate_uint8([(x[0], 5), (None, 1), (x[2], torch.tensor(7))])
    assert images.shape == (2, 3, 4, 4) and images[1].eq(2).all()
    assert labels.tolist() == [5, 7] and labels.dtype == torch.int64 and skipped == {"unreadable": 1}
    for batch, expected in (([(None, 0), (None, 3, "empty"), (None, 1, "bomb"), (None, 2, "odd")],
                             {"bomb": 1, "empty": 1, "unreadable": 2}), ([], {})):
        images, labels, skipped = collate_uint8(batch)
        assert images.shape == (0, 3, 0, 0) and images.dtype == torch.uint8
        assert labels.shape == (0,) and labels.dtype == torch.int64 and skipped == expected
        assert list(skipped) == sorted(skipped, key=data.SKIP_REASONS.index)
    with pytest.raises(ValueError, match=r"uint8 tensors of one shape; got torch.uint8 \(3, 4, 4\) and "
                                         r"torch.uint8 \(3, 5, 5\)"):
        collate_uint8([(x[0], 0), (torch.zeros(3, 5, 5, dtype=torch.uint8), 0)])
    with pytest.raises(ValueError, match="torch.float32"):
        collate_uint8([(x[0], 0), (torch.zeros(3, 4, 4), 0)])
    import pickle

    assert pickle.loads(pickle.dumps(collate_uint8)) is collate_uint8


# ------------------------------------------------------------------------------------------------
# prepare_image_folder
# ------------------------------------------------------------------------------------------------


def _source_tree(src):
    sizes = {"train/a/0.jpg": (50, 40), "train/a/1.png": (40, 70), "train/b/0.JPEG": (64, 64),
             "val/a/x.bmp": (33, 21), "val/b/y.webp": (100, 30), "val/b/y.png": (30, 100)}
    for rel, size in sizes.items():
        _write(src / rel, size=size)
    (src / "train" / "b" / "labels.txt").write_text("ignored")
    bad = _corrupt(src / "train")
    return sizes, bad


@pytest.mark.parametrize("num_workers", [0, 2])
def test_prepare_image_folder(tmp_path, num_workers):
    src, dst = tmp_path / "src", tmp_path / "out" / "dst"
    sizes, bad = _source_tree(src)
    result = prepare_image_folder(src, dst, size=24, quality=90, progress=False, num_workers=num_workers)
    assert result["written"] == len(sizes) and result["skipped"] == 3
    assert sorted(result["skipped_files"]) == sorted(bad)
    written = sorted(os.path.relpath(os.path.join(d, f), dst) for d, _, fs in os.walk(dst) for f in fs)
    # y.webp and y.png share a stem: the later one keeps its full name.
    assert written == ["train/a/0.jpg", "train/a/1.jpg", "train/b/0.jpg", "val/a/x.jpg", "val/b/y.jpg",
                       "val/b/y.webp.jpg"]
    for rel in written:
        with Image.open(dst / rel) as im:
            assert im.format == "JPEG" and im.size == (24, 24) and im.mode == "RGB"
    # The result is what ImageFolder reads, with no resize left to do.
    train, val = image_folders(dst, image_size=24)
    assert train.classes == ["a", "b"] and len(train) == 3 and len(val) == 3
    assert train[0][0].shape == (3, 24, 24)


def test_prepare_image_folder_progress_and_class_tree(tmp_path, capsys):
    src = tmp_path / "flat"
    _write(src / "k1" / "a.png", size=(20, 10))
    _write(src / "k2" / "b.png", size=(10, 20))
    result = prepare_image_folder(src, tmp_path / "flat256", size=8)
    assert result == {"written": 2, "skipped": 0, "skipped_files": []}
    assert "prepare_image_folder" in capsys.readouterr().err  # the tqdm bar
    assert ImageFolder(tmp_path / "flat256", image_size=8).classes == ["k1", "k2"]


def test_prepare_image_folder_errors(tmp_path):
    src = tmp_path / "src"
    _write(src / "a" / "0.png", size=(8, 8))
    with pytest.raises(ValueError, match="dst .* is src"):
        prepare_image_folder(src, src, progress=False)
    with pytest.raises(ValueError, match="dst .* is inside src"):
        prepare_image_folder(src, src / "a" / "out", progress=False)
    with pytest.raises(ValueError, match="dst .* is src"):
        prepare_image_folder(src, tmp_path / "." / "src" / "a" / "..", progress=False)
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path / 'missing'))} does not exist"):
        prepare_image_folder(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files under"):
        prepare_image_folder(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="quality must be an int in 1..100, got 0"):
        prepare_image_folder(src, tmp_path / "out", quality=0, progress=False)
    assert not (tmp_path / "out").exists()
    # dst above src is fine (data/raw -> data) unless an output would land inside src.
    assert prepare_image_folder(src, tmp_path, size=4, progress=False)["written"] == 1
    assert (tmp_path / "a" / "0.jpg").exists()
    _write(src / "src" / "a" / "1.png", size=(8, 8))
    with pytest.raises(ValueError, match=rf"would be written to {re.escape(str(src / 'a' / '1.jpg'))}, inside src"):
        prepare_image_folder(src, tmp_path, size=4, progress=False)


def test_prepare_image_folder_name_clashes(tmp_path):
    src = tmp_path / "src"
    for name in ("a.jpg", "a.png", "a.png.jpg", "a.webp"):
        _write(src / "k" / name, size=(8, 8))
    result = prepare_image_folder(src, tmp_path / "dst", size=4, progress=False)
    assert result["written"] == 4
    assert sorted(os.listdir(tmp_path / "dst" / "k")) == ["a.jpg", "a.png.jpg", "a.png.jpg.jpg", "a.webp.jpg"]
