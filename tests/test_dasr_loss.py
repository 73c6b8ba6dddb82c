"""Tests for srplugins.losses.dasr_loss."""
import math
import os.path as osp
import pytest
import torch
import torch.nn.functional as F
from basicsr.losses import build_loss
from basicsr.losses.basic_loss import L1Loss
from basicsr.losses.gan_loss import GANLoss
from basicsr.utils.registry import LOSS_REGISTRY

import srplugins  # noqa: F401
from srplugins.losses.dasr_loss import DomainDistanceWeightedL1Loss, LowFrequencyL1Loss, LPIPSLoss, SigmoidLogGANLoss
from srplugins.ops.frequency import gaussian_kernel2d
from tests.conftest import REPO_ROOT


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


# ------------------------------------------------------------------------------------------- SigmoidLogGANLoss (DSN)
def test_sigmoid_log_gan_loss_is_the_official_dsn_formula():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 9, 7, dtype=torch.float64) * 5
    p = 1 / (1 + torch.exp(-z))  # the official discriminator's sigmoid output, written out
    loss = SigmoidLogGANLoss(loss_weight=0.005)
    # official codes/DSN/loss.py: generator -log(D(G) + 1e-8), discriminator -log(D(y) + 1e-8) - log(1 - D(G) + 1e-8)
    assert torch.allclose(loss(z, True, is_disc=False), 0.005 * torch.mean(-torch.log(p + 1e-8)), rtol=1e-12)
    assert torch.allclose(loss(z, True, is_disc=True), torch.mean(-torch.log(p + 1e-8)), rtol=1e-12)
    assert torch.allclose(loss(z, False, is_disc=True), torch.mean(-torch.log(1 - p + 1e-8)), rtol=1e-12)


def test_sigmoid_log_gan_loss_differs_from_bce_only_where_the_discriminator_is_confident():
    bce = GANLoss('vanilla', loss_weight=1.0)
    ours = SigmoidLogGANLoss(loss_weight=1.0)
    moderate = torch.linspace(-6, 6, 25, dtype=torch.float64)
    for real in (True, False):
        assert abs(float(ours(moderate, real)) - float(bce(moderate, real))) < 1e-6
    # eps = 0 is BCE-with-logits written naively (where it does not overflow)
    assert torch.allclose(SigmoidLogGANLoss(eps=0.)(moderate, False), bce(moderate, False), rtol=1e-12)
    confident = torch.full((4, ), 25., dtype=torch.float64, requires_grad=True)
    capped = ours(confident, False, is_disc=True)  # D calls a fake real with logit 25
    p25 = 1 / (1 + math.exp(-25.))  # 1 - p rounds as in the official code
    assert abs(float(capped) - (-math.log(1 - p25 + 1e-8))) < 1e-9 and float(capped) < 18.43  # capped by eps
    assert float(bce(confident, False, is_disc=True)) == pytest.approx(25., rel=1e-9)  # BCE keeps growing
    capped.backward()
    assert confident.grad.abs().max() < 1e-2  # the epsilon cuts the gradient (BCE's is 1 / 4 per element)
    with pytest.raises(ValueError, match='gan_opt.eps'):
        SigmoidLogGANLoss(eps=-1)


def test_dsn_recipes_and_default_use_the_official_gan_formula():
    import glob
    import yaml

    from srplugins.models.dasr_model import DSN_DEFAULT_GAN
    assert DSN_DEFAULT_GAN['type'] == 'SigmoidLogGANLoss' and DSN_DEFAULT_GAN['eps'] == 1e-8
    files = glob.glob(osp.join(REPO_ROOT, 'options', '*', 'DASR', 'train_DASR_DSN_*.yml')) + \
        glob.glob(osp.join(REPO_ROOT, 'options', 'demo', 'demo_DASR_DSN_*.yml'))
    assert len(files) >= 6
    for path in files:
        with open(path) as f:
            gan = yaml.safe_load(f)['train']['gan_opt']
        assert gan['type'] == 'SigmoidLogGANLoss' and float(gan['eps']) == 1e-8 and gan['loss_weight'] == 0.005, path


def test_sigmoid_log_gan_loss_is_finite_for_half_precision_logits():
    loss = SigmoidLogGANLoss()
    for dtype in (torch.float16, torch.bfloat16):
        z = torch.tensor([30., -30., 0.], dtype=dtype)
        for real in (True, False):
            value = loss(z, real, is_disc=True)
            assert value.dtype == torch.float32 and torch.isfinite(value)
            assert float(value) < 18.43 / 3 + math.log(2) / 3 + 1e-3  # each element capped at -log(1e-8) = 18.42
