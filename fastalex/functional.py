"""Public functions: argument checks, then dispatch to a backend (fastalex/_backends.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastalex import _backends
from fastalex import ops as _ops
from fastalex._checks import check_finite, check_int, check_pair, check_tensor, conv_output_size, pool_output_size
from fastalex.ops.max_pool2d import winners_to_indices as _winners_to_indices


def local_response_norm(input: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> torch.Tensor:
    """Local response normalization across channels, as torch.nn.functional.local_response_norm.

    b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2)^beta over the window
    [c - size // 2, c + (size - 1) // 2], zero-padded. `input` is (N, C, *), dim >= 3.

    Note the alpha / size: the paper's alpha = 1e-4 with n = 5 (applied to the raw sum) is
    alpha = 5e-4 here.
    """
    op = "local_response_norm"
    check_tensor(op, "input", input, 3)
    size = check_int(op, "size", size, 1)
    alpha = check_finite(op, "alpha", alpha)
    beta = check_finite(op, "beta", beta)
    k = check_finite(op, "k", k)
    backend = _backends.for_call(op, input, size)
    if backend == "torch":
        if input.numel() == 0:  # torch's view(..., -1) cannot infer a size from zero elements
            return input * 0
        return F.local_response_norm(input, size, alpha, beta, k)
    return _ops.local_response_norm(input, size, alpha, beta, k, backend)


def _pool_geometry(op: str, input: torch.Tensor, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (kernel, stride, padding, dilation) pairs for a (.., H, W) input, as torch would take them."""
    kernel = check_pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else \
        check_pair(op, "stride", stride, 1)
    padding = check_pair(op, "padding", padding, 0)
    dilation = check_pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding={padding} with "
                         f"kernel_size={kernel}")
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"{op}: ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    h, w = input.shape[-2:]
    out = tuple(pool_output_size(size, *args, ceil_mode)
                for size, *args in zip((h, w), kernel, stride, padding, dilation))
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: output size would be {out[0]}x{out[1]} for input size {h}x{w} with "
                         f"kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}: "
                         "the input is too small")
    for dim, size, k, s, p, d, n in zip("HW", (h, w), kernel, stride, padding, dilation, out):
        # With padding <= kernel / 2 every undilated window holds an input element; a dilated one can
        # straddle the input entirely (torch then reads outside it).
        if d > 1 and any(all(not 0 <= o * s - p + j * d < size for j in range(k)) for o in range(n)):
            raise ValueError(f"{op}: with dilation={dilation}, padding={padding} and kernel_size={kernel}, a window "
                             f"along {dim} covers no input element (input size {h}x{w})")
    return kernel, stride, padding, dilation


def _check_pool_input(op: str, input, dims: tuple[int, ...]) -> None:
    check_tensor(op, "input", input, 0)
    if input.dim() not in dims:
        shapes = " or ".join({3: "3-D (C, H, W)", 4: "4-D (N, C, H, W)"}[d] for d in dims)
        raise ValueError(f"{op}: input must be {shapes}, got {input.dim()}-D with shape {tuple(input.shape)}")
    if any(s == 0 for s in input.shape[-3:]):
        raise ValueError(f"{op}: input must have non-zero C, H and W (only the batch may be empty), "
                         f"got shape {tuple(input.shape)}")


