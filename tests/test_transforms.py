"""fastalex.transforms: the paper's augmentation as batched transforms, against per-image references."""
from __future__ import annotations

import math

import pytest
import torch

from fastalex.transforms import (IMAGENET_EIGVAL, IMAGENET_EIGVEC, IMAGENET_MEAN, IMAGENET_STD, CropFlipParams,
                                 Normalize, PCALighting, RandomCropFlip, TenCrop, average_ten_crop,
                                 compute_mean_image, compute_pca_lighting, resize_and_center_crop)
from numerics import (ALPHA_ROUNDTRIP, IMAGENET_EIGVEC_ORTHO_ABS, PCA_EIGVAL_SIGMAS, PIXEL_OFFSET_ABS,
                      RESIZE_CONSTANT_ABS, TEN_CROP_FP16_IN_FP32, TOL, UNIFORM_EIGVAL_REL, assert_close)

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_images(shape, dtype, seed=0, memory_format=torch.contiguous_format):
    g = gen(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(shape, generator=g).to(dtype)
    return x.contiguous(memory_format=memory_format)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """The module's convention, in float64: uint8 / 255, float as is."""
    return images.double() / 255 if images.dtype == torch.uint8 else images.double()


# ------------------------------------------------------------------------------------------- RandomCropFlip

def crop_flip_reference(images, params, size):
    out = []
    for i in range(images.shape[0]):
        t, l = int(params.top[i]), int(params.left[i])
        patch = images[i, :, t:t + size, l:l + size]
        out.append(torch.flip(patch, dims=[-1]) if bool(params.flip[i]) else patch)
    return torch.stack(out)


@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
@pytest.mark.parametrize("hw", [(13, 17), (17, 13)], ids=["landscape", "portrait"])
def test_crop_flip_matches_per_image_reference(dtype, memory_format, hw):
    images = make_images((12, 3, *hw), dtype, memory_format=memory_format)
    crop = RandomCropFlip(8)
    params = crop.sample(12, *hw, generator=gen(1))
    assert params.flip.any() and not params.flip.all()  # both branches exercised
    out = crop.apply(images, params)
    assert out.shape == (12, 3, 8, 8) and out.dtype == dtype
    assert torch.equal(out, crop_flip_reference(images, params, 8))
    assert out.is_contiguous(memory_format=memory_format)


def test_crop_flip_call_is_sample_then_apply():
    images = make_images((5, 3, 10, 11), torch.float32)
    crop = RandomCropFlip(6, p_flip=0.5)
    out = crop(images, generator=gen(3))
    params = crop.sample(5, 10, 11, generator=gen(3))
    assert torch.equal(out, crop_flip_reference(images, params, 6))


def test_crop_flip_full_size_crop_only_flips():
    images = make_images((16, 3, 7, 7), torch.uint8)
    crop = RandomCropFlip(7)
    params = crop.sample(16, 7, 7, generator=gen(2))
    assert not params.top.any() and not params.left.any()
    out = crop.apply(images, params)
    expected = torch.where(params.flip[:, None, None, None], images.flip(-1), images)
    assert torch.equal(out, expected)


def test_crop_flip_other_channel_counts_and_empty_batch():
    crop = RandomCropFlip(4)
    images = make_images((3, 1, 6, 9), torch.float32)
    params = crop.sample(3, 6, 9, generator=gen())
    assert torch.equal(crop.apply(images, params), crop_flip_reference(images, params, 4))
    empty = torch.zeros(0, 3, 6, 9)
    assert crop(empty, generator=gen()).shape == (0, 3, 4, 4)


def test_crop_flip_params_types_and_device():
    crop = RandomCropFlip(4)
    g = torch.Generator(device="cpu").manual_seed(0)
    params = crop.sample(9, 6, 8, generator=g)
    assert isinstance(params, CropFlipParams)
    assert params.top.dtype == torch.int64 and params.left.dtype == torch.int64 and params.flip.dtype == torch.bool
    assert all(t.shape == (9,) and t.device == g.device for t in params)
    # Without a generator: torch's default generator on `device`, reproducible from torch.manual_seed.
    torch.manual_seed(5)
    a = crop.sample(9, 6, 8, device="cpu")
    torch.manual_seed(5)
    b = crop.sample(9, 6, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_crop_every_position_reachable_and_in_range():
    crop = RandomCropFlip(2)
    params = crop.sample(4000, 4, 5, generator=gen(7))
    assert int(params.top.min()) == 0 and int(params.top.max()) == 2
    assert int(params.left.min()) == 0 and int(params.left.max()) == 3
    positions = set(zip(params.top.tolist(), params.left.tolist()))
    assert positions == {(t, l) for t in range(3) for l in range(4)}
    # Roughly uniform: each of the 12 positions about 1/12 of the draws (4000/12 = 333, sd ~17.6).
    counts = torch.bincount(params.top * 4 + params.left, minlength=12)
    assert (counts - 4000 / 12).abs().max() < 6 * math.sqrt(4000 / 12 * 11 / 12)
    # Top and left are independent draws, not one shared value.
    corr = torch.corrcoef(torch.stack([params.top, params.left]).double())[0, 1]
    assert abs(corr) < 5 / math.sqrt(4000)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_flip_frequency(p):
    n = 20000
    flips = RandomCropFlip(2, p_flip=p).sample(n, 2, 2, generator=gen(11)).flip
    rate = flips.double().mean().item()
    if p in (0.0, 1.0):
        assert rate == p
    else:
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_crop_flip_determinism():
    images = make_images((8, 3, 12, 12), torch.uint8)
    crop = RandomCropFlip(5)
    a, b = crop(images, generator=gen(42)), crop(images, generator=gen(42))
    assert torch.equal(a, b)
    assert not torch.equal(a, crop(images, generator=gen(43)))


def test_crop_flip_params_from_another_batch_size_or_out_of_range():
    crop = RandomCropFlip(4)
    images = make_images((3, 3, 6, 6), torch.float32)
    params = crop.sample(2, 6, 6, generator=gen())
    with pytest.raises(ValueError, match=r"RandomCropFlip: params.top must have shape \(3,\).*got \(2,\)"):
        crop.apply(images, params)
    bad = CropFlipParams(torch.tensor([0, 3, 0]), torch.tensor([0, 0, 0]), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"RandomCropFlip: params.top must be in \[0, 2\].*got 3 for image 1"):
        crop.apply(images, bad)
    neg = CropFlipParams(torch.zeros(3, dtype=torch.long), torch.tensor([0, 0, -1]), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"params.left must be in \[0, 2\].*got -1 for image 2"):
        crop.apply(images, neg)
    with pytest.raises(TypeError, match="RandomCropFlip: params.flip must be a bool tensor, got torch.int64"):
        crop.apply(images, CropFlipParams(params.top[:1].repeat(3), params.left[:1].repeat(3), torch.zeros(3).long()))
    with pytest.raises(TypeError, match="RandomCropFlip: params.top must be an integer tensor"):
        crop.apply(images, CropFlipParams(torch.zeros(3), torch.zeros(3).long(), torch.zeros(3).bool()))
    with pytest.raises(TypeError, match="RandomCropFlip: params must be a CropFlipParams"):
        crop.apply(images, None)


def test_crop_flip_bad_arguments():
    with pytest.raises(ValueError, match="RandomCropFlip: size must be >= 1, got 0"):
        RandomCropFlip(0)
    with pytest.raises(TypeError, match="RandomCropFlip: size must be an int, got float"):
        RandomCropFlip(2.5)
    with pytest.raises(TypeError, match="RandomCropFlip: size must be an int, got bool"):
        RandomCropFlip(True)
    with pytest.raises(ValueError, match=r"RandomCropFlip: p_flip must be in \[0, 1\], got 1.5"):
        RandomCropFlip(4, p_flip=1.5)
    with pytest.raises(ValueError, match=r"RandomCropFlip: p_flip must be in \[0, 1\], got -0.1"):
        RandomCropFlip(4, p_flip=-0.1)
    with pytest.raises(ValueError, match="RandomCropFlip: p_flip must be a finite number, got nan"):
        RandomCropFlip(4, p_flip=float("nan"))
    crop = RandomCropFlip(8)
    with pytest.raises(ValueError, match=r"RandomCropFlip: images must be a 4-D \(N, C, H, W\) batch, got 3-D"):
        crop(torch.zeros(3, 10, 10))
    with pytest.raises(TypeError, match="RandomCropFlip: images must be a torch.Tensor, got list"):
        crop([1, 2])
    with pytest.raises(ValueError, match="RandomCropFlip: images of 7x10 are smaller than the crop size 8"):
        crop(torch.zeros(1, 3, 7, 10))
    with pytest.raises(ValueError, match="RandomCropFlip: images of 10x7 are smaller than the crop size 8"):
        crop.sample(1, 10, 7)
    with pytest.raises(ValueError, match="RandomCropFlip: n must be >= 0, got -1"):
        crop.sample(-1, 10, 10)
    with pytest.raises(TypeError, match="RandomCropFlip: generator must be a torch.Generator or None, got int"):
        crop(torch.zeros(1, 3, 8, 8), generator=0)


# ------------------------------------------------------------------------------------------------ TenCrop

def five_crop_reference(img, s):
    """torchvision's five_crop written out: tl, tr, bl, br, centre (centre by Python round)."""
    h, w = img.shape[-2:]
    ct, cl = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return [img[..., :s, :s], img[..., :s, w - s:], img[..., h - s:, :s], img[..., h - s:, w - s:],
            img[..., ct:ct + s, cl:cl + s]]


@pytest.mark.parametrize("hw", [(9, 12), (10, 11), (11, 10), (12, 9)])  # margins 4/7, 5/6, 6/5, 7/4
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["nchw", "channels_last"])
def test_ten_crop_order_and_content(hw, dtype, memory_format):
    s = 5
    images = make_images((3, 3, *hw), dtype, memory_format=memory_format)
    out = TenCrop(s)(images)
    assert out.shape == (3, 10, 3, s, s) and out.dtype == dtype
    expected = torch.stack(five_crop_reference(images, s) + five_crop_reference(images.flip(-1), s), dim=1)
    assert torch.equal(out, expected)
    # flatten(0, 1) is the batch for the model: image-major, and channels_last stays channels_last.
    flat = out.flatten(0, 1)
    assert torch.equal(flat[10 * 2 + 7], expected[2, 7])
    assert flat.is_contiguous(memory_format=memory_format)


def test_ten_crop_flipped_crops_are_of_the_mirrored_image():
    # Margin 5 rounds to 2 (half to even), so the mirrored image's centre crop sits at column 2 of the
    # mirrored image, i.e. column 3 of the original: not the mirror of the original centre crop.
    s, w = 5, 10
    img = torch.arange(w, dtype=torch.float32).expand(1, 1, s, w).contiguous()
    out = TenCrop(s)(img)[0, :, 0, 0]  # first row of each crop: the column indices it took
    assert out[0].tolist() == [0, 1, 2, 3, 4]          # top-left
    assert out[1].tolist() == [5, 6, 7, 8, 9]          # top-right
    assert out[4].tolist() == [2, 3, 4, 5, 6]          # centre at round(2.5) = 2
    assert out[5].tolist() == [9, 8, 7, 6, 5]          # mirrored image's top-left = mirror of top-right
    assert out[6].tolist() == [4, 3, 2, 1, 0]
    assert out[9].tolist() == [7, 6, 5, 4, 3]          # mirrored image's centre: columns 2..6 of it


def test_ten_crop_full_size():
    images = make_images((2, 3, 6, 6), torch.float32)
    out = TenCrop(6)(images)
    assert all(torch.equal(out[:, k], images) for k in range(5))
    assert all(torch.equal(out[:, k], images.flip(-1)) for k in range(5, 10))


def test_ten_crop_bad_arguments():
    with pytest.raises(ValueError, match="TenCrop: size must be >= 1, got 0"):
        TenCrop(0)
    with pytest.raises(TypeError, match="TenCrop: size must be an int, got str"):
        TenCrop("224")
    with pytest.raises(ValueError, match="TenCrop: images must be a 4-D"):
        TenCrop(4)(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="TenCrop: images of 8x3 are smaller than the crop size 4"):
        TenCrop(4)(torch.zeros(1, 3, 8, 3))


def test_average_ten_crop_matches_loop():
    logits = torch.randn(4, 10, 7, generator=gen(3)) * 3
    expected = torch.stack([sum(torch.softmax(logits[i, k], dim=0) for k in range(10)) / 10 for i in range(4)])
    out = average_ten_crop(logits)
    assert out.shape == (4, 7) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, **TOL[torch.float32])
    torch.testing.assert_close(average_ten_crop(logits.reshape(40, 7)), expected, **TOL[torch.float32])
    torch.testing.assert_close(out.sum(1), torch.ones(4), **TOL[torch.float32])


