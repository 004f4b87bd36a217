"""conv2d / conv2d_relu parity with torch.nn.functional.conv2d (+ ReLU): the Triton implicit-GEMM
kernels through the interpreter in IEEE fp32 (and fp16), the cpu and torch backends; output and the
gradients of input, weight and bias. The cpu and torch backends run torch's convolution themselves, so
they are also held to a float64 reference that shares no code with them (the padding spelled out from
the documented spec, and the convolution as an unfold and a matrix product per group)."""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex.kernels import conv2d as conv_kernels
from backends_here import KERNEL_BACKENDS, layout as _layout
from numerics import (AUTOCAST_FP16_REL, CHUNKED_SUM_REL, CONV_NAN_ELEMENTWISE, assert_close, assert_rel_close,
                      rel_error)

# (name, N, C_in, H, W, C_out, kernel, stride, padding, groups, bias)
CASES = [
    ("conv1-11x11s4", 2, 3, 27, 27, 8, 11, 4, (1, 2, 1, 2), 1, True),  # the paper's first layer, small
    ("5x5p2-groups2", 2, 6, 9, 9, 8, 5, 1, 2, 2, True),  # conv2's shape, two towers
    ("3x3p1", 1, 5, 7, 8, 6, 3, 1, 1, 1, True),  # conv3..5, batch 1
    ("3x3p1-nobias", 2, 4, 6, 7, 5, 3, 1, 1, 1, False),
    ("asym-odd", 3, 4, 9, 11, 6, (3, 2), (2, 1), (0, 1, 2, 0), 2, True),
    ("pair-padding", 2, 3, 8, 5, 4, (2, 3), 2, (1, 0), 1, True),
]
IDS = [c[0] for c in CASES]
# 16 or more input channels per group: the tap-by-tap kernels (AlexNet's conv2-5). The cases above have
# fewer (FEW_CHANNELS): their forward and grad_weight take the row layout (one group, conv1's) or the
# gather kernels (several groups).
WIDE_CASES = [
    ("3x3p1-c24", 2, 24, 5, 6, 20, 3, 1, 1, 1, True),  # channel blocks part-filled (24 of 32), 20 outputs
    ("5x5p2-c64-groups2", 1, 64, 6, 5, 32, 5, 1, 2, 2, True),  # conv2's shape: 32 channels per group
    ("asym-stride2-c16", 2, 16, 9, 7, 16, (3, 2), (2, 1), (0, 1, 2, 0), 1, False),  # strided grad_input
]


def _make(case, dtype, channels_last, seed=0):
    _, n, c_in, h, w, c_out, kernel, stride, padding, groups, bias = case
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, kh, kw, generator=g, dtype=torch.float64) / (c_in // groups * kh * kw) ** 0.5
    b = torch.randn(c_out, generator=g, dtype=torch.float64) * 0.1 if bias else None
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.to(dtype), weight.to(dtype), (b.to(dtype) if b is not None else None), dict(
        stride=stride, padding=padding, groups=groups)


def _spelled_out(padding) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) by conv2d's documented spec, written out here rather than taken from
    fastalex: an int pads every side, a pair is (h, w), a 4-tuple is F.pad's (left, right, top, bottom)."""
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return padding[1], padding[1], padding[0], padding[0]
    return tuple(padding)


def _reference(x, weight, bias, relu, stride, padding, groups):
    """torch: an explicit pad for asymmetric padding, then conv2d, then ReLU."""
    y = F.conv2d(F.pad(x, _spelled_out(padding)), weight, bias, stride, groups=groups)
    return F.relu(y) if relu else y


def _independent64(x, weight, bias, relu, stride, padding, groups):
    """The same in float64 without torch's convolution: zero padding, then per group an unfold (im2col) and
    a matrix product. What the cpu and torch backends are held to, since they run torch's convolution."""
    x, weight = x.double(), weight.double()
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    x = F.pad(x, _spelled_out(padding))
    n, _, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = F.unfold(x, (kh, kw), stride=(sh, sw)).view(n, groups, c_group * kh * kw, oh * ow)
    y = torch.einsum("gok,ngkl->ngol", weight.reshape(groups, c_out // groups, -1), cols).reshape(n, c_out, oh, ow)
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    return F.relu(y) if relu else y


def _grads(fn, x, weight, bias, grad_seed=1):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, weight, bias)]
    y = fn(*leaves)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64).to(y.dtype)
    y.backward(grad)
    return [y.detach()] + [t.grad if t is not None else None for t in leaves]


