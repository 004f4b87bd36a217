"""The whole model: a training step (forward, cross-entropy, backward, SGD with momentum and weight
decay) and inference, fastalex.AlexNet against reference_alexnet with the same weights, in img/s."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from fastalex.bench.report import Row
from fastalex.bench.timing import time_ms
from fastalex.models import AlexNet, reference_alexnet


@dataclasses.dataclass
class ModelCase:
    variant: str
    batch: int
    size: int
    autocast: torch.dtype | None  # None: fp32

    @property
    def name(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.autocast]
        return f"{self.variant} {self.batch}x3x{self.size}x{self.size} {amp}"


def model_cases(device: torch.device, quick: bool = False) -> list[ModelCase]:
    """Batch 128 at 224 on a GPU (bf16 autocast and fp32); batch 8 on the CPU; quick: batch 2 at 64."""
    if quick:
        return [ModelCase("paper", 2, 64, None)]
    if device.type != "cuda":
        return [ModelCase("paper", 8, 224, None)]
    return [ModelCase("paper", 128, 224, torch.bfloat16), ModelCase("paper", 128, 224, None)]


def model_fns(case: ModelCase, which: str, device: torch.device):
    """(inference, train step) closures for "fastalex" (fastalex.AlexNet on the default backend),
    "fastalex.compile" (the same under torch.compile), "torch" (reference_alexnet, eager) or
    "torch.compile" (reference_alexnet compiled)."""
    torch.manual_seed(0)
    ref = reference_alexnet(case.variant).to(device)
    model = ref
    if which.startswith("fastalex"):
        model = AlexNet(variant=case.variant).to(device)
        model.load_state_dict(ref.state_dict())
        if which == "fastalex.compile":
            model = torch.compile(model)
    elif which == "torch.compile":
        model = torch.compile(ref)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(case.batch, 3, case.size, case.size, generator=g, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (case.batch,), generator=g, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def amp():
        return torch.autocast(device.type, dtype=case.autocast, enabled=case.autocast is not None)

    def inference():
        model.eval()
        with torch.no_grad(), amp():
            return model(x)

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        with amp():
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()

    return inference, train_step


def measure_model(case: ModelCase, device: torch.device, refs: tuple[str, ...] = ("torch",)) -> list[Row]:
    """Inference and train-step rows (img/s) for fastalex.AlexNet against each reference; with
    "torch.compile" among them, fastalex under torch.compile against it too."""
    def timed(which):
        fns = dict(zip(("inference", "train_step"), model_fns(case, which, device)))
        return {kind: time_ms(fn, device, warmup=3, samples=5, budget_s=2.0) for kind, fn in fns.items()}

    pairs = [("fastalex", ref) for ref in refs]
    if "torch.compile" in refs:
        pairs.append(("fastalex.compile", "torch.compile"))
    ms = {which: timed(which) for which in dict.fromkeys(w for pair in pairs for w in pair)}
    return [Row(f"alexnet_{kind}", case.name, ours, ms[ours][kind], ms[ref][kind], case.batch, 0.0, ref, "img/s")
            for ours, ref in pairs for kind in ("inference", "train_step")]
