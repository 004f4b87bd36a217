"""On the GPU machine the C++/CUDA extension must build and its CUDA kernels must run: a failed CUDA build
fails benchmarks/gpu_check.sh (stage 2, with stage 1's `fastalex info --require triton,cuda,cpu`)
instead of skipping the cuda backend's tests. tests/test_extension.py compiles the CUDA sources without
a GPU where nvcc is found; this is the GPU-side check. Skipped without a CUDA device."""
from __future__ import annotations

import pytest
import torch

import fastalex
from fastalex import _extension
from numerics import EXACT, TOL

pytestmark = pytest.mark.gpu


def test_cuda_extension_built_and_runs_on_the_gpu():
    st = _extension.status()
    assert st.module is not None, f"the C++ extension did not build:\n{st.cpu_error}"
    assert st.with_cuda, f"the CUDA kernels did not build:\n{st.cuda_error}"
    assert "cuda" in fastalex.backends(), "the cuda backend is unavailable although the extension built"
    x = torch.rand(4, 96, 13, 13, device="cuda").contiguous(memory_format=torch.channels_last)
    with fastalex.backend("cuda"):
        got = fastalex.functional.local_response_norm(x, 5, 5e-4, 0.75, 2.0)
        pooled = fastalex.functional.max_pool2d(x, 3, 2)
    expected = torch.nn.functional.local_response_norm(x, 5, 5e-4, 0.75, 2.0)
    torch.testing.assert_close(got, expected, **TOL[torch.float32])
    torch.testing.assert_close(pooled, torch.nn.functional.max_pool2d(x, 3, 2), **EXACT)
