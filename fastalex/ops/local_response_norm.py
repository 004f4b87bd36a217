"""fastalex::local_response_norm: the custom op, its fake (meta) implementation and its autograd.

Arguments arrive checked (fastalex/functional.py); `backend` names the kernels to run ("triton",
"cuda" or "cpu"; the "torch" backend never reaches this op). Autograd saves the input only: the
backward kernel recomputes the scale from it.
"""
from __future__ import annotations

import torch

from fastalex.ops._views import channel_view_or_copy, run_into


def _kernels(backend: str):
    """(forward, backward) launchers of `backend`; both take (N, C, S) views and write their output."""
    if backend == "triton":
        from fastalex.kernels import local_response_norm as triton_kernels

        return triton_kernels.lrn_forward, triton_kernels.lrn_backward
    from fastalex import _extension

    ext = _extension.load()
    return ext.lrn_forward, ext.lrn_backward


@torch.library.custom_op("fastalex::local_response_norm", mutates_args=())
def local_response_norm(input: torch.Tensor, size: int, alpha: float, beta: float, k: float,
                        backend: str) -> torch.Tensor:
    out = torch.empty_like(input)
    if input.numel() == 0:
        return out
    x3 = channel_view_or_copy(input)
    kernel = _kernels(backend)[0]
    return run_into(out, lambda y3: kernel(x3, y3, size, alpha, beta, k))


@local_response_norm.register_fake
def _(input, size, alpha, beta, k, backend):
    return torch.empty_like(input)


@torch.library.custom_op("fastalex::local_response_norm_backward", mutates_args=())
def local_response_norm_backward(grad_output: torch.Tensor, input: torch.Tensor, size: int, alpha: float,
                                 beta: float, k: float, backend: str) -> torch.Tensor:
    grad_input = torch.empty_like(input)
    if input.numel() == 0:
        return grad_input
    x3 = channel_view_or_copy(input)
    g3 = channel_view_or_copy(grad_output)
    kernel = _kernels(backend)[1]
    return run_into(grad_input, lambda d3: kernel(x3, g3, d3, size, alpha, beta, k))


@local_response_norm_backward.register_fake
def _(grad_output, input, size, alpha, beta, k, backend):
    return torch.empty_like(input)


def _setup_context(ctx, inputs, output):
    input, size, alpha, beta, k, backend = inputs
    ctx.save_for_backward(input)
    ctx.params = (size, alpha, beta, k, backend)


def _backward(ctx, grad_output):
    (input,) = ctx.saved_tensors
    grad_input = local_response_norm_backward(grad_output, input, *ctx.params)
    return grad_input, None, None, None, None, None


local_response_norm.register_autograd(_backward, setup_context=_setup_context)
