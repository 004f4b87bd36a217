"""AlexNet, laid out like torchvision's (features, avgpool, classifier; classifier[6] the last Linear),
in two variants:

- "paper" (Krizhevsky et al. 2012): conv1 96 11x11/4 with padding (1, 2) so
  224 -> 55, conv2 256 5x5 pad 2, conv3 384, conv4 384, conv5 256 3x3 pad 1; ReLU after every
  convolution; LRN (n=5, k=2, beta=0.75, and the paper's alpha 1e-4 on the raw sum, which is torch's
  alpha = 5e-4) then an overlapping 3x3/2 max-pool after conv1 and conv2; a max-pool after conv5;
  4096-4096-num_classes with dropout in the first two fully connected layers. groups=2 gives the
  paper's two towers in conv2, conv4 and conv5.
- "torchvision": the layers, shapes and state_dict keys of torchvision.models.alexnet.

fastalex.AlexNet runs the fused modules (conv+bias+ReLU, ReLU->LRN->max-pool, ReLU->max-pool);
reference_alexnet builds the same network from plain torch.nn modules with the same state_dict keys. Fused-away
layers (a ReLU inside a fused module) stay in `features` as nn.Identity so every index, and so every
state_dict key, matches the reference's.
"""
from __future__ import annotations

import torch
from torch import nn

from fastalex import nn as fnn
from fastalex._checks import conv_output_size, pool_output_size

VARIANTS = ("paper", "torchvision")
INITS = ("default", "paper", "kaiming")

# (out_channels, kernel, stride, padding (left, right, top, bottom), tower-grouped) per convolution.
_CONVS = {
    "paper": [(96, 11, 4, (1, 2, 1, 2), False), (256, 5, 1, (2, 2, 2, 2), True), (384, 3, 1, (1, 1, 1, 1), False),
              (384, 3, 1, (1, 1, 1, 1), True), (256, 3, 1, (1, 1, 1, 1), True)],
    "torchvision": [(64, 11, 4, (2, 2, 2, 2), False), (192, 5, 1, (2, 2, 2, 2), False),
                    (384, 3, 1, (1, 1, 1, 1), False), (256, 3, 1, (1, 1, 1, 1), False),
                    (256, 3, 1, (1, 1, 1, 1), False)],
}
# What follows each convolution's ReLU: "lrn_pool", "pool" or nothing.
_AFTER = {"paper": ["lrn_pool", "lrn_pool", None, None, "pool"],
          "torchvision": ["pool", "pool", None, None, "pool"]}
POOL = (3, 2)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"AlexNet: unknown {name} {value!r}; choose from {', '.join(map(repr, choices))}")