def test_average_ten_crop_low_precision_in_float32():
    logits = (torch.randn(3, 10, 5, generator=gen(4)) * 4).half()
    ref = torch.softmax(logits.double(), dim=-1).mean(1)
    out = average_ten_crop(logits)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, **TEN_CROP_FP16_IN_FP32)
    assert average_ten_crop(logits.double()).dtype == torch.float64


def test_average_ten_crop_bad_shapes():
    with pytest.raises(ValueError, match=r"average_ten_crop: logits of shape \(N, 10, K\) must have 10 crops"):
        average_ten_crop(torch.zeros(2, 9, 5))
    with pytest.raises(ValueError, match=r"average_ten_crop: logits of shape \(N \* 10, K\) must have a multiple"):
        average_ten_crop(torch.zeros(25, 5))
    with pytest.raises(ValueError, match=r"average_ten_crop: logits must be \(N, 10, K\) or \(N \* 10, K\), got 1-D"):
        average_ten_crop(torch.zeros(10))
    with pytest.raises(ValueError, match="got 4-D"):
        average_ten_crop(torch.zeros(1, 10, 2, 2))
    with pytest.raises(TypeError, match="average_ten_crop: logits must have a floating point dtype, got torch.int64"):
        average_ten_crop(torch.zeros(1, 10, 3, dtype=torch.long))


