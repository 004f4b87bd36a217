"""Strided (N, C, S) views: how the ops hand tensors to kernels without copying."""
from __future__ import annotations

import math

import torch


def channel_view(t: torch.Tensor) -> torch.Tensor | None:
    """t (N, C, *spatial) as an (N, C, S) view, or None when its spatial strides cannot merge.

    NCHW and channels_last tensors (and their 3-D and 5-D kin) always merge; a transposed spatial
    pair does not.
    """
    try:
        return t.view(t.shape[0], t.shape[1], math.prod(t.shape[2:]))
    except RuntimeError:
        return None


def channel_view_or_copy(t: torch.Tensor) -> torch.Tensor:
    """channel_view(t), or an (N, C, S) view of a contiguous copy for the rare layouts that need one."""
    v = channel_view(t)
    return v if v is not None else t.contiguous().view(t.shape[0], t.shape[1], math.prod(t.shape[2:]))


def run_into(out: torch.Tensor, write) -> torch.Tensor:
    """Calls write(out3) with an (N, C, S) view of `out`, through a contiguous buffer if `out` has none."""
    v = channel_view(out)
    if v is not None:
        write(v)
        return out
    buf = torch.empty(out.shape, dtype=out.dtype, device=out.device)
    write(buf.view(out.shape[0], out.shape[1], math.prod(out.shape[2:])))
    out.copy_(buf)
    return out
