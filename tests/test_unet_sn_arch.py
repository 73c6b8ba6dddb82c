"""Tests for srplugins.archs.unet_sn_arch (U-Net discriminator with spectral norm, Real-ESRGAN Sec. 4.2)."""
import copy
import glob
import math
import os.path as osp
import pytest
import torch
import yaml
from basicsr.archs.discriminator_arch import UNetDiscriminatorSN as BasicsrUNetDiscriminatorSN
from basicsr.losses.gan_loss import GANLoss
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

import srplugins  # noqa: F401  (registers everything)
from srplugins.archs.unet_sn_arch import UNetSNDiscriminator, rename_parametrized_spectral_norm_keys

SN_LAYERS = [f'conv{k}' for k in range(1, 9)]
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = sorted(glob.glob(osp.join(REPO, 'options', 'train', '*', '*_unetsn.yml')))


def realesrgan_key_shapes(num_in_ch=3, num_feat=64):
    """State-dict layout of Real-ESRGAN's UNetDiscriminatorSN, written out from the spec table (not from the code)."""
    f = num_feat
    convs = {  # name: (out, in, k)
        'conv1': (2 * f, f, 4),
        'conv2': (4 * f, 2 * f, 4),
        'conv3': (8 * f, 4 * f, 4),
        'conv4': (4 * f, 8 * f, 3),
        'conv5': (2 * f, 4 * f, 3),
        'conv6': (f, 2 * f, 3),
        'conv7': (f, f, 3),
        'conv8': (f, f, 3)
    }
    shapes = {'conv0.weight': (f, num_in_ch, 3, 3), 'conv0.bias': (f, )}
    for name, (out_ch, in_ch, k) in convs.items():
        shapes[f'{name}.weight_orig'] = (out_ch, in_ch, k, k)
        shapes[f'{name}.weight_u'] = (out_ch, )
        shapes[f'{name}.weight_v'] = (in_ch * k * k, )
    shapes['conv9.weight'] = (1, f, 3, 3)
    shapes['conv9.bias'] = (1, )
    return shapes


def reference_forward(net, x, skip):
    """Hand-written forward pass of the U-Net discriminator (Real-ESRGAN Sec. 4.2) through the net's own layers."""

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def up(t):
        return F.interpolate(t, scale_factor=2, mode='bilinear', align_corners=False)

    x0 = lrelu(net.conv0(x))
    x1 = lrelu(net.conv1(x0))
    x2 = lrelu(net.conv2(x1))
    x3 = lrelu(net.conv3(x2))
    x4 = lrelu(net.conv4(up(x3))) + (x2 if skip else 0)
    x5 = lrelu(net.conv5(up(x4))) + (x1 if skip else 0)
    x6 = lrelu(net.conv6(up(x5))) + (x0 if skip else 0)
    return net.conv9(lrelu(net.conv8(lrelu(net.conv7(x6)))))


def test_registered_under_own_name_only():
    assert ARCH_REGISTRY.get('UNetSNDiscriminator') is UNetSNDiscriminator
    # basicsr's copy keeps its suffixed name; srplugins must not claim the plain name used by realesrgan / HAT
    assert ARCH_REGISTRY.get('UNetDiscriminatorSN_basicsr') is BasicsrUNetDiscriminatorSN
    assert 'UNetDiscriminatorSN' not in ARCH_REGISTRY or \
        ARCH_REGISTRY.get('UNetDiscriminatorSN').__module__.split('.')[0] != 'srplugins'


@pytest.mark.parametrize('size', [(32, 32), (16, 40), (8, 24)])
def test_output_shape_equals_input_shape(size):
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 1, *size)


def test_other_channel_count():
    net = UNetSNDiscriminator(num_in_ch=9, num_feat=4)
    assert net(torch.rand(1, 9, 16, 16)).shape == (1, 1, 16, 16)


def test_spectral_norm_on_conv1_to_conv8_only():
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    for k in range(10):
        conv = getattr(net, f'conv{k}')
        has_hook = any(type(h).__name__ == 'SpectralNorm' for h in conv._forward_pre_hooks.values())
        assert has_hook == (f'conv{k}' in SN_LAYERS)
        assert hasattr(conv, 'weight_orig') == (f'conv{k}' in SN_LAYERS)
        assert (conv.bias is None) == (f'conv{k}' in SN_LAYERS)
    # spectral norm at work: in training mode power iteration drives the largest singular value of the weight to 1
    torch.manual_seed(0)
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    for _ in range(60):
        net(torch.rand(1, 3, 8, 8))
    sigma = torch.linalg.matrix_norm(net.conv4.weight.detach().flatten(1), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.02)
    # in eval mode the weight is exactly weight_orig / (u^T W_orig v) with the stored vectors
    net.eval()
    with torch.no_grad():
        net(torch.rand(1, 3, 8, 8))
        for name in SN_LAYERS:
            conv = getattr(net, name)
            sigma = conv.weight_u @ conv.weight_orig.flatten(1) @ conv.weight_v
            assert torch.allclose(conv.weight, conv.weight_orig / sigma, atol=1e-6)


