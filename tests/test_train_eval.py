"""Known answers for the evaluation of `fastalex train` / `fastalex eval` (fastalex/train/evaluate.py
evaluate_loader): a model whose logits are a fixed function of the image, on a tiny set whose top-1 and
top-5 errors and loss are known by construction, with the centre crop and with the paper's ten crops."""
from __future__ import annotations

import math

import pytest
import torch

from fastalex import transforms
from fastalex.train.evaluate import evaluate_loader
from numerics import TOL

C = 12
SCALE = 5.0  # logit gap between ranks: softmax nearly one-hot, every rank strict, the last above the 1e-30 clamp


class MeanLookup(torch.nn.Module):
    """Logits of a crop: class c scores -SCALE * ((c - v) mod 12), v the crop's mean raw value (0..255) of
    channel 0, so class v mod 12 comes first, then v + 1, v + 2, ... (rank of class y: (y - v) mod 12 + 1)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # something to be in train or eval mode
        self.mean, self.std = transforms.IMAGENET_MEAN[0], transforms.IMAGENET_STD[0]

    def forward(self, x):
        raw = (x[:, 0].double() * self.std + self.mean) * 255  # undo Normalize
        v = raw.mean((1, 2)).round().long()
        return -SCALE * ((torch.arange(C)[None, :] - v[:, None]) % C).float()


def constant(v: int) -> torch.Tensor:
    return torch.full((3, 8, 8), v, dtype=torch.uint8)


def two_tone() -> torch.Tensor:
    """Columns 0-1 at 78, the rest at 60: with 6 x 6 crops of 8 x 8, the four left crops (corners and
    their mirrors) average 66 (class 6), the four right ones 60 (class 0), the centre and its mirror 63
    (class 3)."""
    image = torch.full((3, 8, 8), 60, dtype=torch.uint8)
    image[:, :, :2] = 78
    return image


# (image, label, rank of the label under the centre crop, under the ten crops)
SET = [(constant(24), 0, 1, 1), (constant(25), 1, 1, 1), (constant(26), 3, 2, 2), (constant(27), 7, 5, 5),
       (constant(28), 9, 6, 6), (constant(29), 4, 12, 12), (two_tone(), 3, 1, 3)]


def _loader():
    images = torch.stack([s[0] for s in SET])
    labels = torch.tensor([s[1] for s in SET])
    # two batches, and one whose every file was unreadable (nothing to evaluate, 2 skipped)
    return [(images[:3], labels[:3], 0), (images[:0], labels[:0], 2), (images[3:], labels[3:], 1)]


def _expected(column: int) -> dict:
    ranks = [s[column] for s in SET]
    z = sum(math.exp(-SCALE * j) for j in range(C))  # softmax normaliser of every crop's logits
    losses = [SCALE * (r - 1) + math.log(z) for r in ranks]
    if column == 3:  # the two-tone image: probability of class 3 averaged over 10 crops, 2 of which rank it first
        losses[-1] = -math.log((0.2 + 0.4 * math.exp(-SCALE * 3) + 0.4 * math.exp(-SCALE * 9)) / z)
    n = len(SET)
    return {"top1_err": sum(r > 1 for r in ranks) / n, "top5_err": sum(r > 5 for r in ranks) / n,
            "loss": sum(losses) / n, "images": n, "skipped": 3}


@pytest.mark.parametrize("ten_crop", [False, True], ids=["centre", "ten-crop"])
def test_known_errors_and_loss(ten_crop):
    model = MeanLookup().train()
    result = evaluate_loader(model, _loader(), torch.device("cpu"), crop_size=6, ten_crop=ten_crop)
    expected = _expected(3 if ten_crop else 2)
    assert (result["top1_err"], result["top5_err"]) == pytest.approx((expected["top1_err"], expected["top5_err"]),
                                                                      abs=1e-12)
    assert (result["images"], result["skipped"]) == (expected["images"], expected["skipped"])
    assert result["loss"] == pytest.approx(expected["loss"], rel=TOL[torch.float32]["rtol"])
    assert model.training, "evaluate_loader must put the model back in the mode it found it in"


def test_the_set_is_what_it_says():
    # the construction itself: centre 4/7 and 2/7; ten crops 5/7 and 2/7 (the two-tone image drops to 3rd)
    assert (_expected(2)["top1_err"], _expected(2)["top5_err"]) == (4 / 7, 2 / 7)
    assert (_expected(3)["top1_err"], _expected(3)["top5_err"]) == (5 / 7, 2 / 7)
    crops = transforms.TenCrop(6)(two_tone()[None].float())[0, :, 0]  # (10, 6, 6), channel 0
    assert sorted(crops.mean((1, 2)).tolist()) == [60.0] * 4 + [63.0] * 2 + [66.0] * 4
