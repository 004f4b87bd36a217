"""What the transforms share: argument checks and dtype rules (messages name the transform)."""
from __future__ import annotations

from typing import Iterable

import torch


def _check_generator(op: str, generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{op}: generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_images(op: str, images, *, numeric: bool = False) -> None:
    """images must be an (N, C, H, W) tensor; `numeric`: of dtype uint8 or floating point."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{op}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{op}: images must be a 4-D (N, C, H, W) batch, got {images.dim()}-D with shape "
                         f"{tuple(images.shape)}")
    if numeric and images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{op}: images must be uint8 (0..255) or floating point (0..1), got {images.dtype}")


def _check_fits(op: str, size: int, height: int, width: int) -> None:
    if height < size or width < size:
        raise ValueError(f"{op}: images of {height}x{width} are smaller than the crop size {size}; "
                         f"resize them first (e.g. resize_and_center_crop)")


def _to_vector(op: str, name: str, v, length: int | None = None) -> torch.Tensor:
    """A 1-D sequence/tensor of finite reals as a float64 CPU tensor (optionally of a given length)."""
    try:
        t = torch.as_tensor(v, dtype=torch.float64, device="cpu") if not isinstance(v, torch.Tensor) else \
            v.detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{op}: {name} must be a sequence of numbers, got {v!r}") from None
    if t.dim() != 1 or (length is not None and t.numel() != length):
        want = f"{length} values" if length is not None else "a 1-D sequence"
        raise ValueError(f"{op}: {name} must be {want}, got shape {tuple(t.shape)}: {v!r}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{op}: {name} must be finite, got {v!r}")
    return t


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    # torch draws on the generator's own device; without one, on the default generator of `device`.
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _float_dtype(images: torch.Tensor) -> torch.dtype:
    """The dtype a transform producing floats returns: float32 for uint8, the input's otherwise."""
    return torch.float32 if images.dtype == torch.uint8 else images.dtype


def _compute_dtype(images: torch.Tensor) -> torch.dtype:
    """Arithmetic in float32 at least (fp16/bf16 are computed in float32 and rounded once at the end)."""
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def _is_channels_last(images: torch.Tensor) -> bool:
    # A tensor that is both (C == 1, or 1 x 1 images) is treated as NCHW.
    return images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()


def _pixel_batches(op: str, batches: Iterable[torch.Tensor]):
    """Each batch of `batches` checked, with its scale to [0, 1]."""
    for i, b in enumerate(batches):
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"{op}: batch {i} must be a torch.Tensor, got {type(b).__name__}")
        if b.dim() != 4:
            raise ValueError(f"{op}: batch {i} must be 4-D (N, C, H, W), got {b.dim()}-D with shape {tuple(b.shape)}")
        if b.dtype != torch.uint8 and not b.is_floating_point():
            raise TypeError(f"{op}: batch {i} must be uint8 (0..255) or floating point (0..1), got {b.dtype}")
        yield i, b, (1.0 / 255.0 if b.dtype == torch.uint8 else 1.0)


