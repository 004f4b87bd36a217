"""fastalex.convert: swap torch.nn layers for fastalex's, in place, sharing their parameters."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from fastalex import nn as fnn


def _conv_convertible(m: nn.Module) -> str | None:
    """Why the torch.nn.Conv2d `m` cannot become a fastalex one, or None."""
    if isinstance(m.padding, str):
        return f"padding={m.padding!r}"
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}"
    if tuple(m.dilation) != (1, 1):
        return f"dilation={m.dilation}"
    return None


def _fast_conv(m: nn.Conv2d, relu: bool) -> fnn.Conv2d:
    cls = fnn.Conv2dReLU if relu else fnn.Conv2d
    new = cls.__new__(cls)
    new.__dict__ = m.__dict__.copy()  # the same Parameter objects, buffers, hooks and hyper-parameters
    new._parameters = m._parameters
    return new


def _pool_convertible(m: nn.MaxPool2d) -> str | None:
    if m.return_indices:
        return "return_indices=True inside a chain"
    return None


def _as_fast(m: nn.Module, cls):
    new = cls.__new__(cls)
    new.__dict__ = m.__dict__.copy()
    return new


def _convert_sequential(seq: nn.Sequential, report: list[str], prefix: str) -> None:
    mods = list(seq._modules.items())
    i = 0
    while i < len(mods):
        name, m = mods[i]
        nxt = [mods[j][1] for j in range(i + 1, min(i + 4, len(mods)))]
        # ReLU -> LocalResponseNorm -> MaxPool2d (dilation 1): one fused module, Identity in the others' places.
        if (type(m) is nn.ReLU and len(nxt) >= 2 and type(nxt[0]) is nn.LocalResponseNorm
                and type(nxt[1]) is nn.MaxPool2d and nxt[1].dilation in (1, (1, 1)) and not nxt[1].return_indices):
            lrn, pool = nxt[0], nxt[1]
            seq._modules[name] = fnn.ReLULRNMaxPool2d(lrn.size, lrn.alpha, lrn.beta, lrn.k, pool.kernel_size,
                                                      pool.stride, pool.padding, pool.ceil_mode)
            seq._modules[mods[i + 1][0]] = nn.Identity()
            seq._modules[mods[i + 2][0]] = nn.Identity()
            i += 3
            continue
        if type(m) is nn.Conv2d:
            why = _conv_convertible(m)
            if why:
                report.append(f"{prefix}{name}: Conv2d with {why} left as is")
            else:
                # A ReLU right after goes into the convolution's epilogue, unless it opens a ReLU-LRN-pool chain.
                relu_next = nxt and type(nxt[0]) is nn.ReLU and not (
                    len(nxt) >= 3 and type(nxt[1]) is nn.LocalResponseNorm and type(nxt[2]) is nn.MaxPool2d)
                seq._modules[name] = _fast_conv(m, relu=bool(relu_next))
                if relu_next:
                    seq._modules[mods[i + 1][0]] = nn.Identity()
                    i += 2
                    continue
        else:
            _convert_one(seq, name, m, report, prefix)
        i += 1


def _convert_one(parent: nn.Module, name: str, m: nn.Module, report: list[str], prefix: str) -> None:
    if type(m) is nn.Conv2d:
        why = _conv_convertible(m)
        if why:
            report.append(f"{prefix}{name}: Conv2d with {why} left as is")
        else:
            parent._modules[name] = _fast_conv(m, relu=False)
    elif type(m) is nn.LocalResponseNorm:
        parent._modules[name] = _as_fast(m, fnn.LocalResponseNorm)
    elif type(m) is nn.MaxPool2d:
        parent._modules[name] = _as_fast(m, fnn.MaxPool2d)
    else:
        _walk(m, report, f"{prefix}{name}.")


def _walk(module: nn.Module, report: list[str], prefix: str) -> None:
    if isinstance(module, nn.Sequential):
        _convert_sequential(module, report, prefix)
        return
    for name, child in list(module._modules.items()):
        if child is not None:
            _convert_one(module, name, child, report, prefix)


def convert(module: nn.Module, report: list[str] | None = None) -> nn.Module:
    """Replaces, in place and anywhere in the tree, torch.nn Conv2d (with the ReLU that follows it in a
    Sequential fused in), LocalResponseNorm, MaxPool2d and ReLU -> LocalResponseNorm -> MaxPool2d chains
    by fastalex's modules, sharing the same parameters (the optimizer's references stay valid) and the
    same state_dict keys (fused-away layers become nn.Identity). Returns `module`.

    What it cannot convert (a Conv2d with dilation, non-zero padding modes or string padding) it leaves
    alone, lists in `report` if one is given, and names in a warning.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert: module must be a torch.nn.Module, got {type(module).__name__}")
    found: list[str] = []
    if isinstance(module, (nn.Conv2d, nn.LocalResponseNorm, nn.MaxPool2d)) and type(module) in (
            nn.Conv2d, nn.LocalResponseNorm, nn.MaxPool2d):
        holder = nn.Sequential(module)
        _walk(holder, found, "")
        module = holder[0]
    else:
        _walk(module, found, "")
    if found:
        warnings.warn("fastalex.convert left these layers as they were: " + "; ".join(found), RuntimeWarning,
                      stacklevel=2)
    if report is not None:
        report.extend(found)
    return module
