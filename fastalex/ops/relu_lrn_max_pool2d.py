"""fastalex::relu_lrn_max_pool2d: the custom op, its fake implementation and its autograd.

    y = max_pool2d(local_response_norm(relu(x), size, alpha, beta, k), kernel_size, stride, padding, ceil_mode)

Arguments arrive checked (fastalex/functional.py); x is 4-D. On the triton backend each direction is
one fused kernel (fastalex/kernels/relu_lrn_max_pool2d.py); on the cpu and cuda backends, and for LRN
windows the fused backward does not take, the op composes the LRN and max-pool kernels. Autograd
saves x (which the preceding convolution's backward keeps anyway) and the winners, a byte per
output: the backward recomputes ReLU and the LRN from x, and needs no pass to find the winners again.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch._prims_common import suggest_memory_format

from fastalex.kernels._common import Pool
from fastalex.ops.max_pool2d import empty_outputs, max_pool2d, max_pool2d_backward
from fastalex.ops.local_response_norm import local_response_norm, local_response_norm_backward

_NO_DILATION = (1, 1)


def _fused(backend: str, size: int) -> bool:
    if backend != "triton":
        return False
    from fastalex.kernels import relu_lrn_max_pool2d as fused_kernels

    return fused_kernels.fused_supported(size)


def _pool(kernel_size, stride, padding) -> Pool:
    return Pool(tuple(kernel_size), tuple(stride), tuple(padding), _NO_DILATION)


@torch.library.custom_op("fastalex::relu_lrn_max_pool2d", mutates_args=())
def relu_lrn_max_pool2d(input: torch.Tensor, size: int, alpha: float, beta: float, k: float,
                        kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], ceil_mode: bool,
                        backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not _fused(backend, size):
        lrn = local_response_norm(torch.relu(input), size, alpha, beta, k, backend)
        return max_pool2d(lrn, kernel_size, stride, padding, _NO_DILATION, ceil_mode, False, backend)
    from fastalex.kernels import relu_lrn_max_pool2d as fused_kernels

    out, winners = empty_outputs(input, kernel_size, stride, padding, _NO_DILATION, ceil_mode)
    fused_kernels.relu_lrn_max_pool2d_forward(input, out, winners, size, alpha, beta, k,
                                              _pool(kernel_size, stride, padding))
    return out, winners


@relu_lrn_max_pool2d.register_fake
def _(input, size, alpha, beta, k, kernel_size, stride, padding, ceil_mode, backend):
    return empty_outputs(input, kernel_size, stride, padding, _NO_DILATION, ceil_mode)


@torch.library.custom_op("fastalex::relu_lrn_max_pool2d_backward", mutates_args=())
def relu_lrn_max_pool2d_backward(grad_output: torch.Tensor, winners: torch.Tensor, input: torch.Tensor, size: int,
                                 alpha: float, beta: float, k: float, kernel_size: Sequence[int],
                                 stride: Sequence[int], padding: Sequence[int], backend: str) -> torch.Tensor:
    if not _fused(backend, size):
        channels_last = suggest_memory_format(input) == torch.channels_last
        grad_lrn = max_pool2d_backward(grad_output, winners, input.shape, channels_last, kernel_size, stride, padding,
                                       _NO_DILATION, backend)
        grad_relu = local_response_norm_backward(grad_lrn, torch.relu(input), size, alpha, beta, k, backend)
        # ReLU's own backward (zero where input <= 0; a NaN input passes the gradient, as in torch).
        return torch.ops.aten.threshold_backward(grad_relu, input, 0.0)
    from fastalex.kernels import relu_lrn_max_pool2d as fused_kernels

    grad_input = torch.empty_like(input)
    fused_kernels.relu_lrn_max_pool2d_backward(input, grad_output, winners, grad_input, size, alpha, beta, k,
                                               _pool(kernel_size, stride, padding))
    return grad_input


@relu_lrn_max_pool2d_backward.register_fake
def _(grad_output, winners, input, size, alpha, beta, k, kernel_size, stride, padding, backend):
    return torch.empty_like(input)


def _setup_context(ctx, inputs, output):
    input, size, alpha, beta, k, kernel_size, stride, padding, ceil_mode, backend = inputs
    _, winners = output
    ctx.mark_non_differentiable(winners)
    ctx.save_for_backward(input, winners)
    ctx.params = (size, alpha, beta, k, kernel_size, stride, padding, backend)


def _backward(ctx, grad_output, _grad_winners):
    input, winners = ctx.saved_tensors
    grad_input = relu_lrn_max_pool2d_backward(grad_output, winners, input, *ctx.params)
    return (grad_input,) + (None,) * 9


relu_lrn_max_pool2d.register_autograd(_backward, setup_context=_setup_context)
