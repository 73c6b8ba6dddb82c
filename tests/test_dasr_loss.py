"""Tests for srplugins.losses.dasr_loss."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.losses.basic_loss import L1Loss
from basicsr.losses.gan_loss import GANLoss
from basicsr.utils.registry import LOSS_REGISTRY

import srplugins  # noqa: F401
from srplugins.losses.dasr_loss import DomainDistanceWeightedL1Loss, LowFrequencyL1Loss, LPIPSLoss
from srplugins.ops.frequency import gaussian_kernel2d


def test_registered():
    for name, cls in [('LPIPSLoss', LPIPSLoss), ('LowFrequencyL1Loss', LowFrequencyL1Loss),
                      ('DomainDistanceWeightedL1Loss', DomainDistanceWeightedL1Loss)]:
        assert LOSS_REGISTRY.get(name) is cls


def test_weighted_l1_official_mean_semantics():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    weight = torch.rand(2, 1, 8, 8)
    diff = (pred - target).abs()
    official = DomainDistanceWeightedL1Loss(loss_weight=2.0)(pred, target, weight)
    torch.testing.assert_close(official, 2.0 * (weight * diff).mean())
    # 'weight_sum' reproduces basicsr's L1Loss(weight=W): sum(W|d|) / sum(W over channels)
    normalised = DomainDistanceWeightedL1Loss(normalization='weight_sum')(pred, target, weight)
    torch.testing.assert_close(normalised, L1Loss()(pred, target, weight))
    # the two differ by exactly mean(W)
    torch.testing.assert_close(official / 2.0, normalised * weight.mean())
    torch.testing.assert_close(DomainDistanceWeightedL1Loss()(pred, target), diff.mean())
    with pytest.raises(ValueError, match='weight must be shaped'):
        DomainDistanceWeightedL1Loss()(pred, target, torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match='normalization'):
        DomainDistanceWeightedL1Loss(normalization='sum')


def test_low_frequency_l1_gaussian_valid_and_wavelet():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    k = gaussian_kernel2d(5)[None, None].repeat(3, 1, 1, 1)
    ref = (F.conv2d(pred, k, groups=3) - F.conv2d(target, k, groups=3)).abs().mean()  # valid, as official
    torch.testing.assert_close(LowFrequencyL1Loss(filter_type='gau')(pred, target), ref)
    ref = (F.avg_pool2d(pred, 5, 1) - F.avg_pool2d(target, 5, 1)).abs().mean()
    torch.testing.assert_close(LowFrequencyL1Loss(filter_type='avg_pool')(pred, target), ref)
    # wavelet: 0.5 * LL = 2x2 block mean
    ref = (F.avg_pool2d(pred, 2) - F.avg_pool2d(target, 2)).abs().mean()
    torch.testing.assert_close(LowFrequencyL1Loss(filter_type='wavelet', loss_weight=3.0)(pred, target), 3 * ref)
    # a weight map is resized to the low-pass size and multiplies element-wise (mean semantics)
    weight = torch.rand(2, 1, 16, 16)
    low = LowFrequencyL1Loss(filter_type='wavelet')
    ref = (F.avg_pool2d(weight, 2) * (F.avg_pool2d(pred, 2) - F.avg_pool2d(target, 2)).abs()).mean()
    torch.testing.assert_close(low(pred, target, weight), ref)
    # high frequencies do not count: a checkerboard added to target leaves the wavelet low band unchanged
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 0.2 - 0.1
    assert low(target + checker, target).item() < 1e-6
    with pytest.raises(ValueError, match='filter_type'):
        LowFrequencyL1Loss(filter_type='median')


def test_gan_on_logits_equals_official_log_loss():
    # the DASR GAN terms reuse basicsr's vanilla GANLoss (BCE with logits) instead of -log(D + 1e-8)
    gan = build_loss({'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.005})
    assert isinstance(gan, GANLoss)
    logits = torch.linspace(-6, 6, 25).view(1, 1, 5, 5)
    prob = torch.sigmoid(logits)
    torch.testing.assert_close(
        gan(logits, True, is_disc=False), 0.005 * (-torch.log(prob + 1e-8)).mean(), atol=1e-6, rtol=1e-4)
    d_loss = gan(logits, True, is_disc=True) + gan(-logits, False, is_disc=True)
    official = (-torch.log(prob + 1e-8)).mean() + (-torch.log(1 - torch.sigmoid(-logits) + 1e-8)).mean()
    torch.testing.assert_close(d_loss, official, atol=1e-5, rtol=1e-4)
    # large logits stay finite (the official probability form saturates at -log(1e-8))
    assert torch.isfinite(gan(torch.full((1, 1, 2, 2), -200.0), True, is_disc=False))


def test_lpips_loss(alexnet_weights):
    import lpips
    torch.manual_seed(0)
    loss = build_loss({'type': 'LPIPSLoss', 'loss_weight': 0.5})
    assert isinstance(loss.lpips, lpips.LPIPS)
    assert all(not p.requires_grad for p in loss.lpips.parameters())
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    value = loss(pred, target)
    with torch.no_grad():
        ref = loss.lpips(pred * 2 - 1, target * 2 - 1).mean()  # [0, 1] inputs mapped to [-1, 1]
    torch.testing.assert_close(value, 0.5 * ref)
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert loss(target, target).abs().item() < 1e-6
    # per-image weighting by the mean of a weight map
    weight = torch.stack([torch.full((1, 32, 32), 0.2), torch.full((1, 32, 32), 1.0)])
    with torch.no_grad():
        per_image = loss.lpips(pred * 2 - 1, target * 2 - 1).flatten()
        torch.testing.assert_close(loss(pred, target, weight), 0.5 * (per_image * torch.tensor([0.2, 1.0])).mean())
    loss.train()
    assert not loss.lpips.training
