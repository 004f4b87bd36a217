"""Data sources for `fastalex train` / `fastalex eval`: the paper's recipe on uint8 images.

Every dataset here returns ``(image, label)`` with ``image`` a uint8 tensor of shape (3, S, S)
(S = ``image_size``, 256 by default: the paper's rescaled-and-centre-cropped images) and ``label``
an int. The random 224 x 224 crops, flips and colour noise of the paper happen later, batched on the
GPU (:mod:`fastalex.transforms`): keeping the workers' output uint8 and full size makes them cheap
and the host-to-device copy four times smaller than float32.

* :class:`SyntheticShapes` -- procedurally drawn shapes and textures, no download needed: a
  learnable stand-in for ImageNet for smoke tests, benchmarks and CPU tests.
* :class:`ImageFolder` / :func:`image_folders` -- ``root/<class>/<image>`` trees (ImageNet layout).
* :func:`collate_uint8` -- the DataLoader ``collate_fn`` that drops unreadable images and counts them by
  reason (:data:`SKIP_REASONS`).
* :func:`prepare_image_folder` -- the paper's one-off preprocessing (shorter side to 256, centre
  crop) written out as JPEGs, so that training decodes small files.
* :class:`ShardedSampler`, :func:`make_loader`, :func:`preload` -- how `fastalex train` batches them.

Modules: synthetic.py, folder.py, prepare.py, loading.py (one each for the items above).

    from torch.utils.data import DataLoader
    from fastalex.data import SyntheticShapes, collate_uint8, image_folders

    train, val = image_folders("/data/imagenet256")      # or SyntheticShapes(50_000)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=8,
                        collate_fn=collate_uint8, pin_memory=True)
    for images, labels, skipped in loader:                # uint8 (n, 3, 256, 256), int64 (n,), {reason: count}
        ...
"""
from fastalex.data.folder import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, SKIP_REASONS, ImageFolder, image_folders
from fastalex.data.loading import (PreloadedLoader, ShardedSampler, collate_uint8, make_loader, mix_seed, preload,
                                   skip_counts)
from fastalex.data.prepare import prepare_image_folder
from fastalex.data.synthetic import SyntheticShapes

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "MAX_IMAGE_PIXELS", "PreloadedLoader", "SKIP_REASONS", "ShardedSampler",
           "SyntheticShapes", "collate_uint8", "image_folders", "make_loader", "mix_seed", "preload",
           "prepare_image_folder", "skip_counts"]