def _check(backend, case, relu, dtype=torch.float32, channels_last=False):
    x, weight, bias, kw = _make(case, dtype, channels_last)
    act = "relu" if relu else None
    with fastalex.backend(backend):
        ours = _grads(lambda a, b, c: fa.conv2d(a, b, c, activation=act, **kw), x, weight, bias)
    theirs = _grads(lambda a, b, c: _reference(a, b, c, relu, **kw), x, weight, bias)
    names = ("output", "grad_input", "grad_weight", "grad_bias")
    if dtype == torch.float32:
        exact = _grads(lambda a, b, c: _independent64(a, b, c, relu, **kw), x.double(), weight.double(),
                       bias.double() if bias is not None else None)
        for name, a, b, r in zip(names, ours, theirs, exact):
            if b is not None:
                assert_rel_close(a, b, what=f"{name} {case[0]} relu={relu}")
                assert_rel_close(a, r.to(a.dtype), what=f"{name} {case[0]} relu={relu} against float64")
    else:
        ref64 = _grads(lambda a, b, c: _reference(a, b, c, relu, **kw), x.double(), weight.double(),
                       bias.double() if bias is not None else None)
        for name, a, b, r in zip(names, ours, theirs, ref64):
            if b is not None:
                assert_close(a, b, ref64=r, torch_out=b, what=f"{name} {case[0]} relu={relu}")
    assert _layout(ours[0]) == _layout(theirs[0]), f"output strides {ours[0].stride()} vs {theirs[0].stride()}"
    assert _layout(ours[1]) == _layout(x), "grad_input keeps the input's layout"


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv_relu"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_parity(backend, case, relu, channels_last):
    _check(backend, case, relu, channels_last=channels_last)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[4]], ids=[CASES[0][0], CASES[1][0], CASES[4][0]])
def test_fp16_triton(case):
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    _check("triton", case, relu=True, dtype=torch.float16, channels_last=True)


