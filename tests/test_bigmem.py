"""Big tensors. The cpu backend's LRN and max-pool (forward and gradient) on more than 2^31 elements (int64
offsets), checked on rows at the start, in the middle, across element 2^31 and at the end against
torch on those slices: marked `bigmem`, skipped (with the reason) where /proc/meminfo's MemAvailable is
under 15 GiB; the NCHW case takes about 20 s of CPU time plus filling 4 GiB, channels_last is `slow`
as well. And the triton and cuda launchers, whose offsets inside a sample are 32-bit, rejecting what
they cannot address with a message naming the limit, checked on tensors that are never allocated (meta
tensors, stride-0 expansions): the checks run before any kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex.kernels import _common
from backends_here import KERNEL_BACKENDS
from numerics import assert_close, twice_rounded

GIB = 2**30

# fp16 tensors of more than 2^31 elements (4.0 GiB), each one sample, so that even the offsets inside
# a sample pass 2^31. NCHW: (1, 8, 16384, 16388), 2^31 + 524,288 elements; element 2^31 is in channel 7,
# row 16,351. channels_last: (1, 64, 4096, 8196) (the cpu max-pool's channels_last loops run over C:
# 8 channels would make it slow), 2^31 + 1,048,576 elements; element 2^31 is in row 4,093.
SHAPES = {"nchw": (1, 8, 16384, 16388), "channels_last": (1, 64, 4096, 8196)}
# x (4.0 GiB) and at most one of: the LRN output (4.0 GiB); the pooled output (1.0 GiB), its winners
# (0.5 GiB) and the input gradient (4.0 GiB); plus the process (torch, the extension). Peak resident
# memory measured: 11.0 GiB.
NEEDED = 12 * GIB
MARGIN = 3 * GIB  # left to whatever else runs on the machine


def _mem_available() -> int:
    """Bytes the kernel reports as available without swapping (/proc/meminfo MemAvailable), 0 if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _filled(shape, memory_format=torch.contiguous_format) -> torch.Tensor:
    """An fp16 tensor of integers in [-500, 500]: a random block of B = 2^24 + 3 elements repeated over the
    storage. An offset that wrapped at 2^31 or 2^32 reads another phase of the block (neither is a
    multiple of B): another value. Integers keep max-pool gradients (sums of at most 4) exact in fp16."""
    x = torch.empty(shape, dtype=torch.float16, memory_format=memory_format)
    flat = x.permute(0, 2, 3, 1) if memory_format == torch.channels_last else x
    flat = flat.reshape(-1)
    assert flat.data_ptr() == x.data_ptr() and flat.is_contiguous()  # a view of the storage, not a copy
    block = torch.randint(-500, 501, (2**24 + 3,), generator=torch.Generator().manual_seed(0)).to(torch.float16)
    for start in range(0, flat.numel(), block.numel()):
        n = min(block.numel(), flat.numel() - start)
        flat[start:start + n].copy_(block[:n])
    return x


