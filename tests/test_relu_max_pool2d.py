"""relu_max_pool2d / ReLUMaxPool2d against torch's F.max_pool2d(F.relu(x)): values and input gradients
equal (a max and a ReLU round nothing; each gradient element is one grad_output value or a sum of them
in torch's order), on every backend here: the triton kernel (interpreter) clamps the pooled values and
marks the windows that pass no gradient; cpu composes relu and max_pool2d. Windows of negatives only,
of zeros, with ties and with NaN are in every case."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from backends_here import KERNEL_BACKENDS, layout as _layout
from numerics import EXACT, LOW_PRECISION, assert_close

# (shape, kernel_size, stride, padding, dilation, ceil_mode)
CASES = [
    ((2, 5, 13, 13), 3, 2, 0, 1, False),  # AlexNet's conv5 tail, small
    ((1, 3, 9, 8), 3, 2, 1, 1, True),
    ((2, 4, 7, 9), (2, 3), (1, 2), (1, 0), (2, 1), False),
    ((1, 2, 16, 16), 16, 16, 0, 1, False),  # 256 taps: with the ReLU the winners need int32
]
IDS = ["alexnet", "pad-ceil", "dilated", "256-taps"]
DTYPES = {"cpu": [torch.float32, torch.float64, torch.bfloat16], "triton": [torch.float32, torch.float16]}


def _input(shape, dtype, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-4, 5, shape, generator=g).to(torch.float64) / 2  # coarse: ties and exact zeros
    x[0, 0] = -torch.rand(shape[2:], generator=g, dtype=torch.float64) - 1  # a plane of negatives only
    x[:, -1, 0, 0] = float("nan")
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_matches_torch(backend, case, channels_last):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    for dtype in DTYPES.get(backend, [torch.float32]):
        x = _input(shape, dtype, channels_last)
        kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
        xt, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        expected = F.max_pool2d(F.relu(xt), **kw)
        grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        expected.backward(grad)
        with fastalex.backend(backend):
            out = fa.relu_max_pool2d(xo, **kw)
        out.backward(grad)
        what = f"{backend} {dtype} {'cl' if channels_last else 'nchw'}"
        torch.testing.assert_close(out, expected, **EXACT, equal_nan=True, msg=lambda m: f"forward {what}: {m}")
        assert _layout(out) == _layout(expected), f"output strides {what}"
        if dtype in LOW_PRECISION:  # overlapping windows sum in low precision: against float64, as torch's
            x64 = x.double().requires_grad_()
            F.max_pool2d(F.relu(x64), **kw).backward(grad.double())
            assert_close(xo.grad, xt.grad, ref64=x64.grad, torch_out=xt.grad, what=f"grad {what}")
        else:
            torch.testing.assert_close(xo.grad, xt.grad, **EXACT, msg=lambda m: f"grad {what}: {m}")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_module_and_unbatched(backend):
    x = _input((1, 3, 7, 7), torch.float32, False)[0]  # (C, H, W)
    pool = fastalex.nn.ReLUMaxPool2d(3, 2, padding=1)
    with fastalex.backend(backend):
        out = pool(x)
    torch.testing.assert_close(out, F.max_pool2d(F.relu(x), 3, 2, 1), **EXACT, equal_nan=True)
    assert "kernel_size=3, stride=2, padding=1" in repr(pool)


def test_bad_arguments_name_the_op():
    with pytest.raises(ValueError, match="relu_max_pool2d"):
        fa.relu_max_pool2d(torch.randn(2, 3, 5), 7)  # window larger than the padded input


def test_alexnet_uses_it_before_the_classifier():
    model = fastalex.AlexNet(variant="paper")
    assert isinstance(model.features[14], fastalex.nn.ReLUMaxPool2d)
    assert type(model.features[12]) is fastalex.nn.Conv2d, "conv5 leaves its ReLU to the pool"
    tv = fastalex.AlexNet(variant="torchvision")
    assert [i for i, m in enumerate(tv.features) if isinstance(m, fastalex.nn.ReLUMaxPool2d)] == [2, 5, 12]