def test_first_layer_needs_no_input_gradient(monkeypatch):
    """The first layer's input needs no gradient: grad_input never runs; grad_weight and grad_bias do."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    module = sys.modules["fastalex.ops.conv2d"]  # fastalex.ops.conv2d is the op; the module holds its backward

    def no_grad_input(*args, **kwargs):
        raise AssertionError("grad_input computed for an input that needs none")

    monkeypatch.setattr(module, "conv2d_grad_input", no_grad_input)
    x, weight, bias, kw = _make(CASES[0], torch.float32, True)
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    with fastalex.backend("triton"):
        fa.conv2d_relu(x, w, b, **kw).sum().backward()
    w_ref, b_ref = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    _reference(x, w_ref, b_ref, True, **kw).sum().backward()
    assert_rel_close(w.grad, w_ref.grad, what="grad_weight")
    assert_rel_close(b.grad, b_ref.grad, what="grad_bias")


def test_frozen_weight_bias_gradient():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, kw = _make(CASES[2], torch.float32, False)
    b = bias.clone().requires_grad_()
    xg = x.clone().requires_grad_()
    with fastalex.backend("triton"):
        fa.conv2d_relu(xg, weight, b, **kw).sum().backward()
    b_ref, x_ref = bias.clone().requires_grad_(), x.clone().requires_grad_()
    _reference(x_ref, weight, b_ref, True, **kw).sum().backward()
    assert_rel_close(b.grad, b_ref.grad, what="grad_bias")
    assert_rel_close(xg.grad, x_ref.grad, what="grad_input")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
def test_unbatched_and_module(backend):
    torch.manual_seed(0)
    m = fastalex.nn.Conv2dReLU(3, 8, 11, stride=4, padding=(1, 2, 1, 2))
    assert isinstance(m, torch.nn.Conv2d)
    ref = torch.nn.Conv2d(3, 8, 11, stride=4)
    ref.load_state_dict(m.state_dict())  # same parameters, same keys
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 27, 27)
    with fastalex.backend(backend):
        y = m(x)
        y3 = m(x[0])
    assert y.shape == (2, 8, 5, 5)  # (27 + 1 + 2 - 11) // 4 + 1
    expected = F.relu(ref(F.pad(x, (1, 2, 1, 2))))
    assert_rel_close(y.detach(), expected.detach(), what="module")
    assert_rel_close(y3.detach(), expected[0].detach(), what="unbatched")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
def test_empty_batch(backend):
    x = torch.randn(0, 3, 9, 9, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with fastalex.backend(backend):
        y = fa.conv2d_relu(x, w, None, padding=1)
    assert y.shape == (0, 4, 9, 9)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))


def test_opcheck():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, _ = _make(CASES[1], torch.float32, True)
    args = [x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), [1, 1], [2, 2, 2, 2], 2, True, "triton"]
    torch.library.opcheck(torch.ops.fastalex.conv2d.default, args)
    x, weight, _, _ = _make(CASES[4], torch.float32, False)
    torch.library.opcheck(torch.ops.fastalex.conv2d.default,
                          [x.requires_grad_(), weight.requires_grad_(), None, [2, 1], [0, 1, 2, 0], 2, False, "triton"])


def test_tf32_follows_torch(monkeypatch):
    module = sys.modules["fastalex.ops.conv2d"]
    monkeypatch.setattr(module, "interpreting", lambda: False)  # as on a GPU
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert module.precision(torch.float32) == "ieee"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert module.precision(torch.float32) == "tf32"
    assert module.precision(torch.bfloat16) == "tf32"  # read by Triton for fp32 operands only
    monkeypatch.setattr(module, "interpreting", lambda: True)
    assert module.precision(torch.float32) == "ieee"


def _both_layouts(candidates, n_cols):
    """Every config of a candidate list, its channels_last and NCHW orders together."""
    return dict.fromkeys(candidates(n_cols) + candidates(n_cols, channels_last=False))


@pytest.mark.parametrize("case", [CASES[0], CASES[1], WIDE_CASES[1]], ids=["rows", "gather", "taps"])
def test_every_triton_config(case):
    """Every candidate config of the three kernels, through the kernels' own ReLU mask for the backward."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, kw = _make(case, torch.float32, True)
    stride = (kw["stride"],) * 2 if isinstance(kw["stride"], int) else kw["stride"]
    left, _, top, _ = _spelled_out(kw["padding"])
    geo = conv_kernels.ConvGeometry(*weight.shape[2:], *stride, top, left, kw["groups"])
    y_ref = _reference(x, weight, bias, True, **kw)
    grad = torch.randn_like(y_ref)
    for cfg in _both_layouts(conv_kernels.forward_candidates, 4):
        y = torch.full_like(y_ref, float("nan"))
        conv_kernels.conv2d_forward(x, weight, bias, y, geo, "ieee", True, config=cfg)
        assert_rel_close(y, y_ref, what=str(cfg))
    x_r = x.clone().requires_grad_()
    _reference(x_r, weight, bias, True, **kw).backward(grad)
    for cfg in _both_layouts(conv_kernels.grad_input_candidates, 3):
        dx = torch.full_like(x, float("nan"))
        conv_kernels.conv2d_grad_input(grad, y_ref, weight, dx, geo, "ieee", config=cfg)
        assert_rel_close(dx, x_r.grad, what=str(cfg))
    w_r = weight.clone().requires_grad_()
    _reference(x, w_r, bias, True, **kw).backward(grad)
    for cfg in _both_layouts(conv_kernels.grad_weight_candidates, 4):
        dw, _ = conv_kernels.conv2d_grad_weight(grad, y_ref, x, tuple(weight.shape), geo, "ieee", True, config=cfg)
        assert_rel_close(dw, w_r.grad, what=str(cfg))