def test_published_key_layout_and_parameter_count():
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=64)
    state = net.state_dict()
    expected = realesrgan_key_shapes(3, 64)
    assert len(expected) == 28
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 4376897


@pytest.mark.parametrize('skip', [True, False])
def test_forward_matches_hand_computation(skip):
    torch.manual_seed(0)
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4, skip_connection=skip).eval()
    x = torch.rand(2, 3, 24, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), reference_forward(net, x, skip), atol=1e-6)


def test_skip_switch_changes_output_not_keys():
    torch.manual_seed(0)
    with_skip = UNetSNDiscriminator(num_in_ch=3, num_feat=4, skip_connection=True).eval()
    without_skip = UNetSNDiscriminator(num_in_ch=3, num_feat=4, skip_connection=False).eval()
    without_skip.load_state_dict(with_skip.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), without_skip(x))


def test_realesrgan_state_dict_loads_strictly(tmp_path):
    torch.manual_seed(1)
    f = 8
    state = {k: torch.randn(shape) for k, shape in realesrgan_key_shapes(3, f).items()}
    for name in SN_LAYERS:  # power-iteration vectors are unit vectors in the released files
        for vec in ('weight_u', 'weight_v'):
            state[f'{name}.{vec}'] = F.normalize(state[f'{name}.{vec}'], dim=0)
    path = tmp_path / 'netD.pth'
    torch.save({'params': state}, path)  # basicsr's checkpoint layout (e.g. RealESRGAN_x4plus_netD.pth)

    loaded = torch.load(path, map_location='cpu', weights_only=True)['params']
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=f).eval()
    result = net.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value), key
    # same numbers as basicsr's (= Real-ESRGAN's) class with the same weights
    reference = BasicsrUNetDiscriminatorSN(3, num_feat=f).eval()
    reference.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x), atol=1e-6)


def test_strict_load_rejects_wrong_keys():
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    state = net.state_dict()
    state['conv1.weight'] = state.pop('conv1.weight_orig')
    del state['conv1.weight_u']
    with pytest.raises(RuntimeError):
        net.load_state_dict({k: v for k, v in state.items() if k != 'conv2.weight_v'}, strict=True)


def test_parametrized_spectral_norm_keys_load_strictly():
    """A copy whose spectral norm uses torch's parametrization API saves other key names; they load too."""
    torch.manual_seed(2)
    ours = UNetSNDiscriminator(num_in_ch=3, num_feat=4).eval()
    plain = BasicsrUNetDiscriminatorSN(3, num_feat=4)
    for name in SN_LAYERS:  # rebuild conv1..conv8 with the new API
        old = getattr(plain, name)
        new = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        setattr(plain, name, parametrizations.spectral_norm(new))
    plain.train()
    for _ in range(3):  # a few power-iteration steps so u and v are not the initial ones
        plain(torch.rand(1, 3, 16, 16))
    plain.eval()
    state = plain.state_dict()
    assert 'conv3.parametrizations.weight.original' in state and 'conv3.parametrizations.weight.0._u' in state
    ours.load_state_dict(state, strict=True)
    assert torch.equal(ours.conv3.weight_orig, state['conv3.parametrizations.weight.original'])
    assert torch.equal(ours.conv3.weight_v, state['conv3.parametrizations.weight.0._v'])
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), plain(x), atol=1e-5)


def test_rename_refuses_ambiguous_state_dict():
    state = {'conv1.weight_orig': torch.zeros(1), 'conv1.parametrizations.weight.original': torch.zeros(1)}
    with pytest.raises(ValueError, match='both'):
        rename_parametrized_spectral_norm_keys(state)


@pytest.mark.parametrize('size', [(30, 32), (32, 20), (100, 100)])
def test_sides_not_multiple_of_8_raise_clear_error(size):
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    with pytest.raises(ValueError, match=r'multiples of 8.*gt_size'):
        net(torch.rand(1, 3, *size))


def test_wrong_channel_count_raises_clear_error():
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    with pytest.raises(ValueError, match='num_in_ch=3'):
        net(torch.rand(1, 1, 16, 16))


