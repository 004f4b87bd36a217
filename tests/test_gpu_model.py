"""The whole model on the GPU (benchmarks/gpu_check.sh, stage 3): fastalex.AlexNet against
reference_alexnet with the same weights, channels_last, at 224x224: the logits and every parameter's
gradient, and one SGD training step (momentum, weight decay), in fp32 (TF32 off) and under bf16
autocast. Both models are judged against the reference in float64 (DESIGN.md, "Numerics"): fastalex's
error may be at most twice the reference's own error in that precision, plus a floor (fp32: 1e-5
relative, the convolutions' tolerance; bf16: 5e-4). Dropout is off, so both see the same network.
Skipped without a CUDA device; the CPU and interpreter versions are in tests/test_alexnet.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastalex
from numerics import LOW_PRECISION_FACTOR, rel_error

pytestmark = pytest.mark.gpu

BATCH = 128  # AlexNet's: stage 1 of gpu_check.sh compiled these shapes' kernels
FLOOR = {None: 1e-5, torch.bfloat16: 5e-4}


def _models(variant: str):
    """(fastalex, reference, reference in float64), same weights, on the GPU, channels_last."""
    torch.manual_seed(0)
    ref = fastalex.reference_alexnet(variant, num_classes=100, dropout=0.0)
    ours = fastalex.AlexNet(num_classes=100, variant=variant, dropout=0.0)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref64 = fastalex.reference_alexnet(variant, num_classes=100, dropout=0.0)
    ref64.load_state_dict(ref.state_dict())
    return [m.cuda().to(memory_format=torch.channels_last) for m in (ours, ref, ref64.double())]


def _train_step(model, x, target, autocast):
    """One SGD step; (logits, loss, {name: grad}, {name: parameter update}) in float64."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=autocast or torch.float32, enabled=autocast is not None):
        logits = model(x.to(next(model.parameters()).dtype))
    loss = nn.functional.cross_entropy(logits.double(), target)
    loss.backward()
    grads = {n: p.grad.double() for n, p in model.named_parameters()}
    opt.step()
    updates = {n: (p.detach() - before[n]).double() for n, p in model.named_parameters()}
    return logits.double(), loss.detach(), grads, updates


def _check(what, ours, theirs, exact, autocast):
    err, err_ref = rel_error(ours, exact), rel_error(theirs, exact)
    bound = LOW_PRECISION_FACTOR * err_ref + FLOOR[autocast]
    assert err <= bound, f"{what}: error {err:.3e} against float64 exceeds {bound:.3e} (the reference's: {err_ref:.3e})"


@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_model_matches_the_reference_on_the_gpu(variant, autocast):
    if "triton" not in fastalex.backends():
        pytest.fail("the triton backend is unavailable on this GPU machine")
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ours, ref, ref64 = _models(variant)
        g = torch.Generator(device="cuda").manual_seed(1)
        x = torch.randn(BATCH, 3, 224, 224, generator=g, device="cuda").contiguous(memory_format=torch.channels_last)
        target = torch.randint(0, 100, (BATCH,), generator=g, device="cuda")
        got = _train_step(ours, x, target, autocast)
        theirs = _train_step(ref, x, target, autocast)
        exact = _train_step(ref64, x.double(), target, None)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
    _check("logits", got[0], theirs[0], exact[0], autocast)
    assert set(got[2]) == set(exact[2])
    for name in exact[2]:
        _check(f"grad {name}", got[2][name], theirs[2][name], exact[2][name], autocast)
        _check(f"SGD update of {name}", got[3][name], theirs[3][name], exact[3][name], autocast)
    assert torch.isfinite(got[1]) and abs(got[1] - exact[1]) <= 2 * abs(theirs[1] - exact[1]) + 1e-3 * abs(exact[1])
