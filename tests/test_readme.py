"""The README's first example runs as written (on the CPU: `.cuda()` dropped), so that a user who copies
it does not meet a size mismatch."""
from __future__ import annotations

import re
from pathlib import Path

import torch

import fastalex

README = Path(__file__).resolve().parents[1] / "README.md"


def _use_example() -> str:
    text = README.read_text()
    section = text[text.index("## Use"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Use section has no python example"
    return match.group(1)


def test_use_example_runs():
    code = _use_example().replace(".cuda()", "")
    assert "load_state_dict" in code and "classifier[6]" in code, code
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    scope = {"images": images, "my_torch_model": fastalex.reference_alexnet("torchvision")}
    with torch.no_grad():
        exec(compile(code, str(README), "exec"), scope)
    assert scope["logits"].shape == (2, 10)
    assert isinstance(scope["my_torch_model"].features[0], fastalex.nn.Conv2d)