# ------------------------------------------------------------------------------------------- PCALighting

def lighting_offsets(alpha, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC):
    """fb.resnet.torch's rgb = (eigvec * alpha * eigval).sum(over j), per image, in float64."""
    vec, val = torch.tensor(eigvec, dtype=torch.float64), torch.tensor(eigval, dtype=torch.float64)
    a = alpha.double()
    return torch.stack([sum(vec[i, j] * a[:, j] * val[j] for j in range(3)) for i in range(3)], dim=1)


@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_lighting_adds_the_offset_of_the_sampled_alpha(dtype, memory_format):
    images = make_images((6, 3, 5, 7), dtype, memory_format=memory_format)
    light = PCALighting(0.1)
    alpha = light.sample(6, generator=gen(9))
    assert alpha.shape == (6, 3) and alpha.dtype == torch.float32 and alpha.device == torch.device("cpu")
    out = light.apply(images, alpha)
    out_dtype = torch.float32 if dtype == torch.uint8 else dtype
    assert out.dtype == out_dtype and out.shape == images.shape
    expected = (as_float(images) + lighting_offsets(alpha)[:, :, None, None]).to(out_dtype)
    torch.testing.assert_close(out, expected, **TOL[torch.float32])
    assert torch.equal(light(images, generator=gen(9)), out)  # __call__ = apply(sample)
    # One offset per image and channel, the same at every pixel.
    offset = out.double() - as_float(images)
    torch.testing.assert_close(offset, offset[:, :, :1, :1].expand_as(offset), rtol=0, atol=PIXEL_OFFSET_ABS)