def _rows_to_check(shape, layout):
    """Row ranges [r0, r1) (all channels) to check: the first rows, the middle, the rows around element
    2^31 of the storage, the last rows."""
    _, c, h, w = shape
    crossing = 2**31 // (w * c) if layout == "channels_last" else (2**31 - (c - 1) * h * w) // w
    return [(0, 6), (h // 2 - 3, h // 2 + 3), (crossing - 4, crossing + 4), (h - 6, h)]


@pytest.mark.bigmem
@pytest.mark.parametrize("layout", ["nchw", pytest.param("channels_last", marks=pytest.mark.slow)])
def test_cpu_beyond_2_31_elements(layout):
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    shape = SHAPES[layout]
    numel = shape[0] * shape[1] * shape[2] * shape[3]
    assert numel > 2**31
    available = _mem_available()
    if available < NEEDED + MARGIN:
        pytest.skip(f"needs {(NEEDED + MARGIN) / GIB:.0f} GiB of available memory (a {numel * 2 / GIB:.1f} GiB fp16 "
                    f"input and its outputs), {available / GIB:.1f} GiB available")
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = _filled(shape, fmt)
    # One at a time, each in its own function so that its 4 GiB of outputs are freed before the next.
    _check_lrn(x, shape, layout)
    _check_max_pool(x, shape, layout)


def _check_lrn(x, shape, layout):
    lrn = (5, 5e-4, 0.75, 2.0)
    with fastalex.backend("cpu"):
        y = fa.local_response_norm(x, *lrn)
    assert y.stride() == x.stride()
    for r0, r1 in _rows_to_check(shape, layout):
        # all channels of those rows (the LRN window spans channels), against torch in float64
        ref64 = F.local_response_norm(x[:, :, r0:r1].double(), *lrn)
        expected = twice_rounded(ref64, y.dtype)
        assert_close(y[:, :, r0:r1], expected, ref64=ref64, torch_out=expected, what=f"LRN rows {r0}:{r1} ({layout})")


def _check_max_pool(x, shape, layout):
    xg = x.detach().requires_grad_()
    with fastalex.backend("cpu"):
        pooled = fa.max_pool2d(xg, 3, 2)
    assert pooled.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else
                                torch.contiguous_format)
    # The output as its own gradient: non-trivial, integer values (exact sums in fp16).
    pooled.backward(pooled.detach())
    grad = xg.grad
    ho = pooled.shape[2]
    for r0, r1 in _rows_to_check(shape, layout):
        a, b = max(0, r0 // 2 - 1), min(ho, (r1 + 1) // 2)  # the output rows over input rows [r0, r1)
        slab = x[:, :, 2 * a:2 * b + 1].float().requires_grad_()
        ref = F.max_pool2d(slab, 3, 2)
        assert torch.equal(pooled[:, :, a:b].float(), ref.detach()), f"max-pool output rows {a}:{b} ({layout})"
        ref.backward(pooled[:, :, a:b].float())
        # Input rows inside the slab get every window that holds them (the first and last slab rows
        # also belong to windows outside it).
        inner = slice(2 * a + 1, 2 * b)
        assert torch.equal(grad[:, :, inner].float(), slab.grad[:, :, 1:-1]), f"max-pool grad rows {inner} ({layout})"
    # The last input row is in no window (an even number of rows, 3x3 windows with stride 2): its gradient is 0.
    assert not grad[:, :, -1].any()


# --- what the triton and cuda backends cannot address -----------------------------------------------


def _meta(shape, stride=None):
    """A tensor the checks can read and no kernel ever touches (nothing is allocated)."""
    if stride is None:
        return torch.empty(shape, device="meta")
    return torch.empty_strided(shape, stride, device="meta")


# The largest offset of a sample's last element the Triton kernels take: 2^31 - 2^16 - 1 (a program's
# block of lanes reaches past the last position, and must not wrap int32 there).
_LIMIT = _common.MAX_SAMPLE_EXTENT
_TOO_WIDE = "fewer than 2\\^31 per sample"
_TOO_MANY = "at most 65535 samples"


def _needs_triton():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("needs the Triton interpreter")


def test_triton_limit_is_below_int32():
    # A program's lanes reach a block (at most 2^16 positions) past the last position: still under 2^31.
    assert _LIMIT + 2**16 < 2**31


@pytest.mark.parametrize("extent", [_LIMIT + 1, 2**31 - 1, 2**31, 2**40])
def test_triton_lrn_rejects_wide_samples(extent):
    _needs_triton()
    from fastalex.kernels import local_response_norm as k

    x = _meta((1, 2, 1), (0, extent, 1))  # channel 1 (the last element) is `extent` elements in
    y = _meta((1, 2, 1))
    with pytest.raises(ValueError, match=f"local_response_norm: one sample spans {extent} elements.*{_TOO_WIDE}"):
        k.lrn_forward(x, y, 3, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match=_TOO_WIDE):
        k.lrn_backward(y, y, x, 3, 1e-4, 0.75, 1.0)  # the gradient written is the wide one
    # One long row of positions (an NCHW plane of 2^31 - 2^16 elements) is too wide as well.
    row = _meta((1, 1, _LIMIT + 2))
    with pytest.raises(ValueError, match=_TOO_WIDE):
        k.lrn_forward(row, row, 3, 1e-4, 0.75, 1.0)


def test_triton_lrn_rejects_many_samples():
    _needs_triton()
    from fastalex.kernels import local_response_norm as k

    many = torch.empty(1, 1, 1).expand(70000, 1, 1)  # stride 0: nothing allocated
    with pytest.raises(ValueError, match=_TOO_MANY):
        k.lrn_forward(many, _meta((70000, 1, 1)), 3, 1e-4, 0.75, 1.0)


def test_triton_lrn_takes_the_limit():
    """A sample of exactly MAX_SAMPLE_EXTENT passes the check (the launch then fails on meta tensors,
    which the interpreter cannot read: any error but the check's)."""
    _needs_triton()
    from fastalex.kernels import local_response_norm as k

    x = _meta((1, 2, 1), (0, _LIMIT, 1))
    with pytest.raises(Exception) as info:
        k.lrn_forward(x, _meta((1, 2, 1)), 3, 1e-4, 0.75, 1.0)
    assert "per sample" not in str(info.value)


def test_triton_max_pool_rejects_what_it_cannot_address():
    _needs_triton()
    from fastalex.kernels import max_pool2d as k
    from fastalex.kernels._common import Pool

    pool = Pool((3, 3), (2, 2), (0, 0), (1, 1))
    x = _meta((1, 2, 5, 5), (0, 2**31, 5, 1))
    y, win = _meta((1, 2, 2, 2)), torch.empty((1, 2, 2, 2), dtype=torch.uint8, device="meta")
    with pytest.raises(ValueError, match=f"max_pool2d: one sample spans {2**31 + 24} elements.*{_TOO_WIDE}"):
        k.max_pool2d_forward(x, y, win, pool)
    with pytest.raises(ValueError, match=f"max_pool2d_backward: .*{_TOO_WIDE}"):
        k.max_pool2d_backward(y, win, x, pool)
    # An output plane of 2^31 - 2^16 + 1 positions: its position index would wrap.
    big = _meta((1, 1, 1, _LIMIT + 2))
    with pytest.raises(ValueError, match=_TOO_WIDE):
        k.max_pool2d_forward(big, big, torch.empty(big.shape, dtype=torch.uint8, device="meta"),
                             Pool((1, 1), (1, 1), (0, 0), (1, 1)))
    many, many_y = _meta((70000, 1, 3, 3)), _meta((70000, 1, 1, 1))
    with pytest.raises(ValueError, match=_TOO_MANY):
        k.max_pool2d_forward(many, many_y, torch.empty(many_y.shape, dtype=torch.uint8, device="meta"), pool)


def test_triton_fused_rejects_what_it_cannot_address():
    _needs_triton()
    from fastalex.kernels import relu_lrn_max_pool2d as k
    from fastalex.kernels._common import Pool

    pool = Pool((3, 3), (2, 2), (0, 0), (1, 1))
    x = _meta((1, 2, 5, 5), (0, 2**31, 5, 1))
    y, win = _meta((1, 2, 2, 2)), torch.empty((1, 2, 2, 2), dtype=torch.uint8, device="meta")
    with pytest.raises(ValueError, match=f"relu_lrn_max_pool2d: .*{_TOO_WIDE}"):
        k.relu_lrn_max_pool2d_forward(x, y, win, 5, 1e-4, 0.75, 1.0, pool)
    with pytest.raises(ValueError, match=f"relu_lrn_max_pool2d_backward: .*{_TOO_WIDE}"):
        k.relu_lrn_max_pool2d_backward(x, y, win, x, 5, 1e-4, 0.75, 1.0, pool)


def test_triton_conv_rejects_what_it_cannot_address():
    _needs_triton()
    from fastalex.kernels import conv2d as k

    geo = k.ConvGeometry(1, 1, 1, 1, 0, 0, 1)
    w = _meta((1, 1, 1, 1))
    # A sample wider than 2^31 elements.
    x = _meta((1, 2, 4, 4), (0, 2**31, 4, 1))
    y = _meta((1, 1, 4, 4))
    w2 = _meta((1, 2, 1, 1))
    with pytest.raises(ValueError, match=f"conv2d: .*{_TOO_WIDE}"):
        k.conv2d_forward(x, w2, None, y, geo, "ieee", False)
    # Small samples, but more positions (N x H x W) than an int32 index takes: the GEMMs index across
    # the batch.
    n = 2**31 // 16 + 1
    xs, ys = _meta((n, 1, 4, 4)), _meta((n, 1, 4, 4))
    positions = f"conv2d: the triton backend takes at most {_LIMIT} positions \\(N x H x W\\) per call, got {n * 16}"
    with pytest.raises(ValueError, match=positions):
        k.conv2d_forward(xs, w, None, ys, geo, "ieee", False)
    with pytest.raises(ValueError, match=positions):
        k.conv2d_grad_input(ys, None, w, xs, geo, "ieee")
    with pytest.raises(ValueError, match=positions):
        k.conv2d_grad_weight(ys, None, xs, (1, 1, 1, 1), geo, "ieee", True)


@pytest.mark.gpu
def test_cuda_backend_rejects_what_it_cannot_address():
    """The cuda backend indexes in 64 bits (max-pool picks 32-bit math only where everything fits); its one
    limit is the LRN's batch on grid.y. The check sits in bindings.cpp's CUDA branch: a CUDA tensor is
    needed to reach it."""
    if "cuda" not in fastalex.backends():
        pytest.skip("cuda backend unavailable")
    from fastalex import _extension

    ext = _extension.load()
    many = torch.empty(1, 1, 1, device="cuda").expand(70000, 1, 1)
    with pytest.raises(RuntimeError, match="local_response_norm: the cuda backend takes at most 65535 samples"):
        ext.lrn_forward(many, torch.empty(70000, 1, 1, device="cuda"), 3, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match="local_response_norm_backward: the cuda backend takes at most 65535"):
        ext.lrn_backward(many, many, torch.empty(70000, 1, 1, device="cuda"), 3, 1e-4, 0.75, 1.0)
