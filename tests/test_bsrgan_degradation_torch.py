"""The torch (on-device) BSRGAN degradation against independent references: OpenCV, scipy, basicsr, the CPU path."""
import cv2
import math
import numpy as np
import pytest
import torch
from scipy import ndimage

import srplugins  # noqa: F401
from srplugins.ops import bsrgan_degradation as cpu
from srplugins.ops.bsrgan_degradation_torch import (TorchBSRGANDegradation, add_poisson_noise_torch, convolve_torch,
                                                    gaussian_noise_torch, imresize_matlab_torch, jpeg_torch,
                                                    reflect101_index, resize_torch)


def _photo(size=288):
    from skimage import data
    img = data.astronaut()[100:100 + size, 100:100 + size]
    return np.ascontiguousarray(img).astype(np.float32) / 255.0


def _chw(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def _hwc(tensor):
    return tensor.permute(1, 2, 0).cpu().numpy()


def _psnr(a, b):
    mse = np.mean((np.round(np.clip(a, 0, 1) * 255) - np.round(np.clip(b, 0, 1) * 255))**2)
    return float('inf') if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _psnr_bicubic_up(lq, hq):
    up = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
    return _psnr(up, hq)


@pytest.mark.parametrize('interp', [1, 2, 3], ids=['bilinear', 'bicubic', 'area'])
def test_resize_equals_opencv(interp):
    rng = np.random.default_rng(interp)
    sizes = [((40, 40), (13, 13)), ((40, 40), (97, 97)), ((37, 53), (21, 77)), ((1, 9), (4, 3)), ((58, 93), (58, 174)),
             ((21, 13), (54, 33)), ((288, 288), (72, 72)), ((50, 50), (50, 50))]
    sizes += [((int(h), int(w)), (int(h2), int(w2))) for h, w, h2, w2 in rng.integers(1, 120, (20, 4))]
    for (h, w), (h2, w2) in sizes:
        img = rng.random((h, w, 3), dtype=np.float32)
        ref = cv2.resize(img, (w2, h2), interpolation=interp).reshape(h2, w2, 3)
        out = _hwc(resize_torch(_chw(img).double(), (w2, h2), interp))
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=2e-5, err_msg=f'{(h, w)} -> {(h2, w2)} mode {interp}')


@pytest.mark.parametrize('scale', [0.5, 0.25, 2.0])
def test_imresize_matlab_equals_basicsr(scale):
    from basicsr.utils.matlab_functions import imresize
    img = np.random.default_rng(0).random((24, 30, 3)).astype(np.float32)
    out = _hwc(imresize_matlab_torch(_chw(img).double(), scale))
    np.testing.assert_allclose(out, imresize(img, scale), atol=1e-5)


@pytest.mark.parametrize('n, pad', [(5, 2), (5, 4), (5, 9), (3, 12), (2, 7), (1, 3)])
def test_reflect101_index_equals_opencv_border(n, pad):
    row = np.arange(n, dtype=np.float32)[None, :]
    ref = cv2.copyMakeBorder(row, 0, 0, pad, pad, cv2.BORDER_REFLECT_101)[0]
    np.testing.assert_array_equal(reflect101_index(n, pad), ref.astype(np.int64))


@pytest.mark.parametrize('shape', [(40, 31), (9, 7), (3, 4)])
def test_convolve_equals_scipy_mirror_convolution(shape):
    rng = np.random.default_rng(1)
    img = rng.random(shape + (3, )).astype(np.float32)
    kernels = [cpu.anisotropic_gaussian_kernel(15, 0.7, 6.0, 1.5),
               cpu.gaussian_kernel(25, 2.0),
               rng.random((5, 5))]  # non-symmetric: a correlation would differ
    for kernel in kernels:
        ref = ndimage.convolve(img.astype(np.float64), kernel[..., None], mode='mirror')
        out = _hwc(convolve_torch(_chw(img).double()[None], kernel)[0])
        np.testing.assert_allclose(out, ref, atol=1e-6)


def test_plans_without_noise_and_jpeg_equal_the_cpu_path():
    """Same plan, deterministic steps only: the torch execution equals the numpy/OpenCV one."""
    img = _photo()
    for sf in (2, 3, 4):
        for kind in ('bsrgan', 'bsrgan_plus'):
            degrader = TorchBSRGANDegradation(
                sf, 64 if sf < 4 else 72, kind, shuffle_prob=0.5, use_sharp=kind == 'bsrgan_plus')
            for seed in range(6):
                plan = degrader.sample_plan(np.random.default_rng(seed), img.shape[:2])
                plan['steps'] = [
                    s for s in plan['steps'] if s[0] not in ('gaussian_noise', 'speckle_noise', 'poisson_noise', 'jpeg')
                ]
                ref_lq, ref_hq = cpu.apply_plan(img, plan, np.random.default_rng(0))
                plan['steps'].append(('jpeg', {'quality': 90}))
                out, hq, quality = degrader.apply_plan(_chw(img), plan, None)
                assert quality == 90
                top, left = plan['crop']
                p = plan['lq_patchsize']
                np.testing.assert_allclose(_hwc(out[:, top:top + p, left:left + p]), ref_lq, atol=1e-4)
                np.testing.assert_allclose(
                    _hwc(hq[:, top * sf:(top + p) * sf, left * sf:(left + p) * sf]), ref_hq, atol=1e-5)


