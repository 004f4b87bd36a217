"""`fastalex prepare` (prepare_image_folder and the command): the paper's one-off preprocessing (shorter side to 256, centre crop) written out
as JPEGs, so that training decodes small files."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from fastalex._checks import check_int, error_line
from fastalex.data.folder import IMAGE_EXTENSIONS, _check_root, _image_files, _load_image

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
    size = check_int("prepare_image_folder", "size", size, 1)
    num_workers = check_int("prepare_image_folder", "num_workers", num_workers, 0)
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


def register_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source folder (e.g. with train/ and val/ class folders)")
    p.add_argument("dst", help="destination folder (same layout, JPEG)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    try:
        counts = prepare_image_folder(args.src, args.dst, size=args.size, num_workers=args.workers)
    except (ValueError, OSError) as e:
        print(error_line("prepare", e), file=sys.stderr)
        return 2
    print(f"wrote {counts['written']} images to {args.dst}; skipped {counts['skipped']} unreadable")
    return 0
