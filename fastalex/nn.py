"""Drop-in modules: subclasses of the torch.nn modules they replace (same arguments, same state)."""
from __future__ import annotations

import torch

from fastalex import functional as F


class LocalResponseNorm(torch.nn.LocalResponseNorm):
    """torch.nn.LocalResponseNorm on fastalex's kernels. Same arguments: size, alpha, beta, k."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)