def test_lighting_float16_keeps_dtype():
    images = make_images((4, 3, 6, 6), torch.float16)
    light = PCALighting(0.1)
    alpha = light.sample(4, generator=gen(1))
    out = light.apply(images, alpha)
    assert out.dtype == torch.float16
    ref64 = images.double() + lighting_offsets(alpha)[:, :, None, None]
    assert_close(out, ref64.half(), ref64=ref64, torch_out=ref64.half(), what="PCALighting fp16")


def test_lighting_recovers_alpha_statistics():
    n, std = 4000, 0.1
    light = PCALighting(std)
    out = light(torch.zeros(n, 3, 2, 2, dtype=torch.float64), generator=gen(21))
    rgb = out[:, :, 0, 0]
    assert torch.equal(out, rgb[:, :, None, None].expand_as(out))  # the same offset at every pixel
    vec, val = torch.tensor(IMAGENET_EIGVEC, dtype=torch.float64), torch.tensor(IMAGENET_EIGVAL, dtype=torch.float64)
    alpha = torch.linalg.solve(vec, rgb.T).T / val            # rgb = vec @ (alpha * val)
    torch.testing.assert_close(alpha, light.sample(n, generator=gen(21)).double(), **ALPHA_ROUNDTRIP)
    # alpha ~ N(0, 0.1), independent components: mean within 5 standard errors, std within 5 of its own.
    assert alpha.mean(0).abs().max() < 5 * std / math.sqrt(n)
    assert (alpha.std(0) - std).abs().max() < 5 * std / math.sqrt(2 * n)
    corr = torch.corrcoef(alpha.T) - torch.eye(3, dtype=torch.float64)
    assert corr.abs().max() < 5 / math.sqrt(n)


