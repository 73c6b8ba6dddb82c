"""Tests for srplugins.ops.frequency (DASR frequency separation)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srplugins.ops import frequency as fq


def _haar_reference(x):
    """Explicit per-pixel Haar formulas with bottom/right reflect padding (numpy, float64)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-2] % 2:
        x = np.concatenate([x, x[..., -2:-1, :]], axis=-2)
    if x.shape[-1] % 2:
        x = np.concatenate([x, x[..., :, -2:-1]], axis=-1)
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    out = np.zeros(x.shape[:-2] + (4, h, w))
    for i in range(h):
        for j in range(w):
            a, b = x[..., 2 * i, 2 * j], x[..., 2 * i, 2 * j + 1]
            c, d = x[..., 2 * i + 1, 2 * j], x[..., 2 * i + 1, 2 * j + 1]
            out[..., 0, i, j] = (a + b + c + d) / 2
            out[..., 1, i, j] = (a + b - c - d) / 2
            out[..., 2, i, j] = (a - b + c - d) / 2
            out[..., 3, i, j] = (a - b - c + d) / 2
    return out


@pytest.mark.parametrize('size', [(6, 8), (7, 9), (5, 6), (3, 2)])
def test_haar_dwt_matches_hand_computation(size):
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    low, bands = fq.haar_dwt(x)
    ref = _haar_reference(x.numpy())
    assert low.shape == (2, 3, -(-size[0] // 2), -(-size[1] // 2))
    assert bands.shape == (2, 3, 3) + low.shape[-2:]
    np.testing.assert_allclose(low.numpy(), ref[:, :, 0], atol=1e-12)
    np.testing.assert_allclose(bands.numpy(), ref[:, :, 1:], atol=1e-12)


@pytest.mark.parametrize('size', [(8, 8), (16, 12), (7, 9), (5, 6), (33, 17)])
@pytest.mark.parametrize('channels', [1, 3])
def test_haar_dwt_matches_pytorch_wavelets(size, channels):
    pytorch_wavelets = pytest.importorskip('pytorch_wavelets')
    dwt = pytorch_wavelets.DWTForward(J=1, wave='haar', mode='reflect')
    x = torch.rand(2, channels, *size)
    ref_low, ref_high = dwt(x)
    low, bands = fq.haar_dwt(x)
    torch.testing.assert_close(low, ref_low, atol=1e-6, rtol=0)
    torch.testing.assert_close(bands, ref_high[0], atol=1e-6, rtol=0)


def test_wavelet_bands_normalised_and_combined():
    x = torch.rand(1, 3, 8, 10)
    _, bands = fq.haar_dwt(x)
    cat = fq.wavelet_highpass(x, 'cat')
    assert cat.shape == (1, 9, 4, 5)
    # channel order [LH(R,G,B), HL(R,G,B), HH(R,G,B)], each band mapped to 0.5 + 0.5 * band
    torch.testing.assert_close(cat[:, 3:6], bands[:, :, 1] * 0.5 + 0.5)
    torch.testing.assert_close(cat[:, 7], bands[:, 1, 2] * 0.5 + 0.5)
    summed = fq.wavelet_highpass(x, 'sum')
    torch.testing.assert_close(summed, (bands * 0.5 + 0.5).mean(dim=2))
    # the normalised LL is the 2x2 block mean
    torch.testing.assert_close(fq.wavelet_lowpass(x), F.avg_pool2d(x, 2))
    with pytest.raises(ValueError, match='cat'):
        fq.wavelet_highpass(x, 'mean')


def test_gaussian_kernel_official_values():
    k = fq.gaussian_kernel2d(5)
    assert k.shape == (5, 5)
    assert abs(k.sum().item() - 1) < 1e-6
    assert abs(k[2, 2].item() - 0.2299) < 1e-4  # centre value of the official k=5 kernel (sigma 5/6)
    coords = torch.arange(9, dtype=torch.float64) - 4
    ref = torch.exp(-(coords[None]**2 + coords[:, None]**2) / (2 * 1.5**2))
    torch.testing.assert_close(fq.gaussian_kernel2d(9, dtype=torch.float64), ref / ref.sum())
    with pytest.raises(ValueError, match='odd'):
        fq.gaussian_kernel2d(4)


@pytest.mark.parametrize('channels', [1, 3, 4])
def test_gaussian_lowpass_is_depthwise_zero_padded(channels):
    x = torch.rand(2, channels, 12, 11)
    k = fq.gaussian_kernel2d(5)
    same = fq.gaussian_lowpass(x, 5, padding=True)
    valid = fq.gaussian_lowpass(x, 5, padding=False)
    assert same.shape == x.shape and valid.shape == (2, channels, 8, 7)
    for c in range(channels):
        ref = F.conv2d(x[:, c:c + 1], k[None, None], padding=2)
        torch.testing.assert_close(same[:, c:c + 1], ref)
    torch.testing.assert_close(valid, same[..., 2:-2, 2:-2])


def test_highpass_normalisation_and_box_border():
    const = torch.full((1, 3, 16, 16), 0.3)
    # zero padding darkens the Gaussian border, the interior of a constant image has no high frequency
    hp = fq.highpass(const, 'gau', 5)
    torch.testing.assert_close(hp[..., 2:-2, 2:-2], torch.full_like(hp[..., 2:-2, 2:-2], 0.5))
    assert (hp[..., 0, 0] > 0.5).all()
    # box filter without padded zeros: a constant image is flat everywhere
    torch.testing.assert_close(fq.highpass(const, 'avg_pool', 5), torch.full_like(const, 0.5))
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(fq.highpass(x, 'gau', 5, normalize=False) * 0.5 + 0.5, fq.highpass(x, 'gau', 5))
    # recursions: low-pass first, then high pass
    x1 = fq.lowpass(x, 'gau', 5)
    torch.testing.assert_close(fq.highpass(x, 'gau', 5, recursions=2), fq.highpass(x1, 'gau', 5))
    with pytest.raises(ValueError, match='filter_type'):
        fq.highpass(x, 'median')


def test_frequency_separation_shapes():
    x = torch.rand(2, 3, 16, 16)
    low, high = fq.frequency_separation(x, 'wavelet')
    assert low.shape == (2, 3, 8, 8) and high.shape == (2, 9, 8, 8)
    low, high = fq.frequency_separation(x, 'gau', 9)
    assert low.shape == high.shape == x.shape
    torch.testing.assert_close(high, (x - low) * 0.5 + 0.5)


def test_receptive_field_average_equals_official_window_spreading():
    prob = torch.rand(1, 1, 13, 21, dtype=torch.float64)
    ddm = fq.receptive_field_average(prob, 17)
    # official receptive_cal.getWeights for FSD (jump 1, start 0.5, rf 17): value (i, j) is added to rows
    # [max(0, i - 8), i + 9) and columns [max(0, j - 8), j + 9); the sum is divided by the window count
    p = prob[0, 0].numpy()
    total, count = np.zeros((13, 21)), np.zeros((13, 21))
    for i in range(13):
        for j in range(21):
            total[max(0, i - 8):i + 9, max(0, j - 8):j + 9] += p[i, j]
            count[max(0, i - 8):i + 9, max(0, j - 8):j + 9] += 1
    np.testing.assert_allclose(ddm[0, 0].numpy(), total / count, atol=1e-12)
    assert fq.fsd_receptive_field() == 17


def test_receptive_field_geometry_official_numbers():
    layers = fq.DSN_RECEPTIVE_LAYERS
    # official create_dataset_modified.py convnets, (kernel, stride, padding) per conv
    assert [list(c) for c in layers['fsd']] == [[5, 1, 2]] * 4
    assert [list(c) for c in layers['nld_s1']] == [[4, 1, 1]] * 4
    assert [list(c) for c in layers['nld_s2']] == [[4, 2, 1], [4, 2, 1], [4, 1, 1], [4, 1, 1]]
    # (outputs, jump, window, start) from the official receptive_cal arithmetic, worked out by hand
    assert fq.receptive_field_geometry(20, layers['fsd']) == (20, 1, 17, 0.5)
    assert fq.receptive_field_geometry(20, layers['nld_s1']) == (16, 1, 13, 2.5)
    assert fq.receptive_field_geometry(24, layers['nld_s2']) == (4, 4, 34, 6.0)
    assert fq.receptive_field_geometry(25, layers['nld_s2']) == (4, 4, 34, 7.0)  # odd sizes shift the start
    # windows [floor(max(0, c - rf // 2)), floor(c + rf - rf // 2)) with c = start + i * jump, clipped to the canvas
    assert fq.receptive_field_windows(40, layers['fsd'])[10] == (2, 19)
    assert fq.receptive_field_windows(40, layers['nld_s1']) == [(max(0, i - 4), min(i + 9, 40)) for i in range(36)]
    assert fq.receptive_field_windows(64, layers['nld_s2']) == [(max(0, 4 * i - 11), min(4 * i + 23, 64))
                                                                for i in range(14)]
    with pytest.raises(ValueError, match='too small'):
        fq.spread_over_receptive_fields(torch.rand(1, 1, 1, 1), layers['nld_s2'], (4, 4))


def test_fsd_window_spreading_equals_box_mean():
    prob = torch.rand(2, 1, 11, 19, dtype=torch.float64)
    torch.testing.assert_close(
        fq.spread_over_receptive_fields(prob, fq.DSN_RECEPTIVE_LAYERS['fsd'], (11, 19)),
        fq.receptive_field_average(prob, 17),
        atol=1e-12,
        rtol=0)
