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


def _as_fast(m: nn.Module, cls):
    new = cls.__new__(cls)
    new.__dict__ = m.__dict__.copy()
    return new


def _hooked(*mods: nn.Module) -> bool:
    # Fusing would change what a hook sees (a conv's hook would get the post-ReLU output) or drop it.
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or
               getattr(m, "_backward_pre_hooks", None) for m in mods)


def _fusable_chain(mods: list[nn.Module]) -> bool:
    """ReLU -> LocalResponseNorm -> MaxPool2d (dilation 1, no indices), no hooks."""
    return (len(mods) >= 3 and type(mods[0]) is nn.ReLU and type(mods[1]) is nn.LocalResponseNorm
            and type(mods[2]) is nn.MaxPool2d and mods[2].dilation in (1, (1, 1)) and not mods[2].return_indices
            and not _hooked(*mods[:3]))


def _convert_sequential(seq: nn.Sequential, report: list[str], prefix: str) -> None:
    mods = list(seq._modules.items())
    i = 0
    while i < len(mods):
        name, m = mods[i]
        nxt = [mods[j][1] for j in range(i + 1, min(i + 4, len(mods)))]
        # ReLU -> LocalResponseNorm -> MaxPool2d: one fused module, Identity in the others' places.
        if _fusable_chain([m] + nxt):
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
                relu_next = (bool(nxt) and type(nxt[0]) is nn.ReLU and not _fusable_chain(nxt)
                             and not _hooked(m, nxt[0]))
                seq._modules[name] = _fast_conv(m, relu=bool(relu_next))
                if relu_next:
                    seq._modules[mods[i + 1][0]] = nn.Identity()
                    i += 2
                    continue
        else:
            _convert_one(seq, name, m, report, prefix)
        i += 1


_SWAPPABLE = (nn.Conv2d, nn.LocalResponseNorm, nn.MaxPool2d)
_FASTALEX = (fnn.Conv2d, fnn.LocalResponseNorm, fnn.MaxPool2d, fnn.ReLULRNMaxPool2d)


def _convert_one(parent: nn.Module, name: str, m: nn.Module, report: list[str], prefix: str) -> None:
    if isinstance(m, _SWAPPABLE) and type(m) not in _SWAPPABLE and not isinstance(m, _FASTALEX):
        # A subclass (or a parametrized module) may compute something else: not ours to replace.
        report.append(f"{prefix}{name}: {type(m).__name__} (a subclass of {type(m).__mro__[1].__name__}) left as is")
    elif type(m) is nn.Conv2d:
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
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        _convert_sequential(module, report, prefix)  # a plain chain: neighbours may fuse
        return
    for name, child in list(module._modules.items()):
        if child is not None:
            _convert_one(module, name, child, report, prefix)


def convert(module: nn.Module, report: list[str] | None = None) -> nn.Module:
    """Replaces, in place and anywhere in the tree, torch.nn Conv2d (with the ReLU that follows it in a
    Sequential fused in), LocalResponseNorm, MaxPool2d and ReLU -> LocalResponseNorm -> MaxPool2d chains
    by fastalex's modules, sharing the same parameters (the optimizer's references stay valid) and the
    same state_dict keys (fused-away layers become nn.Identity). Returns `module`.

    Fusion happens only inside plain nn.Sequential chains and never across a module with hooks. What
    it cannot convert (a Conv2d with dilation, non-zero padding modes or string padding; subclasses
    of the torch modules, parametrized ones included) it leaves alone, lists in `report` if one is
    given, and names in a warning. A root module that is itself a Conv2d, LocalResponseNorm or
    MaxPool2d is replaced by a new object (sharing its parameters): use the return value.
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