def test_lighting_determinism_and_zero_std():
    images = make_images((5, 3, 4, 4), torch.uint8)
    light = PCALighting(0.1)
    a, b = light(images, generator=gen(1)), light(images, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, light(images, generator=gen(2)))
    off = PCALighting(0.0)
    assert torch.equal(off(images, generator=gen(1)), images.div(255))
    floats = make_images((5, 3, 4, 4), torch.float32)
    assert torch.equal(off(floats), floats)
    assert not off.sample(5).any()


def test_lighting_custom_constants():
    val, vec = torch.tensor([0.5, 0.2, 0.1]), torch.linalg.qr(torch.randn(3, 3, generator=gen(4)))[0]
    light = PCALighting(0.2, eigval=val, eigvec=vec)
    alpha = light.sample(3, generator=gen())
    out = light.apply(torch.zeros(3, 3, 1, 1), alpha)
    expected = (vec.double() @ (alpha.double() * val.double()).T).T
    torch.testing.assert_close(out[:, :, 0, 0], expected.float(), **TOL[torch.float32])


def test_lighting_bad_arguments():
    with pytest.raises(ValueError, match="PCALighting: alphastd must be >= 0, got -0.1"):
        PCALighting(-0.1)
    with pytest.raises(ValueError, match=r"PCALighting: eigval must be 3 values, got shape \(2,\)"):
        PCALighting(eigval=(0.2, 0.1))
    with pytest.raises(ValueError, match=r"PCALighting: eigvec must be a 3 x 3 matrix .* got shape \(3, 2\)"):
        PCALighting(eigvec=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"PCALighting: eigvec must be a 3 x 3 matrix .* got shape \(9,\)"):
        PCALighting(eigvec=[0.0] * 9)
    light = PCALighting()
    with pytest.raises(ValueError, match=r"PCALighting: images must have 3 \(RGB\) channels, got 1"):
        light(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="PCALighting: images must be a 4-D"):
        light(torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="PCALighting: images must be uint8 .* or floating point .* got torch.int16"):
        light(torch.zeros(2, 3, 4, 4, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"PCALighting: alpha must have shape \(2, 3\) .* got \(3, 3\)"):
        light.apply(torch.zeros(2, 3, 4, 4), torch.zeros(3, 3))


# ---------------------------------------------------------------------------- compute_pca_lighting / mean

def synthetic_pixels(n_batches, seed=0):
    """Batches whose RGB values are 0.5 + L z with a known covariance L L^T = Q diag(lam) Q^T."""
    g = gen(seed)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    lam = torch.tensor([0.04, 0.01, 0.002], dtype=torch.float64)
    lmat = q * lam.sqrt()
    batches = []
    for _ in range(n_batches):
        z = torch.randn(8, 16, 16, 3, generator=g, dtype=torch.float64)
        batches.append((0.5 + z @ lmat.T).permute(0, 3, 1, 2).float())
    return batches, lam, q


def check_sign_convention(eigvec):
    peak = eigvec.gather(0, eigvec.abs().argmax(0, keepdim=True))
    assert (peak > 0).all()


def test_pca_recovers_known_covariance():
    batches, lam, q = synthetic_pixels(4)
    eigval, eigvec = compute_pca_lighting(batches)
    assert eigval.shape == (3,) and eigvec.shape == (3, 3)
    assert eigval.dtype == eigvec.dtype == torch.float32
    assert (eigval[:-1] >= eigval[1:]).all()
    n = 4 * 8 * 16 * 16  # relative sampling error of an eigenvalue ~ sqrt(2 / n) = 1.6 %
    torch.testing.assert_close(eigval.double(), lam, rtol=PCA_EIGVAL_SIGMAS * math.sqrt(2 / n), atol=0)
    # The same directions up to sign (well separated eigenvalues), oriented by the documented convention.
    assert ((eigvec.double() * q).sum(0).abs() > 0.99).all()
    check_sign_convention(eigvec)
    torch.testing.assert_close(eigvec.T @ eigvec, torch.eye(3), **TOL[torch.float32])


def test_pca_streaming_equals_one_batch_and_torch_cov():
    batches, _, _ = synthetic_pixels(5, seed=1)
    batches[2] = batches[2][:3, :, :5, :]  # batches may differ in N, H and W
    streamed = compute_pca_lighting(iter(batches))  # a one-pass iterator is enough
    pixels = torch.cat([b.permute(1, 0, 2, 3).reshape(3, -1) for b in batches], dim=1).double()
    val, vec = torch.linalg.eigh(torch.cov(pixels))
    val, vec = val.flip(0), vec.flip(1)
    vec = vec * torch.sign(vec.gather(0, vec.abs().argmax(0, keepdim=True)))
    torch.testing.assert_close(streamed[0], val.float(), **TOL[torch.float32])
    torch.testing.assert_close(streamed[1], vec.float(), **TOL[torch.float32])
    whole = compute_pca_lighting([pixels.float()[None, :, :, None]])  # every pixel in one (1, 3, P, 1) batch
    torch.testing.assert_close(whole[0], streamed[0], **TOL[torch.float32])
    torch.testing.assert_close(whole[1], streamed[1], **TOL[torch.float32])


def test_pca_uint8_is_scaled():
    images = make_images((4, 3, 9, 9), torch.uint8, seed=2)
    a = compute_pca_lighting([images[:2], images[2:]])
    b = compute_pca_lighting([images.double() / 255])
    torch.testing.assert_close(a[0], b[0], **TOL[torch.float32])
    torch.testing.assert_close(a[1], b[1], **TOL[torch.float32])
    # Uniform 0..255 channels, independent: each eigenvalue ~ variance of U(0, 1) = 1/12.
    torch.testing.assert_close(a[0], torch.full((3,), 1 / 12), rtol=UNIFORM_EIGVAL_REL, atol=0)


def test_pca_and_mean_bad_arguments():
    with pytest.raises(ValueError, match="compute_pca_lighting: batches is empty"):
        compute_pca_lighting([])
    with pytest.raises(ValueError, match=r"compute_pca_lighting: batch 1 must have 3 \(RGB\) channels, got 4"):
        compute_pca_lighting([torch.rand(1, 3, 2, 2), torch.rand(1, 4, 2, 2)])
    with pytest.raises(ValueError, match="compute_pca_lighting: batch 0 must be 4-D"):
        compute_pca_lighting([torch.rand(3, 2, 2)])
    with pytest.raises(ValueError, match="compute_pca_lighting: need at least 2 pixels for a covariance, got 1"):
        compute_pca_lighting([torch.rand(1, 3, 1, 1)])
    with pytest.raises(TypeError, match="compute_pca_lighting: batch 0 must be uint8"):
        compute_pca_lighting([torch.zeros(1, 3, 2, 2, dtype=torch.int32)])
    with pytest.raises(ValueError, match="compute_mean_image: batches is empty"):
        compute_mean_image(iter([]))
    with pytest.raises(ValueError, match=r"compute_mean_image: all batches must have the same \(C, H, W\); "
                                         r"batch 0 has \(3, 4, 4\), batch 1 has \(3, 4, 5\)"):
        compute_mean_image([torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 5)])