@pytest.mark.parametrize("strategy", ["taps", "few-channels"])
@pytest.mark.parametrize("case", WIDE_CASES + [CASES[0], CASES[4]], ids=[c[0] for c in WIDE_CASES + [CASES[0], CASES[4]]])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_both_strategies(monkeypatch, strategy, case, channels_last):
    """Each strategy at every channel count, whatever FEW_CHANNELS would pick: the tap-by-tap kernels, or
    the few-channel routes (the row layout for one group, the gather kernels for several)."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    monkeypatch.setattr(conv_kernels, "FEW_CHANNELS", 0 if strategy == "taps" else 1 << 30)
    _check("triton", case, relu=True, channels_last=channels_last)


def test_row_layout_from_any_memory_order():
    """The padded image is laid out (N, H, W, C') whatever the input's order in memory (here N, W, C, H,
    read with step 2 along H), as a fuzz case once found it was not."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 1, 7, generator=g).permute(0, 2, 3, 1)[:, :, 1::2, :]  # (3, 1, 3, 5)
    w = torch.randn(3, 1, 2, 1, generator=g)
    y = torch.full((3, 3, 3, 4), float("nan"))
    conv_kernels.conv2d_forward(x, w, None, y, conv_kernels.ConvGeometry(2, 1, 2, 2, 3, 3, 1), "ieee", False)
    assert_rel_close(y, _reference(x, w, None, False, stride=2, padding=(3, 0, 3, 0), groups=1))


def test_row_layout_past_int32_takes_the_gather_kernels(monkeypatch):
    """A padded image past the per-sample int32 limit (here lowered to between the image's and the padded
    image's sizes) is not laid out by rows; the gather kernels compute the same convolution."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, _, _ = _make(CASES[0], torch.float32, True)
    geo = conv_kernels.ConvGeometry(11, 11, 4, 4, 1, 1, 1)
    y = torch.empty(2, 8, 5, 5)
    rows = conv_kernels._row_layout(x, y, geo)
    assert rows is not None and rows.hp * rows.wp * rows.c_pad > 3 * 27 * 27
    monkeypatch.setattr(conv_kernels._common, "MAX_SAMPLE_EXTENT", 3 * 27 * 27 + 1)
    assert conv_kernels._row_layout(x, y, geo) is None
    _check("triton", CASES[0], relu=True, channels_last=True)


def test_three_tile_forward_configs():
    """conv1's 96 channels (here 40: 3 tiles of 16) in one program per output block."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    case = ("three-tiles", 2, 3, 15, 15, 40, 11, 4, (1, 2, 1, 2), 1, True)
    x, weight, bias, kw = _make(case, torch.float32, True)
    y_ref = _reference(x, weight, bias, True, **kw)
    configs = [c for c in conv_kernels.forward_candidates(40) if c.n_tiles == 3]
    assert configs and conv_kernels.forward_candidates(96)[0].n_tiles == 3
    for cfg in configs:
        y = torch.full_like(y_ref, float("nan"))
        conv_kernels.conv2d_forward(x, weight, bias, y, conv_kernels.ConvGeometry(11, 11, 4, 4, 1, 1, 1), "ieee",
                                    True, config=cfg)
        assert_rel_close(y, y_ref, what=str(cfg))


def test_grad_weight_chunks_sum_in_order(monkeypatch):
    """Many reduction chunks (as at conv1's batch 128) give the same sum as one."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, kw = _make(CASES[2], torch.float32, False)
    geo = conv_kernels.ConvGeometry(3, 3, 1, 1, 1, 1, 1)
    y = _reference(x, weight, bias, False, **kw)
    grad = torch.randn_like(y)
    one, _ = conv_kernels.conv2d_grad_weight(grad, None, x, tuple(weight.shape), geo, "ieee", False)
    monkeypatch.setattr(conv_kernels, "R_CHUNK", 16)
    many, _ = conv_kernels.conv2d_grad_weight(grad, None, x, tuple(weight.shape), geo, "ieee", False)
    assert rel_error(many, one) < CHUNKED_SUM_REL


BAD = [
    (dict(weight=torch.randn(8, 3, 3)), ValueError, r"conv2d: weight must be 4-D \(C_out, C_in / groups, kH, kW\), got 3-D"),
    (dict(weight=torch.randn(8, 2, 3, 3)), ValueError, r"conv2d: weight takes 2 input channels per group"),
    (dict(groups=2), ValueError, r"conv2d: input channels \(3\) must be divisible by groups \(2\)"),
    (dict(weight=torch.randn(7, 1, 3, 3), groups=3), ValueError,
     r"conv2d: output channels \(weight.shape\[0\] = 7\) must be divisible by groups \(3\)"),
    (dict(groups=0), ValueError, r"conv2d: groups must be >= 1, got 0"),
    (dict(stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
    (dict(stride=(1, -1)), ValueError, r"conv2d: stride\[1\] must be >= 1, got -1"),
    (dict(padding=-1), ValueError, r"conv2d: padding must be >= 0, got -1"),
    (dict(padding=(1, 2, -1, 0)), ValueError, r"conv2d: padding\[2\] must be >= 0, got -1"),
    (dict(padding=(1, 2, 3)), ValueError, r"conv2d: padding must be an int, a pair \(h, w\) or a 4-tuple"),
    (dict(padding="same"), TypeError, r"conv2d: padding must be an int, a pair or a 4-tuple of ints"),
    (dict(bias=torch.randn(7)), ValueError, r"conv2d: bias must have shape \(C_out,\) = \(8,\), got \(7,\)"),
    (dict(weight=torch.randn(8, 3, 3, 3, dtype=torch.float64)), TypeError,
     r"conv2d: weight has dtype torch.float64 but input has torch.float32"),
    (dict(bias=torch.randn(8, dtype=torch.float16)), TypeError, r"conv2d: bias has dtype torch.float16"),
    (dict(weight=torch.randn(8, 3, 9, 9)), ValueError, r"conv2d: output size would be 0x0 for input size 8x8"),
    (dict(activation="gelu"), ValueError, r"conv2d: activation must be None or 'relu', got 'gelu'"),
    (dict(input=torch.ones(1, 3, 8, 8, dtype=torch.int32)), TypeError, r"conv2d: input must have a floating point"),
    (dict(input=torch.ones(3, 8)), ValueError, r"conv2d: input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got 2-D"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input(kwargs, error, message):
    args = dict(input=torch.randn(1, 3, 8, 8), weight=torch.randn(8, 3, 3, 3), bias=None)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        fa.conv2d(**args)


def test_bad_devices():
    x = torch.randn(1, 3, 8, 8)
    w = torch.randn(8, 3, 3, 3, device="meta")
    with pytest.raises(ValueError, match=r"conv2d: weight is on meta but input is on cpu"):
        fa.conv2d(x, w)


def test_conv2d_relu_names_itself_in_errors():
    with pytest.raises(ValueError, match=r"^conv2d_relu: groups must be >= 1"):
        fa.conv2d_relu(torch.randn(1, 3, 8, 8), torch.randn(8, 3, 3, 3), groups=0)


def test_module_rejects_string_padding():
    with pytest.raises(ValueError, match="Conv2dReLU: padding must be ints"):
        fastalex.nn.Conv2dReLU(3, 8, 3, padding="same")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
def test_gpu_parity(dtype, channels_last):
    if "triton" not in fastalex.backends():
        pytest.skip("triton unavailable")
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # IEEE fp32 on both sides
    try:
        for case in CASES:
            x, weight, bias, kw = _make(case, dtype, channels_last)
            x, weight = x.cuda(), weight.cuda()
            bias = bias.cuda() if bias is not None else None
            with fastalex.backend("triton"):
                ours = _grads(lambda a, b, c: fa.conv2d_relu(a, b, c, **kw), x, weight, bias)
            theirs = _grads(lambda a, b, c: _reference(a, b, c, True, **kw), x, weight, bias)
            ref64 = _grads(lambda a, b, c: _reference(a, b, c, True, **kw), x.double(), weight.double(),
                           bias.double() if bias is not None else None)
            for a, b, r in zip(ours, theirs, ref64):
                if b is None:
                    continue
                if dtype == torch.float32:
                    assert_rel_close(a, b, what=case[0])
                else:
                    assert_close(a, b, ref64=r, torch_out=b, what=case[0])
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def test_bench_conv_rows(monkeypatch):
    """The conv benchmark's closures compute what torch's do, and its rows carry FLOPs and the rate."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    from fastalex.bench import conv

    case = conv.ConvCase("conv1", 1, 3, 27, 4, 11, 4, (1, 2, 1, 2), torch.float32)
    assert case.out_hw == 5 and case.flops() == (2.0 * 25 * 4 * 3 * 121, 2 * 2.0 * 25 * 4 * 3 * 121)
    x, w, b, grad = case.make(torch.device("cpu"))
    ours_fwd, _ = conv.conv_fns(case, "triton", x, w, b, grad)
    theirs_fwd, _ = conv.conv_fns(case, "torch", x, w, b, grad)
    assert_rel_close(ours_fwd(), theirs_fwd(), what="bench closure")
    monkeypatch.setattr(conv, "time_ms", lambda fn, device: (fn(), 2.0)[1])
    rows = conv.measure_conv(case, "triton", torch.device("cpu"), matmul=100.0)
    assert [r.op for r in rows] == ["conv_relu_fwd", "conv_relu_fwd+bwd"]
    assert rows[0].unit == "TFLOP/s" and rows[0].rate == pytest.approx(case.flops()[0] / 2e-3 / 1e12)


def test_torch_compile_fullgraph():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    torch.compiler.reset()
    x, weight, bias, kw = _make(CASES[1], torch.float32, True)
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    with fastalex.backend("triton"):
        fn = torch.compile(lambda a, c, d: fa.conv2d_relu(a, c, d, **kw), fullgraph=True, backend="aot_eager")
        y = fn(x, w, b)
    y.sum().backward()
    w_ref, b_ref = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    y_ref = _reference(x, w_ref, b_ref, True, **kw)
    y_ref.sum().backward()
    assert_rel_close(y.detach(), y_ref.detach(), what="compiled forward")
    assert_rel_close(w.grad, w_ref.grad, what="compiled grad_weight")
    torch.compiler.reset()


def test_autocast_casts_operands():
    """Under autocast the operands go to the autocast dtype, as torch does for its convolution."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, kw = _make(CASES[2], torch.float32, False)
    with torch.autocast("cpu", dtype=torch.float16), fastalex.backend("triton"):
        y = fa.conv2d_relu(x.half(), weight, bias, **kw)  # fp16 input, fp32 parameters: no dtype error
    assert y.dtype == torch.float16
    assert_rel_close(y.float(), _reference(x, weight, bias, True, **kw), rel=AUTOCAST_FP16_REL, what="autocast")


def test_non_contiguous_bias():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, _, kw = _make(CASES[2], torch.float32, False)
    bias = torch.randn(2 * weight.shape[0])[::2]
    with fastalex.backend("triton"):
        y = fa.conv2d_relu(x, weight, bias, **kw)
    assert_rel_close(y, _reference(x, weight, bias, True, **kw), what="strided bias")


def test_nan_propagates_like_torch():
    """torch.relu keeps NaN, and its backward passes the gradient where the output is NaN."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x, weight, bias, kw = _make(CASES[2], torch.float32, False)
    x[0, 0, 3, 3] = float("nan")
    with fastalex.backend("triton"):
        ours = _grads(lambda a, b, c: fa.conv2d_relu(a, b, c, **kw), x, weight, bias)
    theirs = _grads(lambda a, b, c: _reference(a, b, c, True, **kw), x, weight, bias)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.isnan(), b.isnan())
        torch.testing.assert_close(a, b, **CONV_NAN_ELEMENTWISE, equal_nan=True)