class _PaddedConv2d(nn.Conv2d):
    """torch.nn.Conv2d with a (left, right, top, bottom) zero padding applied by F.pad: the reference's
    conv1 in the paper variant (torch.nn.Conv2d has no asymmetric padding). Same parameters and keys."""

    def __init__(self, *args, pad4: tuple[int, int, int, int], **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.pad4 = pad4

    def forward(self, input):
        return super().forward(torch.nn.functional.pad(input, self.pad4))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pad4={self.pad4}"


def _features(variant: str, groups: int, lrn: tuple, fused: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for (c_out, k, s, pad, towered), after in zip(_CONVS[variant], _AFTER[variant]):
        g = groups if towered else 1
        symmetric = pad[0] == pad[1] and pad[2] == pad[3]
        if fused:
            conv_cls = fnn.Conv2d if after else fnn.Conv2dReLU  # a fused pooling module takes the ReLU
            layers += [conv_cls(c_in, c_out, k, stride=s, padding=(pad[2], pad[0]) if symmetric else pad, groups=g),
                       nn.Identity()]
        else:
            conv = (nn.Conv2d(c_in, c_out, k, stride=s, padding=(pad[2], pad[0]), groups=g) if symmetric
                    else _PaddedConv2d(c_in, c_out, k, stride=s, groups=g, pad4=pad))
            layers += [conv, nn.ReLU(inplace=True)]
        if after == "lrn_pool":
            if fused:
                layers[-1] = fnn.ReLULRNMaxPool2d(*lrn, *POOL)
                layers += [nn.Identity(), nn.Identity()]
            else:
                layers += [nn.LocalResponseNorm(*lrn), nn.MaxPool2d(*POOL)]
        elif after == "pool":
            layers.append(fnn.ReLUMaxPool2d(*POOL) if fused else nn.MaxPool2d(*POOL))
        c_in = c_out
    return nn.Sequential(*layers)


def _classifier(num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                         nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                         nn.Linear(4096, num_classes))


def min_input_size(variant: str) -> int:
    """The smallest square image the variant's features can take (every layer's output at least 1x1)."""
    _check_choice("variant", variant, VARIANTS)
    for size in range(1, 1024):
        h = size
        for (_, k, s, pad, _), after in zip(_CONVS[variant], _AFTER[variant]):
            h = conv_output_size(h, k, s, pad[2], pad[3])
            if h < 1:
                break
            if after:
                h = pool_output_size(h, *POOL, pad=0)
                if h < 1:
                    break
        else:
            return size
    raise AssertionError("unreachable")


def _init_paper(model: nn.Module) -> None:
    # The paper: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully connected
    # layers (to feed the ReLUs positive inputs early), 0 elsewhere.
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    ones = {id(convs[1]), id(convs[3]), id(convs[4]), id(linears[0]), id(linears[1])}
    for m in convs + linears:
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.constant_(m.bias, 1.0 if id(m) in ones else 0.0)


def _init_kaiming(model: nn.Module) -> None:
    # He et al. 2015: weights N(0, 2 / fan_in) keep the activations' scale through each ReLU, so a
    # network without normalisation layers starts learning at once (torch's default init shrinks the
    # signal ~2.4x per layer, the paper's N(0, 0.01) more); biases 0; the last layer N(0, 0.01) so
    # the first predictions are near uniform.
    layers = [m for m in list(model.features) + list(model.classifier) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(m.bias)
    nn.init.normal_(layers[-1].weight, 0.0, 0.01)


class _AlexNetBase(nn.Module):
    def __init__(self, num_classes: int, dropout: float, variant: str, groups: int, init: str,
                 lrn_size: int, lrn_alpha: float, lrn_beta: float, lrn_k: float, fused: bool):
        super().__init__()
        _check_choice("variant", variant, VARIANTS)
        _check_choice("init", init, INITS)
        if groups not in (1, 2):
            raise ValueError(f"AlexNet: groups must be 1 or 2 (the paper's two towers), got {groups!r}")
        if variant == "torchvision" and groups != 1:
            raise ValueError("AlexNet: groups=2 is the paper variant's option; the torchvision variant has none")
        self.variant = variant
        self.min_size = min_input_size(variant)
        self.features = _features(variant, groups, (lrn_size, lrn_alpha, lrn_beta, lrn_k), fused)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(num_classes, dropout)
        if init == "paper":
            _init_paper(self)
        elif init == "kaiming":
            _init_kaiming(self)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: input must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: input must be floating point images (convert uint8 with .float() and "
                            f"normalize), got {x.dtype}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name}: input must be (N, 3, H, W) RGB images, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"{name}({self.variant!r}): images must be at least {self.min_size}x{self.min_size}, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.features(self._layout(x))
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        other = _variant_of(state_dict) if strict else None  # strict=False: a deliberate partial transfer
        if other is not None and other != self.variant:
            raise ValueError(f"{type(self).__name__}(variant={self.variant!r}): this state_dict is from the "
                             f"{other!r} variant; build the model with variant={other!r}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _conv_indices(variant: str) -> list[int]:
    """Where the convolutions sit in `features`: each is followed by its ReLU, then LRN and pool or a pool."""
    out, i = [], 0
    for after in _AFTER[variant]:
        out.append(i)
        i += 2 + {"lrn_pool": 2, "pool": 1, None: 0}[after]
    return out


def _variant_of(state_dict) -> str | None:
    """Which variant a state_dict's convolutions say it is from, or None if it says neither."""
    keys = {k for k in state_dict if k.startswith("features.") and k.endswith(".weight")}
    for variant in VARIANTS:
        idx = _conv_indices(variant)
        if keys == {f"features.{i}.weight" for i in idx} and \
                state_dict[f"features.{idx[0]}.weight"].shape[0] == _CONVS[variant][0][0]:
            return variant
    return None


class AlexNet(_AlexNetBase):
    """fastalex's AlexNet: torchvision's layout on fastalex's fused modules.

    AlexNet(num_classes=1000, dropout=0.5, variant="paper", groups=1, init="default", lrn_size=5,
    lrn_alpha=5e-4, lrn_beta=0.75, lrn_k=2.0). lrn_alpha is torch's (divided by lrn_size): the
    paper's alpha = 1e-4 on the raw sum. init="paper" draws the paper's initialisation, "kaiming" He et
    al.'s (what `fastalex train` uses: it starts learning at once), "default" keeps torch's. On a GPU the input runs channels_last without the caller asking.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, variant: str = "paper", groups: int = 1,
                 init: str = "default", lrn_size: int = 5, lrn_alpha: float = 5e-4, lrn_beta: float = 0.75,
                 lrn_k: float = 2.0):
        super().__init__(num_classes, dropout, variant, groups, init, lrn_size, lrn_alpha, lrn_beta, lrn_k,
                         fused=True)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


class _ReferenceAlexNet(_AlexNetBase):
    """The same network from plain torch.nn modules (reference_alexnet)."""


def alexnet(variant: str = "paper", **kwargs) -> AlexNet:
    """fastalex.AlexNet(variant=variant, **kwargs)."""
    return AlexNet(variant=variant, **kwargs)


def reference_alexnet(variant: str = "paper", num_classes: int = 1000, dropout: float = 0.5, groups: int = 1,
                      init: str = "default", lrn_size: int = 5, lrn_alpha: float = 5e-4, lrn_beta: float = 0.75,
                      lrn_k: float = 2.0) -> nn.Module:
    """The network fastalex.AlexNet computes, from plain torch.nn modules (Conv2d, ReLU,
    LocalResponseNorm, MaxPool2d; conv1's asymmetric padding by F.pad), with the same state_dict keys:
    for parity checks and for comparing against torch."""
    return _ReferenceAlexNet(num_classes, dropout, variant, groups, init, lrn_size, lrn_alpha, lrn_beta, lrn_k,
                             fused=False)