def max_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-D max-pooling, as torch.nn.functional.max_pool2d (same arguments, values, gradients, indices).

    input is (N, C, H, W) or (C, H, W), NCHW or channels_last. Ties go to the first maximum in the
    window's row-major scan and NaN propagates, as in torch. The backward keeps a byte per output (the
    winner's position in its window) instead of torch's int64 index; return_indices=True still
    returns torch's int64 indices.
    """
    op = "max_pool2d"
    _check_pool_input(op, input, (3, 4))
    kernel, stride, padding, dilation = _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    backend = _backends.for_call(op, input)
    if backend == "torch":
        return F.max_pool2d(input, kernel, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)
    batched = input if input.dim() == 4 else input.unsqueeze(0)
    out, winners = _ops.max_pool2d(batched, kernel, stride, padding, dilation, ceil_mode, False, backend)
    if input.dim() == 3:
        out, winners = out.squeeze(0), winners.squeeze(0)
    if not return_indices:
        return out
    return out, _winners_to_indices(winners, input.shape[-1], kernel, stride, padding, dilation)


def relu_max_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode: bool = False) -> torch.Tensor:
    """max_pool2d(relu(input), ...), values and gradients as torch's F.max_pool2d(F.relu(input), ...).

    Max commutes with ReLU, so on the triton backend one kernel pools and clamps the pooled values (no
    ReLU pass, and the convolution before it needs no ReLU mask in its backward): AlexNet's conv5 tail
    (and conv1/conv2 in the torchvision variant). Other backends compose relu and max_pool2d.
    """
    op = "relu_max_pool2d"
    _check_pool_input(op, input, (3, 4))
    kernel, stride, padding, dilation = _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    backend = _backends.for_call(op, input)
    if backend == "torch":
        return F.max_pool2d(F.relu(input), kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    fused = _backends.runs_natively(backend, op)
    batched = input if input.dim() == 4 else input.unsqueeze(0)
    out = _ops.max_pool2d(batched if fused else F.relu(batched), kernel, stride, padding, dilation, ceil_mode, fused,
                          backend)[0]
    return out if input.dim() == 4 else out.squeeze(0)


def relu_lrn_max_pool2d(input: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0, kernel_size=3, stride=2, padding=0, ceil_mode: bool = False) -> torch.Tensor:
    """max_pool2d(local_response_norm(relu(input), size, alpha, beta, k), kernel_size, stride, padding,
    ceil_mode=ceil_mode) in one pass each way on the triton backend: AlexNet's conv1/conv2 tails.

    input is (N, C, H, W). LRN's arguments are torch's (alpha is divided by size: the paper's
    alpha = 1e-4 on the raw sum with n = 5 is alpha = 5e-4 here; the paper's k is 2). Autograd keeps
    the input and a byte per output; the backward recomputes ReLU and LRN from the input.
    """
    op = "relu_lrn_max_pool2d"
    _check_pool_input(op, input, (4,))
    size = check_int(op, "size", size, 1)
    alpha = check_finite(op, "alpha", alpha)
    beta = check_finite(op, "beta", beta)
    k = check_finite(op, "k", k)
    kernel, stride, padding, _ = _pool_geometry(op, input, kernel_size, stride, padding, 1, ceil_mode)
    backend = _backends.for_call(op, input, size)
    if backend == "torch":
        lrn = F.local_response_norm(F.relu(input), size, alpha, beta, k) if input.numel() else input * 0
        return F.max_pool2d(lrn, kernel, stride, padding, ceil_mode=ceil_mode)
    return _ops.relu_lrn_max_pool2d(input, size, alpha, beta, k, kernel, stride, padding, ceil_mode, backend)[0]


def _conv_padding(op: str, padding) -> tuple[int, int, int, int]:
    """padding as (left, right, top, bottom): an int, an (h, w) pair, or torch.nn.functional.pad's
    4-tuple (left, right, top, bottom)."""
    if isinstance(padding, (tuple, list, torch.Size)):
        if len(padding) == 2:
            h, w = (check_int(op, f"padding[{i}]", v, 0) for i, v in enumerate(padding))
            return w, w, h, h
        if len(padding) == 4:
            return tuple(check_int(op, f"padding[{i}]", v, 0) for i, v in enumerate(padding))  # type: ignore[return-value]
        raise ValueError(f"{op}: padding must be an int, a pair (h, w) or a 4-tuple (left, right, top, bottom), "
                         f"got {tuple(padding)}")
    if isinstance(padding, str):
        raise TypeError(f"{op}: padding must be an int, a pair or a 4-tuple of ints, got the string {padding!r}")
    p = check_int(op, "padding", padding, 0)
    return p, p, p, p


def _check_conv_args(op: str, input, weight, bias, groups: int):
    check_tensor(op, "input", input, 0)
    if input.dim() not in (3, 4):
        raise ValueError(f"{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got {input.dim()}-D with shape "
                         f"{tuple(input.shape)}")
    check_tensor(op, "weight", weight, 0)
    if weight.dim() != 4:
        raise ValueError(f"{op}: weight must be 4-D (C_out, C_in / groups, kH, kW), got {weight.dim()}-D with shape "
                         f"{tuple(weight.shape)}")
    if bias is not None:
        check_tensor(op, "bias", bias, 0)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but input has {input.dtype}; they must match")
        if t.device != input.device:
            raise ValueError(f"{op}: {name} is on {t.device} but input is on {input.device}; they must match")
    c_in, c_out = input.shape[-3], weight.shape[0]
    if c_in % groups:
        raise ValueError(f"{op}: input channels ({c_in}) must be divisible by groups ({groups})")
    if c_out % groups:
        raise ValueError(f"{op}: output channels (weight.shape[0] = {c_out}) must be divisible by groups ({groups})")
    if weight.shape[1] * groups != c_in:
        raise ValueError(f"{op}: weight takes {weight.shape[1]} input channels per group (weight.shape[1]) x "
                         f"{groups} groups = {weight.shape[1] * groups}, but input has {c_in} channels")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"{op}: bias must have shape (C_out,) = ({c_out},), got {tuple(bias.shape)}")


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           groups: int = 1, activation: str | None = None) -> torch.Tensor:
    """2-D convolution, as torch.nn.functional.conv2d (no dilation), then `activation` (None or "relu").

    padding is an int, a pair (h, w), or a 4-tuple (left, right, top, bottom) in
    torch.nn.functional.pad's order: asymmetric padding costs no extra pass (the paper's first layer,
    224 -> 55 with 11x11 stride 4, pads (1, 2)). input is (N, C_in, H, W) or (C_in, H, W); weight
    (C_out, C_in / groups, kH, kW); bias (C_out,). On the triton backend the bias and ReLU run in the
    convolution's epilogue and the backward applies the ReLU mask as it loads the output gradient;
    the cpu, cuda and torch backends run torch's convolution (cuDNN on a GPU).
    """
    op = "conv2d_relu" if activation == "relu" else "conv2d"
    if activation not in (None, "relu"):
        raise ValueError(f"{op}: activation must be None or 'relu', got {activation!r}")
    groups = check_int(op, "groups", groups, 1)
    if isinstance(input, torch.Tensor) and torch.is_autocast_enabled(input.device.type):
        # torch casts a convolution's operands to the autocast dtype before anything else (a custom op is
        # not on autocast's lists, so do what it would): floating point tensors other than float64.
        dtype = torch.get_autocast_dtype(input.device.type)

        def cast(t):
            eligible = isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
            return t.to(dtype) if eligible else t

        input, weight, bias = cast(input), cast(weight), cast(bias)
    _check_conv_args(op, input, weight, bias, groups)
    stride = check_pair(op, "stride", stride, 1)
    pad = _conv_padding(op, padding)
    left, right, top, bottom = pad
    h, w = input.shape[-2:]
    kh, kw = weight.shape[2:]
    out = (conv_output_size(h, kh, stride[0], top, bottom), conv_output_size(w, kw, stride[1], left, right))
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: output size would be {out[0]}x{out[1]} for input size {h}x{w} padded to "
                         f"{h + top + bottom}x{w + left + right} with a {kh}x{kw} kernel and stride {stride}: "
                         "the input is too small")
    if input.dim() == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, pad, groups, activation).squeeze(0)
    backend = _backends.for_call(op, input)
    relu = activation == "relu"
    if not _backends.runs_natively(backend, "conv2d"):  # torch's convolution (an asymmetric padding is an extra pad pass)
        input = _canonical_size1_strides(input)
        if left == right and top == bottom:
            y = F.conv2d(input, weight, bias, stride, (top, left), groups=groups)
        else:
            y = F.conv2d(F.pad(input, pad), weight, bias, stride, 0, groups=groups)
        return F.relu(y) if relu else y
    return _ops.conv2d(input, weight, bias, stride, pad, groups, relu, backend)


def _canonical_size1_strides(t: torch.Tensor) -> torch.Tensor:
    """`t` (4-d) with the strides of its layout (NCHW or channels_last) also in its size-1 dimensions: the
    same elements, no copy. torch's CPU convolution (2.14) reads a size-1 dimension's stride when it picks
    a layout, and with a channels_last weight and an input such as (1, 4, 2, 1) strided (4, 1, 4, 1) its
    grouped weight gradient is wrong."""
    if 1 not in t.shape:
        return t
    for fmt in (torch.contiguous_format, torch.channels_last):
        if t.is_contiguous(memory_format=fmt):
            canonical = torch.empty(t.shape, device="meta", memory_format=fmt).stride()
            if canonical != t.stride():
                return t.as_strided(t.shape, canonical)
            return t
    return t


def conv2d_relu(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
                groups: int = 1) -> torch.Tensor:
    """relu(conv2d(input, weight, bias, stride, padding, groups)): see conv2d."""
    return conv2d(input, weight, bias, stride, padding, groups, activation="relu")
