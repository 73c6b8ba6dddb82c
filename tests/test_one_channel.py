"""One-channel data through the networks, losses, metrics and Real-ESRGAN's on-device degradation."""
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY

import srplugins  # noqa: F401
from srplugins.losses.dasr_loss import LPIPSLoss
from srplugins.losses.srgan_loss import VGGContentLoss
from srplugins.metrics.lpips_metric import calculate_lpips
from srplugins.models.realesrgan_model import ContiguousDiffJPEG
from tests.test_realesrgan_model import model_opt

GENERATORS = [
    ('A2N', dict(num_feat=8, upscale=2), 2),
    ('BSRGANRRDBNet', dict(num_feat=8, num_block=1, num_grow_ch=4, scale=4), 4),
    ('SRResNet', dict(num_feat=8, num_block=1, upscale=4), 4),
    ('DASRDownsampler', dict(num_feat=8, num_block=1, scale=4), 0.25),
]
DISCRIMINATORS = [
    ('PatchGANDiscriminatorSN', dict(num_in_ch=1, num_feat=8)),
    ('UNetSNDiscriminator', dict(num_in_ch=1, num_feat=8)),
    ('SRGANDiscriminator', dict(num_in_ch=1, num_feat=8, input_size=32)),
    ('DASRFSDiscriminator', dict(num_in_ch=1, filter_type='gau', num_feat=8)),
    ('DASRFSDiscriminator', dict(num_in_ch=1, filter_type='wavelet', cat_or_sum='cat', num_feat=8)),
    ('DASRFSDiscriminator', dict(num_in_ch=1, filter_type='avg_pool', d_arch='nld_s2', num_feat=8)),
]


@pytest.mark.parametrize('name, kwargs, scale', GENERATORS, ids=[g[0] for g in GENERATORS])
def test_generators_take_one_channel(name, kwargs, scale):
    net = ARCH_REGISTRY.get(name)(num_in_ch=1, num_out_ch=1, **kwargs)
    out = net(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 1, int(32 * scale), int(32 * scale)) and torch.isfinite(out).all()
    first = next(p for p in net.parameters() if p.dim() == 4)
    assert first.shape[1] == 1


@pytest.mark.parametrize('name, kwargs', DISCRIMINATORS, ids=[f'{d[0]}-{i}' for i, d in enumerate(DISCRIMINATORS)])
def test_discriminators_take_one_channel(name, kwargs):
    net = ARCH_REGISTRY.get(name)(**kwargs)
    out = net(torch.rand(2, 1, 32, 32))
    assert out.shape[:2] == (2, 1) and torch.isfinite(out).all()


def test_dasr_patch_discriminator_on_grey_wavelet_bands():
    from srplugins.ops.frequency import wavelet_highpass
    bands = wavelet_highpass(torch.rand(2, 1, 64, 64), combine='cat', normalize=True)
    assert bands.shape == (2, 3, 32, 32)  # num_in_ch: 3 for grey (9 for RGB)
    out = ARCH_REGISTRY.get('DASRPatchDiscriminator')(num_in_ch=3, num_feat=8)(bands)
    assert out.shape[:2] == (2, 1)


def test_perceptual_losses_replicate_one_channel(vgg19_weights, alexnet_weights):
    x, y = torch.rand(2, 1, 48, 48), torch.rand(2, 1, 48, 48)
    x3, y3 = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
    vgg = VGGContentLoss(layer_weights={'relu2_2': 1.0})
    assert torch.allclose(vgg(x, y)[0], vgg(x3, y3)[0])
    raw = VGGContentLoss(layer_weights={'relu2_2': 1.0}, use_input_norm=False)  # no broadcasting normalisation
    assert torch.allclose(raw(x, y)[0], raw(x3, y3)[0])
    lpips = LPIPSLoss()
    assert torch.allclose(lpips(x, y), lpips(x3, y3))
    # basicsr's PerceptualLoss (used by some recipes) broadcasts one channel through its ImageNet normalisation
    perceptual = PerceptualLoss({'conv5_4': 1.0})
    assert torch.allclose(perceptual(x, y)[0], perceptual(x3, y3)[0])
    # the LPIPS metric on (H, W) / (H, W, 1) images, as tensor2img gives them for 1-channel outputs
    a = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    b = (np.random.default_rng(1).random((40, 40)) * 255).astype(np.uint8)
    ref = calculate_lpips(np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2), device='cpu')
    assert calculate_lpips(a, b, crop_border=0, device='cpu') == pytest.approx(ref, rel=1e-6)
    assert calculate_lpips(a[..., None], b[..., None], device='cpu') == pytest.approx(ref, rel=1e-6)


