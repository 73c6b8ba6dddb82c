"""Tests of the BSRGAN degradation primitives, sampler and pipelines (srplugins.ops.bsrgan_degradation)."""
import cv2
import math
import numpy as np
import pytest
from scipy import ndimage

from srplugins.ops import bsrgan_degradation as bd


# ------------------------------------------------------------------------------------------------ kernels
def test_gaussian_kernel_matches_matlab_values():
    k = bd.gaussian_kernel(7, 1.0)
    assert k.shape == (7, 7)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert k[3, 3] == pytest.approx(0.1592411257, abs=1e-10)
    assert k[0, 0] == pytest.approx(1.965e-05, rel=1e-3)
    # hand computation: exp(-(x^2+y^2)/2) normalised
    grid = np.arange(-3, 4)
    raw = np.exp(-(grid[:, None]**2 + grid[None, :]**2) / 2.0)
    np.testing.assert_allclose(k, raw / raw.sum(), rtol=0, atol=1e-15)


def test_gaussian_kernel_eps_threshold_gives_delta():
    k = bd.gaussian_kernel(25, 0.1)
    assert np.count_nonzero(k) == 1 and k[12, 12] == 1.0


def test_anisotropic_kernel_reference_values():
    k = bd.anisotropic_gaussian_kernel(15, math.pi / 4, 6, 1)
    assert k.sum() == pytest.approx(1.0)
    assert k[7, 7] == pytest.approx(0.0649809224, abs=1e-9)
    assert k[7, 8] == pytest.approx(0.0485418862, abs=1e-9)
    assert k[8, 7] == pytest.approx(0.0485418862, abs=1e-9)
    assert k[6, 8] == pytest.approx(0.0239051454, abs=1e-9)


def test_anisotropic_kernel_uses_variances():
    # theta = 0: the covariance is diag(var1, var2); row = y, column = x
    k = bd.anisotropic_gaussian_kernel(25, 0.0, 4.0, 1.0)
    grid = np.arange(25) - 12
    var_x = (k.sum(0) * grid**2).sum()
    var_y = (k.sum(1) * grid**2).sum()
    assert var_x == pytest.approx(4.0, rel=1e-3)
    assert var_y == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize('sf,expected', [(2, 11.5), (3, 11.0), (4, 10.5)])
def test_shifted_kernel_centre_of_mass(sf, expected):
    k = bd.shift_kernel(bd.gaussian_kernel(25, 1.0), sf)
    k = k / k.sum()
    idx = np.arange(25)
    assert (k.sum(0) * idx).sum() == pytest.approx(expected, abs=1e-9)
    assert (k.sum(1) * idx).sum() == pytest.approx(expected, abs=1e-9)


def test_shift_kernel_is_bilinear_with_clipping():
    k = np.arange(16, dtype=np.float64).reshape(4, 4)
    out = bd.shift_kernel(k, 2)  # samples at i + 0.5, clipped to 3
    # along x: k[y, x] = 4y + x -> 4y + min(x + 0.5, 3); along y the same
    expected = 4 * np.minimum(np.arange(4) + 0.5, 3)[:, None] + np.minimum(np.arange(4) + 0.5, 3)[None, :]
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(
        bd.shift_kernel(k, 2, upper_left=False),
        4 * np.maximum(np.arange(4) - 0.5, 0)[:, None] + np.maximum(np.arange(4) - 0.5, 0))


# ------------------------------------------------------------------------------------------------ convolution
def test_convolve_is_true_convolution_with_reflect101_padding():
    img = np.arange(30, dtype=np.float32).reshape(5, 6)[..., None].repeat(3, 2)
    kernel = np.zeros((3, 3))
    kernel[1, 0] = 1.0  # true convolution reads img[i, j + 1]
    out = bd.convolve(img, kernel)
    np.testing.assert_array_equal(out[:, :5], img[:, 1:])
    np.testing.assert_array_equal(out[:, 5], img[:, 4])  # column 6 reflects (101) to column 4


