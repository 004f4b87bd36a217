"""The paper's training augmentation as `fastalex train` runs it: on the device, on whole batches,
drawn reproducibly from (seed, epoch, step)."""
from __future__ import annotations

import torch

from fastalex import transforms
from fastalex.data.loading import mix_seed
from fastalex.train.config import TrainConfig
from fastalex.train.distributed import Distributed


class Augmentation:
    """The paper's training augmentation on device batches: random crop + flip, PCA colour noise,
    normalisation, drawn for the global batch from a generator seeded by (seed, epoch, step)."""

    def __init__(self, config: TrainConfig, dist: Distributed, device: torch.device):
        self.crop = transforms.RandomCropFlip(config.crop_size, p_flip=config.flip)
        self.lighting = transforms.PCALighting(config.pca_std) if config.pca_std > 0 else None
        self.normalize = transforms.Normalize()
        self.seed, self.dist, self.device = config.seed, dist, device
        self.global_batch = config.batch_size * dist.world
        self.channels_last = config.channels_last

    def __call__(self, images: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        n, _, h, w = images.shape
        g = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, epoch, step, "augment"))
        # Draw for the whole global batch and keep this rank's interleaved share (see fastalex.data.ShardedSampler).
        mine = slice(self.dist.rank, None, self.dist.world)
        params = self.crop.sample(self.global_batch, h, w, generator=g, device=self.device)
        params = type(params)(*(p[mine][:n] for p in params))
        x = self.crop.apply(images, params)
        if self.lighting is not None:
            alpha = self.lighting.sample(self.global_batch, generator=g, device=self.device)[mine][:n]
            x = self.lighting.apply(x, alpha)
        x = self.normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