def test_basicsr_psnr_ssim_on_one_channel_with_test_y_channel():
    """basicsr's metrics (the validation path) on 1-channel images: test_y_channel uses the grey plane itself."""
    rng = np.random.default_rng(0)
    a = (rng.random((32, 32)) * 255).astype(np.uint8)
    b = np.clip(a.astype(np.int64) + rng.integers(-5, 6, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a[4:-4, 4:-4].astype(np.float64) - b[4:-4, 4:-4])**2)
    expected = 10 * np.log10(255.0**2 / mse)
    for test_y in (False, True):
        assert calculate_psnr(a, b, crop_border=4, test_y_channel=test_y) == pytest.approx(expected, rel=1e-9)
        assert calculate_psnr(a[..., None], b[..., None], 4, test_y_channel=test_y) == pytest.approx(expected)
    ssim = calculate_ssim(a, b, crop_border=4)
    assert calculate_ssim(a, b, crop_border=4, test_y_channel=True) == pytest.approx(ssim)
    assert calculate_ssim(np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2), 4) == pytest.approx(ssim)


def test_grey_diffjpeg_codes_the_luma_plane():
    jpeger = ContiguousDiffJPEG(differentiable=False)
    grey = torch.rand(2, 1, 32, 32)
    out = jpeger(grey, quality=torch.tensor([30.0, 80.0]))
    colour = jpeger(grey.expand(-1, 3, -1, -1), quality=torch.tensor([30.0, 80.0]))
    assert out.shape == grey.shape and out.is_contiguous()
    assert torch.allclose(out[:, 0], colour[:, 0], atol=1e-5)


@pytest.mark.parametrize('gan', [False, True], ids=['RealESRNet', 'RealESRGAN'])
def test_realesrgan_models_degrade_and_train_on_one_channel(tmp_path, gan):
    """basicsr's grey Poisson noise would expand a 1-channel batch to 3 channels; the models keep one channel."""
    opt = model_opt(tmp_path, gan=gan, perceptual=False)
    opt['network_g'].update(num_in_ch=1, num_out_ch=1)
    if gan:
        opt['network_d']['num_in_ch'] = 1
    opt['datasets']['train']['color'] = 'gray'
    opt.update(gaussian_noise_prob=0.0, gaussian_noise_prob2=0.0, gray_noise_prob=1.0, gray_noise_prob2=1.0)
    dataset = build_dataset(opt['datasets']['train'])
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert batch['gt'].shape == (2, 1, 80, 80)
    torch.manual_seed(0)
    model = build_model(opt)
    model.feed_data(batch)
    assert model.lq.shape == (2, 1, 8, 8) and model.gt.shape == (2, 1, 32, 32)
    assert model.opt['gray_noise_prob'] == 1.0  # restored after the degradation
    model.optimize_parameters(1)
    assert all(np.isfinite(v) for v in model.get_current_log().values())


def test_bsrnet_model_degrades_one_channel_batches_on_device(tmp_path):
    from tests.test_bsrgan_model import GT_SIZE, SCALE, P, _opt
    opt = _opt(tmp_path)
    opt['network_g'].update(num_in_ch=1, num_out_ch=1)
    opt['datasets']['train']['color'] = 'gray'
    model = build_model(opt)
    torch.manual_seed(0)
    model.feed_data({'gt': torch.rand(3, 1, GT_SIZE, GT_SIZE)})
    assert model.lq.shape == (3, 1, P, P) and model.gt.shape == (3, 1, P * SCALE, P * SCALE)
    model.optimize_parameters(1)
    assert all(np.isfinite(v) for v in model.get_current_log().values())