def test_same_plans_give_matching_psnr_to_the_cpu_path():
    """Noise realisations and the JPEG codec differ; per-sample PSNR(bicubic-up LQ, HQ) stays within a fraction of a dB.
    """
    img = _photo()
    for sf, kind in ((4, 'bsrgan'), (2, 'bsrgan'), (4, 'bsrgan_plus')):
        degrader = TorchBSRGANDegradation(sf, 72 if sf == 4 else 64, kind, shuffle_prob=0.5)
        jpeger = degrader._tools(torch.device('cpu'))[0]
        diffs = []
        for seed in range(12):
            plan = degrader.sample_plan(np.random.default_rng(seed), img.shape[:2])
            lq, hq = cpu.apply_plan(img, plan, np.random.default_rng(1000 + seed))
            out, thq, quality = degrader.apply_plan(_chw(img), plan, torch.Generator().manual_seed(seed))
            out = jpeg_torch(out[None], [quality], jpeger)[0]
            top, left = plan['crop']
            p = plan['lq_patchsize']
            tlq = _hwc(out[:, top:top + p, left:left + p])
            diffs.append(_psnr_bicubic_up(tlq, hq) - _psnr_bicubic_up(lq, hq))
        diffs = np.array(diffs)
        assert abs(diffs.mean()) < 0.15 and np.abs(diffs).max() < 1.0, (sf, kind, diffs)


def test_jpeg_matches_opencv_closely_and_respects_per_sample_quality():
    img = _photo(96)
    from basicsr.utils import DiffJPEG
    jpeger = DiffJPEG(differentiable=False)
    batch = torch.stack([_chw(img[:90, :90]), _chw(img[:90, :90])])  # 90: not a multiple of 16
    out = jpeg_torch(batch, [30, 95], jpeger)
    assert out.shape == batch.shape and not out.requires_grad
    np.testing.assert_allclose((out * 255).numpy(), np.round((out * 255).numpy()), atol=1e-4)  # 8-bit values
    for k, quality in enumerate((30, 95)):
        ref = cpu.jpeg_compress(img[:90, :90], quality)
        assert _psnr(_hwc(out[k]), ref) > 33, quality
    assert _psnr(_hwc(out[0]), img[:90, :90]) < _psnr(_hwc(out[1]), img[:90, :90]) - 3


def test_noise_fields_have_the_drawn_statistics():
    g = torch.Generator().manual_seed(0)
    color = gaussian_noise_torch((3, 200, 200), 'color', 0.05, g)
    assert color.shape == (3, 200, 200) and abs(color.std().item() - 0.05) < 1e-3
    gray = gaussian_noise_torch((3, 200, 200), 'gray', 0.05, g)
    assert gray.shape == (1, 200, 200)
    cov = next(c for c in (cpu.sample_noise(np.random.default_rng(s)) for s in range(100)) if c['mode'] == 'correlated')
    field = gaussian_noise_torch((3, 300, 300), 'correlated', cov['sigma'], g, cov['cov']).reshape(3, -1).double()
    np.testing.assert_allclose(torch.cov(field).numpy(), cov['cov'], atol=3e-4)
    img = torch.full((3, 100, 100), 0.5, dtype=torch.float32)
    noisy = add_poisson_noise_torch(img, 100.0, True, g)
    assert torch.equal(noisy[0], noisy[1]) and torch.equal(noisy[1], noisy[2])
    colour = add_poisson_noise_torch(img, 100.0, False, g)
    assert not torch.equal(colour[0], colour[1])
    assert abs(colour.var().item() - 0.5 / 100.0) < 5e-4  # Poisson(50)/100: variance 0.005


@pytest.mark.parametrize('sf', [2, 3, 4])
def test_batched_call_shapes_alignment_and_seeding(sf):
    torch.manual_seed(0)
    hr = torch.rand(3, 3, 77 * sf // 2 * 2 + 1, 70 * sf + 2)  # odd sizes: mod crop
    p = 32
    degrader = TorchBSRGANDegradation(sf, p)
    lq, gt = degrader(hr, 7)
    assert lq.shape == (3, 3, p, p) and gt.shape == (3, 3, p * sf, p * sf)
    assert lq.min() >= 0 and lq.max() <= 1
    np.testing.assert_allclose((lq * 255).numpy(), np.round((lq * 255).numpy()), atol=1e-4)
    rng = np.random.default_rng(7)
    for i in range(3):  # gt is the HR crop aligned with the LQ crop of the plan drawn for sample i
        plan = degrader.sample_plan(rng, hr.shape[-2:])
        top, left = plan['crop']
        assert torch.equal(gt[i], hr[i, :, top * sf:(top + p) * sf, left * sf:(left + p) * sf])
    lq2, gt2 = degrader(hr, 7)
    assert torch.equal(lq, lq2) and torch.equal(gt, gt2)
    lq3, _ = degrader(hr, 8)
    assert not torch.equal(lq, lq3)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='scale must be 2, 3 or 4'):
        TorchBSRGANDegradation(5, 16)
    with pytest.raises(ValueError, match='degradation_type'):
        TorchBSRGANDegradation(4, 16, 'real_esrgan')
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        TorchBSRGANDegradation(4, 16)(torch.rand(3, 64, 64), 0)
    with pytest.raises(ValueError, match='smaller than lq_patchsize'):
        TorchBSRGANDegradation(4, 32)(torch.rand(1, 3, 100, 100), 0)
