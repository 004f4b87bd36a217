"""Batching for `fastalex train` / `fastalex eval`: the collate function that drops unreadable images,
the sharded sampler (one global order, split by rank), DataLoaders, and preloading a dataset onto
the device."""
from __future__ import annotations

import hashlib
import signal

import torch
from torch.utils.data import default_collate

from fastalex.data.folder import SKIP_REASONS


def collate_uint8(samples) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """DataLoader ``collate_fn``: ``(images, labels, skipped)`` from ``(image, label)`` pairs and
    ``(None, label, reason)`` triples (ImageFolder's unreadable files; a pair ``(None, label)`` counts
    as "unreadable").

    ``images`` is the uint8 (n, 3, S, S) stack of the images that are not None, ``labels`` their
    int64 (n,) labels, ``skipped`` the number of Nones by reason: ``{reason: count}`` for the
    reasons that occur, in :data:`fastalex.data.SKIP_REASONS`' order (an unknown reason counts as
    "unreadable"); ``{}`` when nothing was skipped. When no image is valid (or `samples` is empty)
    the batch is ``torch.empty(0, 3, 0, 0, dtype=torch.uint8)`` -- the size is unknown -- with
    empty labels: check ``images.shape[0]`` (or ``labels.numel()``) before use.

    A module-level function, so it pickles into worker processes; in a worker the stack is written
    straight into shared memory (as by torch's default collate), and ``pin_memory=True`` pins both
    tensors (the dict passes through).
    """
    images, labels, counts = [], [], {}
    for sample in samples:
        image, label = sample[0], sample[1]
        if image is None:
            reason = sample[2] if len(sample) > 2 and sample[2] in SKIP_REASONS else "unreadable"
            counts[reason] = counts.get(reason, 0) + 1
        else:
            images.append(image)
            labels.append(int(label))
    skipped = {r: counts[r] for r in SKIP_REASONS if r in counts}
    if not images:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped
    first = images[0]
    for image in images:
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.shape != first.shape:
            raise ValueError(f"collate_uint8: images must be uint8 tensors of one shape; got "
                             f"{_describe(first)} and {_describe(image)}")
    # default_collate stacks into shared memory when called in a worker: one copy fewer per batch.
    return default_collate(images), torch.tensor(labels, dtype=torch.int64), skipped


def skip_counts(skipped) -> dict[str, int]:
    """A batch's ``skipped`` as ``{reason: count}``: collate_uint8's dict as it is; a bare count (a
    loader of another kind) as that many "unreadable"."""
    if isinstance(skipped, dict):
        return skipped
    return {"unreadable": int(skipped)} if skipped else {}


def _describe(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def mix_seed(*parts) -> int:
    """A 63-bit seed from any parts (stable across processes and runs, unlike hash())."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ShardedSampler(torch.utils.data.Sampler):
    """This rank's share of a permutation fixed by (seed, epoch), optionally resumed mid-epoch.

    Only whole global batches are kept (world * batch_size images), so every rank takes the same
    number of steps; rank r takes positions r, r + world, ... of the permutation, which makes N
    ranks at batch B read exactly the images one process reads at batch N * B.
    """

    def __init__(self, size: int, batch_size: int, seed: int, *, world: int = 1, rank: int = 0, shuffle: bool = True,
                 drop_last: bool = True):
        self.size, self.batch_size, self.seed, self.world, self.rank = size, batch_size, seed, world, rank
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, "order"))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[:self.size - self.size % (self.batch_size * self.world)]
        return order[self.rank::self.world][self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def _worker_signals(worker_id: int) -> None:
    # Loader processes are forked inside StopRequest: Ctrl-C is the main process's to handle (it
    # finishes the step and shuts them down), and SIGTERM must kill them, as the DataLoader expects.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def make_loader(dataset, sampler, batch_size: int, workers: int, device: torch.device):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_uint8,
        pin_memory=device.type == "cuda", drop_last=False, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # its own generator: iter() on a loader draws a seed, which must not move the global RNG
        # that dropout uses (a resumed run creates its iterator at another point of that stream)
        generator=torch.Generator().manual_seed(0), worker_init_fn=_worker_signals)


@torch.no_grad()
def preload(dataset, device: torch.device, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of `dataset` in one uint8 tensor on `device` (and the labels), drawn by `workers`
    processes once. SyntheticShapes at 256 px is 192 KiB an image: 2.5 GB for the default 12,800 on
    a GPU, after which a batch is one index_select there, with no loader in the way."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=workers, collate_fn=collate_uint8,
                                         generator=torch.Generator().manual_seed(0))  # see make_loader
    images = labels = None
    start = 0
    for batch, batch_labels, _ in loader:
        if images is None:
            images = torch.empty((len(dataset), *batch.shape[1:]), dtype=torch.uint8, device=device)
            labels = torch.empty(len(dataset), dtype=torch.int64, device=device)
        images[start:start + len(batch)].copy_(batch)
        labels[start:start + len(batch)].copy_(batch_labels)
        start += len(batch)
    return images, labels


class PreloadedLoader:
    """A DataLoader's interface over preloaded tensors: (images, labels, {}) for each batch of the
    sampler's indices, gathered on the device (nothing skipped)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sampler: ShardedSampler, batch_size: int):
        self.images, self.labels, self.sampler, self.batch_size = images, labels, sampler, batch_size

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        order = torch.tensor(list(self.sampler), dtype=torch.int64).to(self.images.device, non_blocking=True)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images.index_select(0, index), self.labels.index_select(0, index), {}