def test_compute_mean_image():
    u8 = make_images((6, 3, 5, 4), torch.uint8, seed=3)
    fl = make_images((3, 3, 5, 4), torch.float32, seed=4)
    mean = compute_mean_image(iter([u8[:4], fl, u8[4:]]))
    expected = torch.cat([u8.double() / 255, fl.double()]).mean(0)
    assert mean.shape == (3, 5, 4) and mean.dtype == torch.float32
    torch.testing.assert_close(mean, expected.float(), **TOL[torch.float32])


def test_imagenet_constants():
    assert IMAGENET_EIGVAL == (0.2175, 0.0188, 0.0045)
    vec = torch.tensor(IMAGENET_EIGVEC, dtype=torch.float64)
    assert vec[:, 0].tolist() == [-0.5675, -0.5808, -0.5836]  # columns are the eigenvectors
    torch.testing.assert_close(vec.T @ vec, torch.eye(3, dtype=torch.float64), rtol=0, atol=IMAGENET_EIGVEC_ORTHO_ABS)
    assert len(IMAGENET_MEAN) == len(IMAGENET_STD) == 3


# --------------------------------------------------------------------------------------------- Normalize

@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_normalize_per_channel(dtype, memory_format):
    images = make_images((4, 3, 6, 5), dtype, memory_format=memory_format)
    out = Normalize()(images)
    out_dtype = torch.float32 if dtype == torch.uint8 else dtype
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)[:, None, None]
    expected = ((as_float(images) - mean) / std).to(out_dtype)
    assert out.dtype == out_dtype
    torch.testing.assert_close(out, expected, **TOL[torch.float32 if dtype == torch.uint8 else dtype])
    assert out.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_normalize_low_precision_keeps_dtype(dtype):
    images = make_images((2, 2, 8, 8), dtype)
    norm = Normalize(mean=(0.5, 0.25), std=(0.2, 0.3))
    out = norm(images)
    assert out.dtype == dtype
    ref64 = (images.double() - torch.tensor([0.5, 0.25]).double()[:, None, None]) / \
        torch.tensor([0.2, 0.3]).double()[:, None, None]
    torch_out = (images - torch.tensor([0.5, 0.25], dtype=dtype)[:, None, None]) / \
        torch.tensor([0.2, 0.3], dtype=dtype)[:, None, None]
    assert_close(out, ref64.to(dtype), ref64=ref64, torch_out=torch_out, what=f"Normalize {dtype}")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_normalize_mean_image(dtype):
    images = make_images((3, 3, 6, 5), dtype)
    mean_image = compute_mean_image([make_images((4, 3, 6, 5), torch.uint8, seed=8)])
    out = Normalize(mean_image=mean_image)(images)
    out_dtype = torch.float32 if dtype == torch.uint8 else dtype
    assert out.dtype == out_dtype
    ref64 = as_float(images) - mean_image.double()
    if dtype == torch.float16:
        assert_close(out, ref64.half(), ref64=ref64, torch_out=images - mean_image.half(), what="mean image fp16")
    else:
        torch.testing.assert_close(out, ref64.float(), **TOL[torch.float32])
    if dtype == torch.uint8:  # exactly x / 255 - mean_image
        assert torch.equal(out, images.div(255) - mean_image)
    # mean and std may be given as None (or left at their defaults) alongside a mean image.
    assert torch.equal(Normalize(None, None, mean_image=mean_image)(images), out)


