"""Drop-in modules: subclasses of the torch.nn modules they replace (same arguments, same state), and
the fused ReLULRNMaxPool2d, ReLUMaxPool2d and Conv2dReLU."""
from __future__ import annotations

import torch

from fastalex import functional as fa  # not torch.nn.functional, which `F` means elsewhere


class LocalResponseNorm(torch.nn.LocalResponseNorm):
    """torch.nn.LocalResponseNorm on fastalex's kernels. Same arguments: size, alpha, beta, k."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fa.local_response_norm(input, self.size, self.alpha, self.beta, self.k)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastalex's kernels. Same arguments, including return_indices."""

    def forward(self, input: torch.Tensor):
        return fa.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class ReLUMaxPool2d(torch.nn.Module):
    """ReLU then MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode), fused
    (fastalex.functional.relu_max_pool2d): on the triton backend the pool clamps its pooled values, so
    the ReLU costs no pass and the convolution before it needs no ReLU mask in its backward. No
    parameters."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fa.relu_max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class ReLULRNMaxPool2d(torch.nn.Module):
    """ReLU, then LocalResponseNorm(size, alpha, beta, k), then MaxPool2d(kernel_size, stride, padding,
    ceil_mode), fused (fastalex.functional.relu_lrn_max_pool2d). No parameters.

    The defaults are torch's LRN arguments with the paper's pooling; the paper's LRN (k=2, n=5,
    alpha=1e-4 on the raw sum, beta=0.75) is ReLULRNMaxPool2d(5, alpha=5e-4, beta=0.75, k=2.0).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, kernel_size=3,
                 stride=2, padding=0, ceil_mode: bool = False):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fa.relu_lrn_max_pool2d(input, self.size, self.alpha, self.beta, self.k, self.kernel_size, self.stride,
                                     self.padding, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}")


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on fastalex's kernels (fastalex.functional.conv2d). Same parameters and state_dict
    as torch.nn.Conv2d, so torch weights load into it; padding may also be a 4-tuple (left, right, top,
    bottom), which torch.nn.Conv2d cannot do without a pad pass. Zero padding and dilation 1 only."""

    activation: str | None = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        # torch.nn.Conv2d's arguments in torch's order, so positional calls mean the same thing.
        name = type(self).__name__
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be ints (an int, a pair or a 4-tuple), got {padding!r}")
        if dilation not in (1, (1, 1), [1, 1]):
            raise ValueError(f"{name}: dilation must be 1, got {dilation!r}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode must be 'zeros', got {padding_mode!r}")
        asymmetric = isinstance(padding, (tuple, list)) and len(padding) == 4
        super().__init__(in_channels, out_channels, kernel_size, stride, 0 if asymmetric else padding, groups=groups,
                         bias=bias, device=device, dtype=dtype)
        if asymmetric:
            self.padding = tuple(padding)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fa.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.groups, self.activation)


class Conv2dReLU(Conv2d):
    """torch.nn.Conv2d followed by ReLU, fused (fastalex.functional.conv2d_relu): the bias and ReLU run in
    the convolution's epilogue. Same parameters and state_dict as torch.nn.Conv2d, e.g. the paper's
    first layer: Conv2dReLU(3, 96, 11, stride=4, padding=(1, 2, 1, 2))."""

    activation = "relu"
