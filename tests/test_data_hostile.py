"""Image folders from elsewhere, treated as hostile: links that loop back into the tree, decompression
bombs, files that are not images or not files at all, unreadable files, class folders with nothing
readable; and a training run on such a folder (CPU)."""
import csv
import math
import os
import re
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import fastalex
from fastalex.__main__ import main
from fastalex.data import ImageFolder, collate_uint8, folder, image_folders
from fastalex.train import TrainConfig, train
from fastalex.train import checkpoint as ckpt


def _png(path: Path, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(path: Path, width=40_000, height=40_000, rows=None, grey=False):
    """A PNG whose header says width x height (1.6 gigapixels by default, 4.8 GB as RGB) over a few KB:
    its first `rows` rows of zeros (all of them when None), compressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if grey else 3
    z, row = zlib.compressobj(9), b"\0" * (1 + channels * width)
    idat = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if grey else 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def _jpeg_bytes(size=(64, 48)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _read(ds, i):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ds[i]


def _reason(ds, name):
    index = next(i for i, (p, _) in enumerate(ds.samples) if os.path.basename(p) == name)
    item = _read(ds, index)
    assert item[0] is None, f"{name} was read as an image"
    return item[2]


# --- Links: no directory walked twice, no image counted twice.

def test_a_link_looping_back_to_the_root_is_not_followed_again(tmp_path):
    root = tmp_path / "train"
    for c in ("a", "b"):
        for i in range(2):
            _png(root / c / f"{i}.png")
    (root / "a" / "loop").symlink_to("..")  # train/a/loop -> train/
    (root / "b" / "self").symlink_to(".")  # train/b/self -> train/b
    start = time.perf_counter()
    ds = ImageFolder(root, image_size=8)
    assert time.perf_counter() - start < 10
    assert [(os.path.relpath(p, root), y) for p, y in ds.samples] == [
        ("a/0.png", 0), ("a/1.png", 0), ("b/0.png", 1), ("b/1.png", 1)]


def test_an_image_reached_by_several_links_is_counted_once(tmp_path):
    root = tmp_path / "train"
    for c in ("a", "b"):
        for i in range(2):
            _png(root / c / f"{i}.png")
    _png(tmp_path / "elsewhere" / "x.png")
    (root / "b" / "again").symlink_to("../a")  # a link to another class's folder: not walked
    (root / "b" / "dup.png").symlink_to("../a/0.png")  # a link to an image already listed
    (root / "b" / "outside").symlink_to(tmp_path / "elsewhere")  # a real folder outside the tree: walked once
    (root / "b" / "outside2").symlink_to(tmp_path / "elsewhere")
    ds = ImageFolder(root, image_size=8)
    assert [(os.path.relpath(p, root), y) for p, y in ds.samples] == [
        ("a/0.png", 0), ("a/1.png", 0), ("b/0.png", 1), ("b/1.png", 1), ("b/outside/x.png", 1)]
    real = [os.path.realpath(p) for p, _ in ds.samples]
    assert len(set(real)) == len(real)


# --- Each bad file is skipped, counted by its reason, and named.

def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _png(root / "a" / "ok.png")
    _png_bomb(root / "a" / "giga.png", rows=4)  # 1.6 gigapixels: over Pillow's error threshold too
    # 10,000 x 10,000 = 100 million pixels: over the limit, under twice Pillow's (where Pillow alone only
    # warns, then decodes 100 MB and converts it to 300 MB)
    _png_bomb(root / "a" / "hundred_mega.png", 10_000, 10_000, grey=True)
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or load(im))
    ds = ImageFolder(root, image_size=16)
    for name in ("giga.png", "hundred_mega.png"):
        index = next(i for i, (p, _) in enumerate(ds.samples) if p.endswith(name))
        with pytest.warns(RuntimeWarning, match=rf"skipping unreadable image {re.escape(ds.samples[index][0])} "
                                                rf"\(bomb: "):
            assert ds[index] == (None, 0, "bomb")
    assert all(w * h <= folder.MAX_IMAGE_PIXELS for w, h in decoded), decoded
    # whatever Pillow's own limit is set to (None: none at all), fastalex's applies
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.warns(RuntimeWarning, match=r"40000x40000 = 1,600,000,000 pixels, over "
                                            r"fastalex\.data\.folder\.MAX_IMAGE_PIXELS \(89,478,485\); not decoded"):
        assert ds[0] == (None, 0, "bomb")
    monkeypatch.setattr(folder, "MAX_IMAGE_PIXELS", 300)  # and it is the limit: 20 x 16 = 320 pixels
    before = len(decoded)
    assert _reason(ds, "ok.png") == "bomb" and len(decoded) == before


def _unblock_fifo_readers(fifo: Path, seconds: float):
    """Open `fifo` for writing and close it whenever a reader waits on it, for `seconds`: the old
    listing opened a FIFO named like an image and waited forever."""
    def run():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                time.sleep(0.05)

    threading.Thread(target=run, daemon=True).start()


def test_each_bad_file_is_skipped_counted_by_reason_and_named(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _png(root / "a" / "0.png")
    (root / "a" / "truncated.jpg").write_bytes(_jpeg_bytes()[:200])
    (root / "a" / "notes.jpg").write_text("a text file named like an image")
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "folder.jpg").mkdir()
    _png(root / "a" / "folder.jpg" / "inside.png")  # a folder named like an image: walked like any other
    (root / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    _png(root / "a" / "secret.png")
    os.mkfifo(root / "a" / "pipe.jpg")
    _unblock_fifo_readers(root / "a" / "pipe.jpg", 20)
    secret = str(root / "a" / "secret.png")
    if os.geteuid() == 0:  # root reads any file: refuse this one as a permission check would
        real_open = open

        def denied(path, *args, **kwargs):
            if os.fspath(path) == secret:
                raise PermissionError(13, "Permission denied", secret)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(folder, "open", denied, raising=False)
    else:
        os.chmod(secret, 0)
    ds = ImageFolder(root, image_size=16)
    expected = {"truncated.jpg": "corrupt", "notes.jpg": "corrupt", "zero.png": "empty", "folder.jpg": "not_a_file",
                "dangling.png": "unreadable", "secret.png": "unreadable", "pipe.jpg": "not_a_file"}
    assert sorted(os.path.basename(p) for p, _ in ds.samples) == sorted([*expected, "0.png", "inside.png"])
    assert {name: _reason(ds, name) for name in expected} == expected
    with pytest.warns(RuntimeWarning, match=rf"skipping unreadable image {re.escape(secret)} \(unreadable: "
                                            r"Permission denied\)"):
        ds[next(i for i, (p, _) in enumerate(ds.samples) if p == secret)]
    images, labels, skipped = collate_uint8([_read(ds, i) for i in range(len(ds))])
    assert len(images) == 2 and skipped == {"corrupt": 2, "empty": 1, "unreadable": 2, "not_a_file": 2}


def test_a_class_folder_with_no_readable_image_is_an_error_before_training(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("train", "val"):
        _png(data / split / "a" / "0.png")
        _png(data / split / "c" / "0.png")
    c = data / "train" / "c"
    (c / "0.png").write_bytes(_jpeg_bytes()[:100])
    (c / "empty.jpg").write_bytes(b"")
    (c / "x.jpg").mkdir()
    message = (rf"ImageFolder: 1 class folder\(s\) have no readable image: {re.escape(str(c))} "
               r"\(3 file\(s\): 1 corrupt, 1 empty, 1 not a file\)")
    with pytest.raises(ValueError, match=message):
        image_folders(data, image_size=8)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "have no readable image: " + str(c) in err and "Traceback" not in err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


# --- Training on such a folder: it trains, stays finite, and says what it skipped and why.

@pytest.mark.skipif("cpu" not in fastalex.backends(), reason="needs the C++ extension's CPU kernels")
def test_training_on_a_hostile_folder_stays_finite_and_reports_skips_by_reason(tmp_path, capsys):
    data = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        for c in ("a", "b", "c"):
            for i in range(n):
                _png(data / split / c / f"{i}.png", size=(80, 90))
    train_dir = data / "train"
    _png(train_dir / "a" / "4.png", size=(80, 90))
    _png_bomb(train_dir / "a" / "bomb.png", rows=4)
    (train_dir / "a" / "truncated.jpg").write_bytes(_jpeg_bytes((300, 200))[:300])
    (train_dir / "b" / "empty.jpg").write_bytes(b"")
    (train_dir / "b" / "text.jpg").write_text("not an image")
    (train_dir / "c" / "folder.jpg").mkdir()
    (train_dir / "c" / "loop").symlink_to("..")  # back to train/
    (data / "val" / "c" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    # 13 images and 5 bad files: 3 steps of 6 at the default lr, validation on 6 images and 1 bad file
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), device="cpu", epochs=1, batch_size=6,
                         image_size=72, crop_size=64, workers=0, progress=False, plot=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = train(config)
    err = capsys.readouterr().err
    assert "18 train / 7 val images" in err
    row = result["history"][0]
    assert {k: v for k, v in row.items() if k.startswith("skipped_")} == {
        "skipped_images": 6, "skipped_bomb": 1, "skipped_corrupt": 3, "skipped_empty": 1, "skipped_unreadable": 0,
        "skipped_not_a_file": 1}
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) and result["steps"] == 3
    assert "6 files skipped (1 bomb, 3 corrupt, 1 empty, 1 not a file)" in err
    assert any(str(train_dir / "a" / "bomb.png") in str(w.message) and "(bomb: " in str(w.message) for w in caught)
    with open(tmp_path / "run" / "metrics.csv") as f:
        logged = next(csv.DictReader(f))
    assert (logged["skipped_images"], logged["skipped_bomb"], logged["skipped_corrupt"]) == ("6", "1", "3")
    state = ckpt.load(tmp_path / "run" / "checkpoint.pt")  # plain data, with the skip counts in its history
    assert state["history"][0]["skipped_not_a_file"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