def test_normalize_bad_arguments():
    with pytest.raises(ValueError, match=r"Normalize: std must not contain zeros, got \(0.2, 0.0, 0.3\)"):
        Normalize(mean=(0.5, 0.5, 0.5), std=(0.2, 0.0, 0.3))
    with pytest.raises(ValueError, match="Normalize: mean and std must have the same length, got 3 and 2"):
        Normalize(mean=(0.5, 0.5, 0.5), std=(0.2, 0.3))
    with pytest.raises(ValueError, match="Normalize: images have 1 channels but mean and std have 3 values"):
        Normalize()(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="Normalize: std must be finite"):
        Normalize(std=(0.2, float("inf"), 0.3))
    mean_image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match=r"Normalize: mean_image has shape \(3, 8, 8\) but the images are "
                                         r"\(C, H, W\) = \(3, 6, 6\); crop or resize the mean image"):
        Normalize(mean_image=mean_image)(torch.zeros(1, 3, 6, 6))
    with pytest.raises(ValueError, match="Normalize: mean_image replaces mean and std"):
        Normalize(mean=(0.5, 0.5, 0.5), mean_image=mean_image)
    with pytest.raises(ValueError, match="Normalize: mean_image replaces mean and std"):
        Normalize(std=(1.0, 1.0, 1.0), mean_image=mean_image)
    with pytest.raises(ValueError, match=r"Normalize: mean_image must be 3-D \(C, H, W\), got 4-D"):
        Normalize(mean_image=torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError, match="Normalize: mean_image must be floating point"):
        Normalize(mean_image=torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="Normalize: mean and std are required without a mean_image"):
        Normalize(mean=None)
    with pytest.raises(TypeError, match="Normalize: images must be uint8"):
        Normalize()(torch.zeros(1, 3, 2, 2, dtype=torch.int64))


