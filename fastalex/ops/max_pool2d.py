"""fastalex::max_pool2d: the custom op, its fake implementation and its autograd.

Arguments arrive checked (fastalex/functional.py): input is 4-D (N, C, H, W), every geometry argument
a (h, w) pair. The op returns the pooled output and the winners, each window's winning tap index
jh * kw + jw (uint8 up to 256 taps, else int32): autograd saves the winners only, a byte per output
where torch keeps an int64 index per output and the backward needs neither the input nor its values.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch._prims_common import suggest_memory_format

from fastalex._checks import pool_output_size
from fastalex.kernels._common import Pool


def winner_dtype(kernel_size: Sequence[int], relu: bool = False) -> torch.dtype:
    # With relu the winners also hold kh * kw (a window that passes no gradient): one more value.
    return torch.uint8 if kernel_size[0] * kernel_size[1] + int(relu) <= 256 else torch.int32


def winners_to_indices(winners: torch.Tensor, input_width: int, kernel_size, stride, padding,
                       dilation) -> torch.Tensor:
    """torch's int64 indices (ih * W + iw into each input plane) from the winners' tap indices."""
    ho, wo = winners.shape[-2:]
    w = winners.long()
    oh = torch.arange(ho, device=w.device).view(ho, 1)
    ow = torch.arange(wo, device=w.device).view(1, wo)
    ih = oh * stride[0] - padding[0] + torch.div(w, kernel_size[1], rounding_mode="floor") * dilation[0]
    iw = ow * stride[1] - padding[1] + (w % kernel_size[1]) * dilation[1]
    return ih * input_width + iw


def empty_outputs(input: torch.Tensor, kernel_size, stride, padding, dilation, ceil_mode, relu: bool = False):
    n, c, h, w = input.shape
    ho = pool_output_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = pool_output_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    fmt = suggest_memory_format(input)
    out = torch.empty((n, c, ho, wo), dtype=input.dtype, device=input.device, memory_format=fmt)
    winners = torch.empty((n, c, ho, wo), dtype=winner_dtype(kernel_size, relu), device=input.device,
                          memory_format=fmt)
    return out, winners


def _kernels(backend: str):
    """(forward, backward) launchers of `backend`: forward(x, y, winners, pool), backward(grad_y, winners,
    grad_x, pool), all on 4-D tensors of any strides."""
    if backend == "triton":
        from fastalex.kernels import max_pool2d as triton_kernels

        return triton_kernels.max_pool2d_forward, triton_kernels.max_pool2d_backward
    from fastalex import _extension

    ext = _extension.load()

    def forward(x, y, winners, pool: Pool):
        ext.max_pool2d_forward(x, y, winners, *pool.kernel, *pool.stride, *pool.padding, *pool.dilation)

    def backward(grad_y, winners, grad_x, pool: Pool):
        ext.max_pool2d_backward(grad_y, winners, grad_x, *pool.kernel, *pool.stride, *pool.padding, *pool.dilation)

    return forward, backward


def _pool(kernel_size, stride, padding, dilation) -> Pool:
    return Pool(tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))


@torch.library.custom_op("fastalex::max_pool2d", mutates_args=())
def max_pool2d(input: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], ceil_mode: bool, relu: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """max-pool(input), or with relu max-pool(relu(input)) (the triton backend only: its kernel applies
    the ReLU to the pooled values and marks the windows that pass no gradient)."""
    if relu and backend != "triton":
        raise ValueError(f"fastalex::max_pool2d: relu=True runs on the triton backend only, not {backend!r}")
    out, winners = empty_outputs(input, kernel_size, stride, padding, dilation, ceil_mode, relu)
    if out.numel() == 0:
        return out, winners
    pool = _pool(kernel_size, stride, padding, dilation)
    forward = _kernels(backend)[0]
    forward(input, out, winners, pool, relu=True) if relu else forward(input, out, winners, pool)
    return out, winners


@max_pool2d.register_fake
def _(input, kernel_size, stride, padding, dilation, ceil_mode, relu, backend):
    return empty_outputs(input, kernel_size, stride, padding, dilation, ceil_mode, relu)


def _empty_grad_input(grad_output: torch.Tensor, input_size: Sequence[int], channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(input_size), dtype=grad_output.dtype, device=grad_output.device, memory_format=fmt)


@torch.library.custom_op("fastalex::max_pool2d_backward", mutates_args=())
def max_pool2d_backward(grad_output: torch.Tensor, winners: torch.Tensor, input_size: Sequence[int],
                        channels_last: bool, kernel_size: Sequence[int], stride: Sequence[int],
                        padding: Sequence[int], dilation: Sequence[int], backend: str) -> torch.Tensor:
    grad_input = _empty_grad_input(grad_output, input_size, channels_last)
    if grad_input.numel() == 0:
        return grad_input
    _kernels(backend)[1](grad_output, winners, grad_input, _pool(kernel_size, stride, padding, dilation))
    return grad_input


@max_pool2d_backward.register_fake
def _(grad_output, winners, input_size, channels_last, kernel_size, stride, padding, dilation, backend):
    return _empty_grad_input(grad_output, input_size, channels_last)


def _setup_context(ctx, inputs, output):
    input, kernel_size, stride, padding, dilation, ceil_mode, relu, backend = inputs
    _, winners = output
    ctx.mark_non_differentiable(winners)
    ctx.save_for_backward(winners)
    ctx.input_size = tuple(input.shape)
    ctx.channels_last = suggest_memory_format(input) == torch.channels_last
    ctx.params = (kernel_size, stride, padding, dilation, backend)


def _backward(ctx, grad_output, _grad_winners):
    (winners,) = ctx.saved_tensors
    grad_input = max_pool2d_backward(grad_output, winners, ctx.input_size, ctx.channels_last, *ctx.params)
    return grad_input, None, None, None, None, None, None, None


max_pool2d.register_autograd(_backward, setup_context=_setup_context)
