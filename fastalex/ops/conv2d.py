"""fastalex::conv2d: the custom op (convolution, optional bias, optional ReLU), its fake implementation
and its autograd, on the triton backend (the cuda, cpu and torch backends run torch's convolution and
never reach this op: fastalex._backends.NATIVE_OPS).

Arguments arrive checked (fastalex/functional.py): input (N, Cin, H, W), weight (Cout, Cin/groups,
KH, KW), padding as (left, right, top, bottom). Autograd saves what the backward needs and no more:
the input only if the weight needs a gradient, the weight only if the input does, and the output
when there is a ReLU (it is the ReLU's mask; y > 0 exactly where the pre-activation was).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch._prims_common import suggest_memory_format

from fastalex._checks import conv_output_size
from fastalex.kernels._common import interpreting


def torch_conv_uses_tf32() -> bool:
    """Whether torch's own convolutions run fp32 as TF32: torch.backends.cudnn.conv.fp32_precision
    (which inherits from cudnn.fp32_precision and backends.fp32_precision), else the legacy
    torch.backends.cudnn.allow_tf32. Reading the legacy flag raises once the new API has set the
    conv and RNN precisions apart, hence the new one first."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    level = getattr(conv, "fp32_precision", None)
    if level in ("tf32", "ieee"):
        return level == "tf32"
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return False


def precision(dtype: torch.dtype) -> str:
    """How tl.dot multiplies fp32 data: TF32 exactly when torch would use it for a convolution, else
    IEEE fp32; always IEEE in the interpreter. fp16/bf16 run natively on the tensor cores (Triton's
    default setting, which only fp32 operands read)."""
    if interpreting():
        return "ieee"
    if dtype == torch.float32:
        return "tf32" if torch_conv_uses_tf32() else "ieee"
    return "tf32"


def _geometry(weight_shape, stride, padding, groups):
    from fastalex.kernels.conv2d import ConvGeometry

    left, _, top, _ = padding
    return ConvGeometry(weight_shape[2], weight_shape[3], stride[0], stride[1], top, left, groups)


def _empty_output(input: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    n, _, h, w = input.shape
    left, right, top, bottom = padding
    shape = (n, weight.shape[0], conv_output_size(h, weight.shape[2], stride[0], top, bottom),
             conv_output_size(w, weight.shape[3], stride[1], left, right))
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=suggest_memory_format(input))


@torch.library.custom_op("fastalex::conv2d", mutates_args=())
def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
           padding: Sequence[int], groups: int, relu: bool, backend: str) -> torch.Tensor:
    from fastalex.kernels import conv2d as kernels

    out = _empty_output(input, weight, stride, padding)
    return kernels.conv2d_forward(input, weight, bias, out, _geometry(weight.shape, stride, padding, groups),
                                  precision(input.dtype), relu)


@conv2d.register_fake
def _(input, weight, bias, stride, padding, groups, relu, backend):
    return _empty_output(input, weight, stride, padding)


@torch.library.custom_op("fastalex::conv2d_grad_input", mutates_args=())
def conv2d_grad_input(grad_output: torch.Tensor, output: torch.Tensor | None, weight: torch.Tensor,
                      input_size: Sequence[int], channels_last: bool, stride: Sequence[int], padding: Sequence[int],
                      groups: int, backend: str) -> torch.Tensor:
    """The input's gradient; `output` (the forward's) masks grad_output by the ReLU, None without one."""
    from fastalex.kernels import conv2d as kernels

    grad_input = _empty_like_input(grad_output, input_size, channels_last)
    return kernels.conv2d_grad_input(grad_output, output, weight, grad_input,
                                     _geometry(weight.shape, stride, padding, groups), precision(grad_output.dtype))


def _empty_like_input(grad_output, input_size, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(input_size), dtype=grad_output.dtype, device=grad_output.device, memory_format=fmt)


@conv2d_grad_input.register_fake
def _(grad_output, output, weight, input_size, channels_last, stride, padding, groups, backend):
    return _empty_like_input(grad_output, input_size, channels_last)


@torch.library.custom_op("fastalex::conv2d_grad_weight", mutates_args=())
def conv2d_grad_weight(grad_output: torch.Tensor, output: torch.Tensor | None, input: torch.Tensor,
                       weight_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], groups: int,
                       with_bias: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_weight, grad_bias) in the input's dtype; grad_bias is empty when with_bias is False."""
    from fastalex.kernels import conv2d as kernels

    grad_w, grad_b = kernels.conv2d_grad_weight(grad_output, output, input, tuple(weight_size),
                                                _geometry(weight_size, stride, padding, groups),
                                                precision(input.dtype), with_bias)
    grad_b = grad_b if grad_b is not None else grad_w.new_empty(0)
    return grad_w.to(input.dtype).contiguous(), grad_b.to(input.dtype)


@conv2d_grad_weight.register_fake
def _(grad_output, output, input, weight_size, stride, padding, groups, with_bias, backend):
    grad_w = input.new_empty(tuple(weight_size))
    return grad_w, input.new_empty((weight_size[0],) if with_bias else (0,))


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, groups, relu, backend = inputs
    needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
    ctx.save_for_backward(input if needs_weight else None, weight if needs_input else None,
                          output if relu else None)
    ctx.input_size = tuple(input.shape)
    ctx.weight_size = tuple(weight.shape)
    ctx.channels_last = suggest_memory_format(input) == torch.channels_last
    ctx.params = (stride, padding, groups, backend)
    ctx.with_bias = bias is not None


def _backward(ctx, grad_output):
    input, weight, output = ctx.saved_tensors
    stride, padding, groups, backend = ctx.params
    needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
    grad_input = grad_weight = grad_bias = None
    if output is not None:
        # The ReLU's backward once here, rather than in every tap's (grad_input) or K tile's (grad_weight)
        # load of grad_output in the kernels; torch's own op, so NaN outputs pass the gradient as in torch.
        grad_output, output = torch.ops.aten.threshold_backward(grad_output, output, 0.0), None
    if needs_input:
        grad_input = conv2d_grad_input(grad_output, output, weight, ctx.input_size, ctx.channels_last, stride,
                                       padding, groups, backend)
    if needs_weight:
        grad_weight, grad_bias = conv2d_grad_weight(grad_output, output, input, ctx.weight_size, stride, padding,
                                                    groups, needs_bias, backend)
        grad_bias = grad_bias if needs_bias else None
    elif needs_bias:  # a frozen weight: the bias gradient alone, without the input
        grad_bias = grad_output.sum((0, 2, 3), dtype=torch.float32).to(grad_output.dtype)
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


conv2d.register_autograd(_backward, setup_context=_setup_context)
