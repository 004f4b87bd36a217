"""tests/numerics.py itself: assert_close_but_flips lets a gradient differ from torch's only where a
near-tie pooling window may have picked another winner, never elsewhere, and never in a window of exact
zeros (ReLU'd negatives), where no flip can happen."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from numerics import assert_close_but_flips, pool_near_ties

LRN = dict(size=3, alpha=1e-2, beta=0.75, k=2.0)  # LRN output rising with its input up to 10
POOL = dict(kernel_size=3, stride=2)


def _chain(x):
    return F.max_pool2d(F.local_response_norm(F.relu(x), **LRN), **POOL)


def _grad(x, g):
    x = x.detach().clone().requires_grad_(True)
    _chain(x).backward(g)
    return x.grad


def _pooled64(x):
    return F.local_response_norm(F.relu(x.double()), **LRN)


@pytest.fixture
def planted():
    """x (1, 4, 7, 7) float32 with a window (rows 0..2, cols 0..2) whose pixels (0, 0) and (0, 2) hold the
    same positive column of channels (an exact tie in every channel, the largest in the window), the
    output gradient, and x raised by 2e-6 (relative) at (0, 2): a rounding away, and the rival wins, as a
    recomputed LRN can make it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 7, 7, generator=g).abs() + 0.1
    x[..., 0, 0] = x[..., 0, 2] = 5.0 + torch.arange(4.0)
    grad = torch.randn(_chain(x).shape, generator=g)
    nudged = x.clone()
    nudged[..., 0, 2] *= 1 + 2e-6
    return x, grad, nudged


def test_near_ties_are_found_where_planted(planted):
    x, _, _ = planted
    ties = pool_near_ties(_pooled64(x), **POOL)
    assert ties[..., 0, 0].all() and ties[..., 0, 2].all()
    assert int(ties.sum()) == 8  # random data has no other near-tie


def test_a_flip_in_a_near_tie_window_is_allowed(planted):
    x, grad, nudged = planted
    expected, flipped = _grad(x, grad), _grad(nudged, grad)
    assert not torch.allclose(expected, flipped)  # the gradient did move (to (0, 2))
    assert_close_but_flips(flipped, expected, _pooled64(x), **POOL, lrn_size=LRN["size"])


def test_a_mismatch_outside_near_tie_windows_fails(planted):
    # The old rule allowed max(2, 1e-4 n) mismatches anywhere: this one would have passed.
    x, grad, _ = planted
    expected = _grad(x, grad)
    wrong = expected.clone()
    wrong[0, 1, 5, 5] += 1.0
    with pytest.raises(AssertionError, match="not in a near-tie pooling window; first at \\[0, 1, 5, 5\\]"):
        assert_close_but_flips(wrong, expected, _pooled64(x), **POOL, lrn_size=LRN["size"])


def test_a_mismatch_in_a_window_of_exact_zeros_fails(planted):
    # ReLU'd negatives tie at exactly 0: both sides pick the first, so no flip may be claimed there.
    x, grad, _ = planted
    x[..., 4:7, 4:7] = -1.0
    expected = _grad(x, grad)
    wrong = expected.clone()
    wrong[0, 2, 5, 5] = 0.5
    with pytest.raises(AssertionError, match="not in a near-tie pooling window"):
        assert_close_but_flips(wrong, expected, _pooled64(x), **POOL, lrn_size=LRN["size"])


def test_ceil_mode_and_padding_windows():
    # A near-tie in the last, partial window that only ceil_mode makes (and in a padded first one).
    z = torch.zeros(1, 1, 1, 6, dtype=torch.float64)
    z[..., 4], z[..., 5] = 1.0, 1.0 + 1e-9
    assert not pool_near_ties(z, (1, 3), (1, 2)).any()  # no window covers index 5 without ceil_mode
    assert pool_near_ties(z, (1, 3), (1, 2), ceil_mode=True)[..., 4:].all()
    z[..., 0], z[..., 1] = 2.0, 2.0
    assert pool_near_ties(z, (1, 3), (1, 2), padding=(0, 1))[..., :2].all()