def test_tf32_follows_torchs_new_api():
    """torch.backends.cudnn.conv.fp32_precision is what torch's convolutions follow; the legacy flag
    raises once the new API sets conv and RNN apart."""
    module = sys.modules["fastalex.ops.conv2d"]
    conv = torch.backends.cudnn.conv
    saved = conv.fp32_precision
    try:
        conv.fp32_precision = "ieee"
        assert module.torch_conv_uses_tf32() is False
        conv.fp32_precision = "tf32"
        assert module.torch_conv_uses_tf32() is True
    finally:
        conv.fp32_precision = saved


def test_module_takes_torchs_positional_arguments():
    m = fastalex.nn.Conv2d(4, 8, 3, 1, 1, 1, 2)  # torch's order: stride, padding, dilation, groups
    ref = torch.nn.Conv2d(4, 8, 3, 1, 1, 1, 2)
    assert m.groups == ref.groups == 2 and m.weight.shape == ref.weight.shape
    with pytest.raises(ValueError, match=r"Conv2d: dilation must be 1, got 2"):
        fastalex.nn.Conv2d(4, 8, 3, dilation=2)
    with pytest.raises(ValueError, match=r"Conv2dReLU: padding_mode must be 'zeros', got 'reflect'"):
        fastalex.nn.Conv2dReLU(4, 8, 3, padding_mode="reflect")