# ------------------------------------------------------------------------------------- the whole pipeline

def test_training_pipeline_composes():
    images = make_images((4, 3, 12, 12), torch.uint8)
    g = gen(0)
    crop, light, norm = RandomCropFlip(8), PCALighting(), Normalize()
    params = crop.sample(4, 12, 12, generator=g)
    alpha = light.sample(4, generator=g)
    out = norm(light.apply(crop.apply(images, params), alpha))
    ref = as_float(crop_flip_reference(images, params, 8)) + lighting_offsets(alpha)[:, :, None, None]
    mean, std = (torch.tensor(v, dtype=torch.float64)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    ref = (ref - mean) / std
    assert out.dtype == torch.float32 and out.shape == (4, 3, 8, 8)
    torch.testing.assert_close(out, ref.float(), **TOL[torch.float32])


# ------------------------------------------------------------------------------- resize_and_center_crop

@pytest.mark.parametrize("shape,expected", [((3, 40, 60), (3, 20, 20)), ((3, 60, 40), (3, 20, 20)),
                                            ((3, 33, 33), (3, 20, 20)), ((2, 3, 15, 50), (2, 3, 20, 20)),
                                            ((3, 20, 31), (3, 20, 20))],
                         ids=["landscape", "portrait", "square", "upscale-batch", "no-resize"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_resize_and_center_crop_shapes(shape, expected, dtype):
    images = make_images(shape, dtype)
    out = resize_and_center_crop(images, 20)
    assert out.shape == expected and out.dtype == dtype and out.is_contiguous()


def test_resize_and_center_crop_no_resize_is_the_central_crop():
    images = make_images((3, 20, 31), torch.uint8)
    assert torch.equal(resize_and_center_crop(images, 20), images[:, :, 5:25])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_resize_and_center_crop_constant_stays_constant(dtype):
    value = 77 if dtype == torch.uint8 else 0.3
    images = torch.full((2, 3, 45, 70), value, dtype=dtype)
    out = resize_and_center_crop(images, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == dtype
    torch.testing.assert_close(out, torch.full_like(out, value), rtol=0, atol=RESIZE_CONSTANT_ABS[dtype])


def test_resize_and_center_crop_bad_arguments():
    with pytest.raises(ValueError, match="resize_and_center_crop: size must be >= 1, got 0"):
        resize_and_center_crop(torch.zeros(3, 8, 8), 0)
    with pytest.raises(ValueError, match=r"resize_and_center_crop: images must be \(C, H, W\) or \(N, C, H, W\)"):
        resize_and_center_crop(torch.zeros(8, 8), 4)
    with pytest.raises(TypeError, match="resize_and_center_crop: images must be a torch.Tensor"):
        resize_and_center_crop([[0]], 4)