@pytest.mark.parametrize('shape', [(40, 37, 3), (5, 6, 3), (1, 9, 3)])
def test_convolve_matches_scipy_mirror(shape):
    rng = np.random.default_rng(0)
    img = rng.random(shape, dtype=np.float32)
    for kernel in (bd.anisotropic_gaussian_kernel(25, 0.7, 6, 1), bd.gaussian_kernel(9, 1.3),
                   bd.shift_kernel(bd.gaussian_kernel(25, 1.0), 4)):
        ref = ndimage.convolve(img, kernel[..., None], mode='mirror')
        np.testing.assert_allclose(bd.convolve(img, kernel), ref, atol=1e-6)


def test_convolve_rejects_even_kernels():
    with pytest.raises(ValueError, match='odd-sized'):
        bd.convolve(np.zeros((8, 8, 3), np.float32), np.ones((4, 4)) / 16)


# ------------------------------------------------------------------------------------------------ alignment
def _ramp(width, sf):
    return np.tile(np.arange(width, dtype=np.float32)[None, :, None], (sf * 8, 1, 3))


@pytest.mark.parametrize('sf', [2, 3, 4])
def test_every_downsampler_centres_lq_pixels_on_hr_blocks(sf):
    width = 48 * sf
    ramp = _ramp(width, sf)
    h, w = ramp.shape[:2]
    expected = sf * np.arange(w // sf) + (sf - 1) / 2
    interior = slice(4, w // sf - 4)
    outputs = {name: bd.resize(ramp, (w // sf, h // sf), name) for name in ('bilinear', 'bicubic', 'area')}
    outputs['matlab'] = bd.imresize_matlab(ramp, 1 / sf)
    kernel = bd.shift_kernel(bd.gaussian_kernel(25, 1.0), sf)
    outputs['shifted_nearest'] = bd.convolve(ramp, kernel / kernel.sum())[::sf, ::sf]
    for name, out in outputs.items():
        assert out.shape[1] == w // sf, name
        np.testing.assert_allclose(out[2, interior, 0], expected[interior], atol=1e-3, err_msg=name)
    # correlation instead of convolution misaligns by (sf - 1) HR pixels
    corr = ndimage.correlate(ramp, (kernel / kernel.sum())[..., None], mode='mirror')[::sf, ::sf]
    np.testing.assert_allclose(corr[2, interior, 0], expected[interior] - (sf - 1), atol=1e-3)


def test_imresize_matlab_sizes_and_constant_preservation():
    img = np.full((37, 41, 3), 0.25, np.float32)
    out = bd.imresize_matlab(img, 1 / 3)
    assert out.shape == (13, 14, 3)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


@pytest.mark.parametrize('scale', [0.5, 0.25, 1 / 3, 2.0])
def test_imresize_matlab_matches_basicsr(scale):
    from basicsr.utils.matlab_functions import imresize
    img = np.random.default_rng(0).random((37, 30, 3), dtype=np.float32)
    ref = imresize(img, scale)
    out = bd.imresize_matlab(img, scale)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_resize_rejects_nearest():
    with pytest.raises(ValueError, match='interpolation'):
        bd.resize(np.zeros((8, 8, 3), np.float32), (4, 4), 0)


# ------------------------------------------------------------------------------------------------ noise / jpeg
def test_gaussian_noise_modes():
    rng = np.random.default_rng(0)
    gray = bd.gaussian_noise_field((64, 64), 'gray', 0.1, rng)
    assert gray.shape == (64, 64, 1)
    color = bd.gaussian_noise_field((256, 256), 'color', 0.1, rng)
    assert color.shape == (256, 256, 3) and color.dtype == np.float32
    assert color.std() == pytest.approx(0.1, rel=0.02)
    cov = np.array([[4.0, 1.0, 0.5], [1.0, 2.0, 0.3], [0.5, 0.3, 1.0]]) * 1e-3
    corr = bd.gaussian_noise_field((300, 300), 'correlated', None, rng, cov)
    np.testing.assert_allclose(np.cov(corr.reshape(-1, 3).T), cov, atol=1.5e-4)
    with pytest.raises(ValueError, match='noise mode'):
        bd.gaussian_noise_field((4, 4), 'pink', 0.1, rng)


def test_sample_noise_probabilities_and_fixed_correlated_level():
    rng = np.random.default_rng(1)
    draws = [bd.sample_noise(rng) for _ in range(4000)]
    freq = {m: sum(d['mode'] == m for d in draws) / len(draws) for m in ('color', 'gray', 'correlated')}
    assert freq['color'] == pytest.approx(0.4, abs=0.03)
    assert freq['gray'] == pytest.approx(0.4, abs=0.03)
    assert freq['correlated'] == pytest.approx(0.2, abs=0.03)
    for d in draws:
        if d['mode'] == 'correlated':
            assert d['sigma'] == pytest.approx(25 / 255)
            assert (d['cov'] >= 0).all() and np.allclose(d['cov'], d['cov'].T)
        else:
            assert 2 <= round(d['sigma'] * 255) <= 25


def test_add_noise_clips_and_speckle_is_multiplicative():
    img = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    np.testing.assert_allclose(bd.add_noise(img, np.full_like(img, 0.6)), [[[0.6, 1.0, 1.0]]])
    np.testing.assert_allclose(bd.add_speckle_noise(img, np.full_like(img, 0.2)), [[[0.0, 0.6, 1.0]]])


def test_poisson_noise_gray_is_shared_across_channels():
    rng = np.random.default_rng(0)
    img = np.full((32, 32, 3), [0.3, 0.5, 0.7], np.float32)
    out = bd.add_poisson_noise(img, 100.0, True, rng)
    diff = out - np.round(img * 255) / 255
    np.testing.assert_allclose(diff[..., 0], diff[..., 1], atol=1e-6)
    color = bd.add_poisson_noise(img, 1e4, False, rng)
    np.testing.assert_allclose(color.mean((0, 1)), [0.3, 0.5, 0.7], atol=0.01)


def test_jpeg_compress_roundtrip_in_rgb_order():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((32, 32, 3), dtype=np.float32), (5, 5), 1.5)
    out = bd.jpeg_compress(img, 60)
    np.testing.assert_array_equal(np.round(out * 255), out * 255)
    ok, buf = cv2.imencode('.jpg', bd.to_uint8(img)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 60])
    ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    np.testing.assert_allclose(out, ref, atol=1e-7)
    with pytest.raises(ValueError, match='RGB'):
        bd.jpeg_compress(img[..., 0], 60)


def test_crop_pair_alignment():
    lq = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    hq = np.arange(1600, dtype=np.float32).reshape(40, 40, 1)
    lq_c, hq_c = bd.crop_pair(lq, hq, 3, 5, 4, 4)
    assert lq_c.shape == (4, 4, 1) and hq_c.shape == (16, 16, 1)
    assert lq_c[0, 0, 0] == lq[3, 5, 0] and hq_c[0, 0, 0] == hq[12, 20, 0]


# ------------------------------------------------------------------------------------------------ sampler
def test_shuffle_keeps_downsample2_before_downsample3_uniformly():
    rng = np.random.default_rng(0)
    counts = {}
    for _ in range(30000):
        order = tuple(bd.valid_bsrgan_order(rng))
        assert sorted(order) == list(range(7)) and order.index(2) < order.index(3)
        counts[order] = counts.get(order, 0) + 1
    assert len(counts) == 2520
    values = np.array(list(counts.values()))
    # expected ~11.9 per order; a Poisson-like spread stays well within these bounds
    assert values.max() < 35 and values.std() < 5


def test_prestep_only_for_x4_and_switches_to_sf2():
    rng = np.random.default_rng(0)
    plans = [bd.sample_bsrgan_plan(rng, 4, (96, 96, 3), 24) for _ in range(1000)]
    assert 0.21 < np.mean([p['prestep'] for p in plans]) < 0.29
    for plan in plans:
        assert plan['sf_effective'] == (2 if plan['prestep'] else 4)
        assert (plan['steps'][0][0] in ('resize', 'imresize_matlab')) or not plan['prestep']
        for name, params in plan['steps']:
            if name == 'shifted_nearest':
                assert params['sf'] == plan['sf_effective']
    for _ in range(200):
        plan = bd.sample_bsrgan_plan(rng, 3, (72, 72, 3), 24)
        assert not plan['prestep'] and plan['sf_effective'] == 3


# ------------------------------------------------------------------------------------------------ pipelines
@pytest.mark.parametrize('sf', [2, 3, 4])
@pytest.mark.parametrize('hr', [(96, 96), (101, 99)])
def test_pipeline_sizes_values_and_alignment(sf, hr):
    lq_size = 24
    img = np.random.default_rng(0).random((max(hr[0], lq_size * sf), max(hr[1], lq_size * sf), 3), dtype=np.float32)
    original = img.copy()
    for seed in range(6):
        plan = bd.sample_bsrgan_plan(np.random.default_rng(seed), sf, img.shape, lq_size)
        lq, hq = bd.apply_plan(img, plan, np.random.default_rng(seed))
        assert lq.shape == (lq_size, lq_size, 3) and hq.shape == (lq_size * sf, lq_size * sf, 3)
        assert lq.dtype == np.float32 and hq.dtype == np.float32
        assert 0 <= lq.min() and lq.max() <= 1
        np.testing.assert_allclose(np.round(lq * 255), lq * 255, atol=1e-4)  # final JPEG quantises
        top, left = plan['crop']
        np.testing.assert_array_equal(hq, img[top * sf:(top + lq_size) * sf, left * sf:(left + lq_size) * sf])
        lq_p, hq_p = bd.degradation_bsrgan_plus(img, sf, lq_patchsize=lq_size, rng=seed)
        assert lq_p.shape == (lq_size, lq_size, 3) and hq_p.shape == (lq_size * sf, lq_size * sf, 3)
    np.testing.assert_array_equal(img, original)


def test_same_seed_same_sample_and_different_seeds_differ():
    img = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
    a = bd.degradation_bsrgan(img, 4, 24, np.random.default_rng(7))
    b = bd.degradation_bsrgan(img, 4, 24, np.random.default_rng(7))
    c = bd.degradation_bsrgan(img, 4, 24, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    d = bd.degradation_bsrgan_plus(img, 4, lq_patchsize=24, rng=3)
    e = bd.degradation_bsrgan_plus(img, 4, lq_patchsize=24, rng=3)
    np.testing.assert_array_equal(d[0], e[0])


def test_isp_hook_is_optional_and_called_with_lq_and_hq():
    img = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
    calls = []

    def hook(lq, hq):
        calls.append((lq.shape, hq.shape))
        return lq, hq

    for seed in range(40):
        bd.degradation_bsrgan(img, 4, 24, seed, isp_model=hook)
    assert 0 < len(calls) < 40  # p = 0.25
    assert all(hq_shape == (96, 96, 3) for _, hq_shape in calls)


def test_bsrgan_plus_sharpening_applies_to_hq():
    pytest.importorskip('basicsr')
    from basicsr.utils.img_process_util import usm_sharp
    img = cv2.GaussianBlur(np.random.default_rng(0).random((96, 96, 3), dtype=np.float32), (0, 0), 2)
    plan = bd.sample_bsrgan_plus_plan(np.random.default_rng(0), 4, img.shape, 24, use_sharp=True)
    _, hq = bd.apply_plan(img, plan, np.random.default_rng(0))
    top, left = plan['crop']
    np.testing.assert_allclose(hq, usm_sharp(img)[top * 4:(top + 24) * 4, left * 4:(left + 24) * 4], atol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='smaller than lq_patchsize'):
        bd.degradation_bsrgan(np.zeros((90, 200, 3), np.float32), 4, 24, 0)
    with pytest.raises(ValueError, match='scale'):
        bd.degradation_bsrgan(np.zeros((96, 96, 3), np.float32), 5, 8, 0)
    with pytest.raises(ValueError, match='RGB'):
        bd.degradation_bsrgan(np.zeros((96, 96), np.float32), 4, 24, 0)
    with pytest.raises(ValueError, match='rng'):
        bd.degradation_bsrgan(np.zeros((96, 96, 3), np.float32), 4, 24, 'seed')


# ------------------------------------------------------------------------------------------------ one channel
def _grey_photo(size=96):
    from skimage import data
    return (data.camera()[100:100 + size, 100:100 + size].astype(np.float32) / 255.0)[..., None]


def test_grey_jpeg_is_the_luma_plane_of_the_colour_jpeg():
    grey = _grey_photo()
    for quality in (30, 60, 95):
        out = bd.jpeg_compress(grey, quality)
        assert out.shape == grey.shape and out.dtype == np.float32
        colour = bd.jpeg_compress(np.repeat(grey, 3, axis=2), quality)  # R = G = B: only the Y plane carries content
        assert np.abs(out[..., 0] - colour[..., 1]).max() <= 1.5 / 255
        assert np.abs(out - grey).mean() > 0  # it did compress


def test_grey_noise_is_the_luma_projection_of_the_rgb_noise():
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.5, 1.0, 2.0]]) * 1e-3
    weights = np.array([0.299, 0.587, 0.114])
    expected = {
        'color': 0.1 * math.sqrt(0.299**2 + 0.587**2 + 0.114**2),
        'gray': 0.1,
        'correlated': math.sqrt(weights @ cov @ weights)
    }
    for mode, std in expected.items():
        field = bd.gaussian_noise_field((300, 300), mode, 0.1, rng, cov, channels=1)
        assert field.shape == (300, 300, 1)
        assert float(field.std()) == pytest.approx(std, rel=0.02), mode
        # the same statistic as projecting a 3-channel field onto the luma weights
        rgb = bd.gaussian_noise_field((300, 300), mode, 0.1, rng, cov, channels=3)
        rgb = np.broadcast_to(rgb, (300, 300, 3))
        assert float((rgb @ weights).std()) == pytest.approx(std, rel=0.02), mode
    grey = np.full((200, 200, 1), 0.5, np.float32)
    for gray in (False, True):  # Poisson: drawn on the plane in both modes (variance = img / vals)
        noisy = bd.add_poisson_noise(grey, 100.0, gray, rng)
        assert noisy.shape == grey.shape
        assert float(noisy.var()) == pytest.approx(0.5 / 100, rel=0.05)


@pytest.mark.parametrize('kind', ['bsrgan', 'bsrgan_plus'])
def test_grey_pipeline_equals_each_channel_of_the_rgb_pipeline_without_noise(kind):
    """Blur / resize / sharpening act per channel: a grey image degrades like each channel of its RGB copy."""
    grey = _grey_photo()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        if kind == 'bsrgan':
            plan = bd.sample_bsrgan_plan(rng, 4, grey.shape, 16)
        else:
            plan = bd.sample_bsrgan_plus_plan(rng, 4, grey.shape, 16, 0.5, seed % 2 == 0)
        plan['steps'] = [s for s in plan['steps'] if s[0] not in ('gaussian_noise', 'speckle_noise', 'poisson_noise')]
        lq, hq = bd.apply_plan(grey, plan, np.random.default_rng(0))
        lq_rgb, hq_rgb = bd.apply_plan(np.repeat(grey, 3, axis=2), plan, np.random.default_rng(0))
        assert lq.shape == (16, 16, 1) and hq.shape == (64, 64, 1)
        np.testing.assert_allclose(hq[..., 0], hq_rgb[..., 1], atol=1e-6)
        tol = 1.5 / 255 if any(s[0] == 'jpeg' for s in plan['steps']) else 1e-5
        np.testing.assert_allclose(lq[..., 0], lq_rgb[..., 1], atol=tol)
    lq, hq = bd.degradation_bsrgan(grey, 4, 16, np.random.default_rng(1))
    assert lq.shape == (16, 16, 1) and hq.shape == (64, 64, 1) and np.isfinite(lq).all()
    with pytest.raises(ValueError, match=r'\(H, W, 3\) RGB or \(H, W, 1\) grey'):
        bd.degradation_bsrgan(np.zeros((96, 96, 2), np.float32), 4, 16)
