"""What every Triton launcher shares: interpreter detection and per-shape config tuning."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Hashable, Sequence, TypeVar

import torch

Cfg = TypeVar("Cfg")

_TUNED: dict[Hashable, object] = {}


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def band_dot_precision() -> str:
    """tl.dot's precision for the 0/1 band-matrix window sums (LRN's and the fused op's "dot" and "tile"
    strategies): 0/1 is exact in TF32; the data (fp32 after loading, whatever the input dtype) needs
    3xTF32 to keep fp32 accuracy. The interpreter computes dots in plain fp32."""
    return "ieee" if interpreting() else "tf32x3"


def tuned_config(key: Hashable, candidates: Sequence[Cfg], launch: Callable[[Cfg], None]) -> Cfg:
    """The fastest of `candidates` for `key`, timed on the real inputs once per machine: the choice is
    kept for this process and in the tuning cache on disk (fastalex/kernels/_tuning_cache.py).

    `launch(cfg)` must only write outputs (it runs several times). Under the interpreter, or with
    FASTALEX_TUNE=0, the first candidate is used untimed (and nothing is cached). Candidates that
    fail to compile (too many registers or too much shared memory for this GPU) are skipped.
    """
    if key in _TUNED:
        return _TUNED[key]  # type: ignore[return-value]
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return candidates[0]  # no timing inside a CUDA graph capture; warm up before capturing to tune
    if interpreting() or os.environ.get("FASTALEX_TUNE", "1") == "0" or len(candidates) == 1:
        best = candidates[0]
    else:
        from fastalex.kernels import _tuning_cache

        best = _tuning_cache.cache().get(key, candidates)
        if best is None:
            best = _fastest(key, candidates, launch)
            _tuning_cache.cache().put(key, best)
    _TUNED[key] = best
    return best


def _fastest(key: Hashable, candidates: Sequence[Cfg], launch: Callable[[Cfg], None]) -> Cfg:
    import triton.testing

    timings = []
    for cfg in candidates:
        try:
            ms = triton.testing.do_bench(lambda: launch(cfg), warmup=5, rep=20, return_mode="median")
        except Exception as e:  # noqa: BLE001 - a config the GPU cannot run is just not a candidate
            if "OutOfResources" not in type(e).__name__ and "out of resource" not in str(e):
                raise
            continue
        timings.append((ms, cfg))
    if not timings:
        raise RuntimeError(f"fastalex: no kernel configuration could run for {key}")
    return min(timings, key=lambda t: t[0])[1]


def tuned_configs() -> dict[Hashable, object]:
    """A copy of the configs chosen so far in this process (the benchmarks record them with their figures)."""
    return dict(_TUNED)


# CUDA caps grid axes 1 and 2 at 65535: the kernels that put samples on one take that many per call.
MAX_GRID_SAMPLES = 65535
# Offsets and position indices inside one sample are int32, and a program's lanes reach up to a block
# (at most 2^16 positions) past the last valid position before their mask drops them: an index that
# wrapped there would pass the mask. The largest extent (offset of a sample's last element) taken:
MAX_SAMPLE_EXTENT = 2**31 - 2**16 - 1


def check_sample_extent(op: str, *tensors: torch.Tensor, samples_on_grid: bool = True) -> None:
    """Raise unless each tensor's samples fit the kernels' addressing: offsets inside one sample are
    32-bit (the sample's base offset is 64-bit), and with `samples_on_grid` the batch sits on a grid
    axis, which takes at most MAX_GRID_SAMPLES."""
    for t in tensors:
        extent = sum((n - 1) * abs(s) for n, s in zip(t.shape[1:], t.stride()[1:]))
        if extent > MAX_SAMPLE_EXTENT:
            raise ValueError(f"{op}: one sample spans {extent} elements; the triton backend takes fewer than "
                             f"2^31 per sample (32-bit offsets, a block's reach of 2^16 below: at most "
                             f"{MAX_SAMPLE_EXTENT}; use the cuda backend)")
    if samples_on_grid and tensors[0].shape[0] > MAX_GRID_SAMPLES:
        raise ValueError(f"{op}: the triton backend takes at most {MAX_GRID_SAMPLES} samples per call, "
                         f"got {tensors[0].shape[0]}")


@dataclasses.dataclass(frozen=True)
class Pool:
    """Window geometry, each a (h, w) pair."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def constexprs(self) -> dict:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return dict(KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw)

    def windows_per_input(self) -> tuple[int, int]:
        """Most windows one input row / column falls in."""
        return tuple(-(-((k - 1) * d + 1) // s) for k, s, d in zip(self.kernel, self.stride, self.dilation))
