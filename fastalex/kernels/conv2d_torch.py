"""Torch's own convolution (cuDNN on a GPU) as one of the candidates the conv launchers' tuner times.

fastalex/kernels/conv2d.py's launchers add TORCH to each direction's Triton candidates (forward with
bias and ReLU, grad_input, grad_weight with grad_bias); the tuner times it on the real inputs like the
others and keeps the fastest, so on the triton backend no convolution is slower than torch's by more
than the timing's noise, whatever the Triton kernels compile to. The choice is in the tuning cache and
`python -m fastalex info --tuned` shows it as {"route": "torch"}.

What the route costs beyond cuDNN's own kernels: the ReLU is applied in place on cuDNN's output (one
pass over it); the backward masks grad_output by the ReLU first (threshold_backward, one pass, as
torch's ReLU backward does); fastalex's asymmetric padding (the paper's conv1: top/left 1, bottom/right
2) becomes torch's symmetric top/left padding on an input padded at the bottom and right (one pass over
the input: conv1's is 3 channels).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class TorchRoute:
    """The candidate that runs torch's convolution (aten.convolution / aten.convolution_backward) instead
    of a Triton kernel. Its one field is what the tuning cache stores, apart from every Triton Config."""

    route: str = "torch"


TORCH = TorchRoute()


def _extra(size: int, out: int, k: int, s: int, p: int) -> int:
    """Zeros to add after the input so that torch's symmetric padding p reaches `out` outputs (fastalex's
    bottom/right padding beyond p); 0 when p already reaches them."""
    return max(0, (out - 1) * s + k - (size + 2 * p))


def _natural(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _pad_input(x: torch.Tensor, geo, out_h: int, out_w: int) -> torch.Tensor:
    extra_h = _extra(x.shape[2], out_h, geo.kh, geo.sh, geo.pt)
    extra_w = _extra(x.shape[3], out_w, geo.kw, geo.sw, geo.pl)
    return F.pad(x, (0, extra_w, 0, extra_h)) if extra_h or extra_w else x


def _into(result: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`result` when it is laid out as `out` (the buffer the op promised), else copied into `out`."""
    if result.stride() == out.stride():
        return result
    return out.copy_(result)


def _torch_args(geo) -> tuple:
    return [geo.sh, geo.sw], [geo.pt, geo.pl], [1, 1], False, [0, 0], geo.groups


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, geo, relu: bool) -> torch.Tensor:
    """act(conv(x, w) + b) shaped and laid out as y (x (N, Cin, H, W), w (Cout, Cin/groups, KH, KW), y
    (N, Cout, Ho, Wo)): torch's output itself when its layout is y's, else y with it copied in."""
    ho, wo = y.shape[2:]
    out = torch.ops.aten.convolution(_pad_input(x, geo, ho, wo), w, b, *_torch_args(geo))
    out = out[:, :, :ho, :wo]  # a bottom/right padding below the top/left one leaves torch more outputs
    if relu:
        out = out.relu_()
    return _into(out, y)


def _grad_and_input(grad_y: torch.Tensor, y: torch.Tensor | None, like: torch.Tensor, geo):
    """grad_y masked by the ReLU (y > 0), and zero-padded to torch's output size on the padded input."""
    g = grad_y if y is None else torch.ops.aten.threshold_backward(grad_y, y, 0)
    ho, wo = grad_y.shape[2:]
    xp = _pad_input(like, geo, ho, wo)
    nat_h, nat_w = _natural(xp.shape[2], geo.kh, geo.sh, geo.pt), _natural(xp.shape[3], geo.kw, geo.sw, geo.pl)
    if (nat_h, nat_w) != (ho, wo):
        g = F.pad(g, (0, nat_w - wo, 0, nat_h - ho))
    return g, xp


def grad_input(grad_y: torch.Tensor, y: torch.Tensor | None, w: torch.Tensor, dx: torch.Tensor, geo) -> torch.Tensor:
    """The input's gradient shaped and laid out as dx (whose contents are not read: only its shape)."""
    g, like = _grad_and_input(grad_y, y, dx, geo)
    gx = torch.ops.aten.convolution_backward(g, like, w, None, *_torch_args(geo), [True, False, False])[0]
    return _into(gx[:, :, :dx.shape[2], :dx.shape[3]], dx)


def grad_weight(grad_y: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor, weight_shape: tuple, geo,
                bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad_weight, grad_bias or None) in x's dtype (torch accumulates in fp32 inside)."""
    g, xp = _grad_and_input(grad_y, y, x, geo)
    w_like = torch.empty(weight_shape, dtype=x.dtype, device=x.device)  # only its shape is read
    _, gw, gb = torch.ops.aten.convolution_backward(g, xp, w_like, [weight_shape[0]] if bias else None,
                                                    *_torch_args(geo), [False, True, bias])
    return gw, (gb if bias else None)