def test_vanilla_gan_loss_is_per_pixel_bce_with_logits():
    torch.manual_seed(3)
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4)
    logits = net(torch.rand(2, 3, 16, 16))
    gan = GANLoss('vanilla', real_label_val=1.0, fake_label_val=0.0, loss_weight=0.1)
    expected_real = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    assert gan(logits, True, is_disc=True).item() == pytest.approx(expected_real.item(), rel=1e-6)
    assert gan(logits, True, is_disc=False).item() == pytest.approx(0.1 * expected_real.item(), rel=1e-6)
    gan(logits, False, is_disc=True).backward()
    assert net.conv1.weight_orig.grad is not None and torch.isfinite(net.conv1.weight_orig.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu():
    torch.manual_seed(4)
    net = UNetSNDiscriminator(num_in_ch=3, num_feat=4).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        cpu_out = net(x)
        gpu_out = net.cuda()(x.cuda()).cpu()
    assert torch.allclose(cpu_out, gpu_out, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------------
# *_unetsn.yml variants of the other GAN recipes (SRGAN, BSRGAN, DASR)
# ----------------------------------------------------------------------------------------------------------------------
def load_yaml(path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def gan_recipes_without_unet():
    """GAN recipes (a network_d that is not the U-Net) of the methods that must offer a U-Net SN variant."""
    recipes = []
    for method in ('SRGAN', 'BSRGAN', 'DASR'):
        for path in sorted(glob.glob(osp.join(REPO, 'options', 'train', method, 'train_*.yml'))):
            opt = load_yaml(path)
            if path.endswith('_unetsn.yml') or 'network_d' not in opt or '_DSN_' in path:
                continue  # DASR's DSN stage discriminates LR images through its own frequency filter: left alone
            if opt['network_d']['type'] != 'UNetSNDiscriminator':
                recipes.append(path)
    return recipes


def test_every_gan_recipe_has_a_unetsn_variant():
    recipes = gan_recipes_without_unet()
    assert {osp.basename(osp.dirname(p)) for p in recipes} == {'SRGAN', 'BSRGAN', 'DASR'}
    missing = [p for p in recipes if not osp.isfile(p[:-4] + '_unetsn.yml')]
    assert not missing, missing


@pytest.mark.parametrize('variant', VARIANTS, ids=osp.basename)
def test_unetsn_variant_copies_its_base_recipe(variant):
    opt, base = load_yaml(variant), load_yaml(variant.replace('_unetsn.yml', '.yml'))
    assert opt['network_d'] == {
        'type': 'UNetSNDiscriminator',
        'num_in_ch': base['network_d']['num_in_ch'],
        'num_feat': 64,
        'skip_connection': True
    }
    assert opt['name'] == base['name'] + '_unetsn'
    for cfg in (opt, base):
        del cfg['name'], cfg['network_d']
    assert opt == base


def _tiny_variant(variant, tmp_path):
    """The variant's options with tiny networks, no pretrained files and no perceptual backbone."""
    opt = load_yaml(variant)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = {
        'pretrain_network_g': None,
        'pretrain_network_d': None,
        'strict_load_g': True,
        'resume_state': None,
        'models': str(tmp_path),
        'training_states': str(tmp_path)
    }
    for key, value in (('num_feat', 8), ('num_block', 1), ('num_grow_ch', 4)):
        if key in opt['network_g']:
            opt['network_g'][key] = value
    opt['network_d']['num_feat'] = 4
    opt['train']['perceptual_opt'] = None  # the GAN term is under test; VGG / LPIPS have their own tests
    return opt


def _synthetic_batch(opt, gt_side=32, num=2):
    torch.manual_seed(0)
    lq_side = gt_side // opt['scale']
    batch = {'lq': torch.rand(num, 3, lq_side, lq_side), 'gt': torch.rand(num, 3, gt_side, gt_side)}
    if opt['model_type'] == 'DASRModel':  # generated pairs + real LR + unpaired HR + domain-distance map
        batch.update(
            lq_real=torch.rand(num, 3, lq_side, lq_side),
            gt_unpair=torch.rand(num, 3, gt_side, gt_side),
            ddm=torch.rand(num, 1, lq_side, lq_side))
    return batch


@pytest.mark.parametrize('variant', VARIANTS, ids=osp.basename)
def test_unetsn_variant_trains_one_cpu_iteration(variant, tmp_path):
    opt = _tiny_variant(variant, tmp_path)
    model = build_model(opt)
    net_d = model.get_bare_model(model.net_d)
    assert isinstance(net_d, UNetSNDiscriminator) and net_d.num_in_ch == opt['network_d']['num_in_ch']
    before = copy.deepcopy(net_d.conv1.weight_orig.detach())
    model.feed_data(_synthetic_batch(opt))
    model.optimize_parameters(1)
    log = {k: float(v) for k, v in model.get_current_log().items()}
    assert {'l_d_real', 'l_d_fake', 'l_g_gan'} <= set(log), log
    assert all(math.isfinite(v) for v in log.values()), log
    assert not torch.equal(before, net_d.conv1.weight_orig.detach())  # D was updated through the model's GAN loss
