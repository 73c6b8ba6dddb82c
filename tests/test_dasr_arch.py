"""Tests for srplugins.archs.dasr_arch: official key layouts, strict loads, shapes."""
import itertools
import math
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import srplugins  # noqa: F401
from srplugins.archs.dasr_arch import DASRDownsampler, DASRFSDiscriminator, DASRPatchDiscriminator


def official_generator_layout(num_block=8, scale=4):
    """Key -> shape of the official ``De_resnet`` (spec section 6.1)."""
    layout = {'block_input.0.weight': (64, 3, 3, 3), 'block_input.0.bias': (64, ), 'block_input.1.weight': (1, )}
    for n in range(num_block):
        layout.update({
            f'res_blocks.{n}.conv1.weight': (64, 64, 3, 3),
            f'res_blocks.{n}.conv1.bias': (64, ),
            f'res_blocks.{n}.prelu.weight': (1, ),
            f'res_blocks.{n}.conv2.weight': (64, 64, 3, 3),
            f'res_blocks.{n}.conv2.bias': (64, )
        })
    for i in range(int(math.log2(scale))):
        layout.update({
            f'down_sample.{2 * i}.weight': (64, 64, 3, 3),
            f'down_sample.{2 * i}.bias': (64, ),
            f'down_sample.{2 * i + 1}.weight': (1, )
        })
    layout.update({'block_output.weight': (3, 64, 3, 3), 'block_output.bias': (3, )})
    return layout


def _bn(prefix, n):
    return {
        f'{prefix}.weight': (n, ),
        f'{prefix}.bias': (n, ),
        f'{prefix}.running_mean': (n, ),
        f'{prefix}.running_var': (n, ),
        f'{prefix}.num_batches_tracked': ()
    }


def official_discriminator_layout(filter_type, norm, d_arch='fsd', cat_or_sum='cat'):
    """Key -> shape of the official DSN ``Discriminator`` (spec section 6.2 and official model.py)."""
    layout = {}
    in_ch = 3
    if filter_type == 'gau':
        layout['filter.filter_low.filter.gaussian_filter.weight'] = (3, 1, 5, 5)
    elif filter_type == 'wavelet':
        layout.update({
            'DWT2.h0_col': (1, 1, 2, 1),
            'DWT2.h1_col': (1, 1, 2, 1),
            'DWT2.h0_row': (1, 1, 1, 2),
            'DWT2.h1_row': (1, 1, 1, 2)
        })
        in_ch = 9 if cat_or_sum == 'cat' else 3
    if d_arch == 'fsd':
        layout.update({
            'net.net.0.weight': (64, in_ch, 5, 5),
            'net.net.0.bias': (64, ),
            'net.net.2.weight': (128, 64, 5, 5),
            'net.net.2.bias': (128, ),
            'net.net.5.weight': (256, 128, 5, 5),
            'net.net.5.bias': (256, ),
            'net.net.8.weight': (1, 256, 1, 1),
            'net.net.8.bias': (1, )
        })
        if norm == 'batch':
            layout.update(_bn('net.net.3', 128))
            layout.update(_bn('net.net.6', 256))
    else:
        layout.update({
            'net.model.0.weight': (64, in_ch, 4, 4),
            'net.model.0.bias': (64, ),
            'net.model.2.weight': (128, 64, 4, 4),
            'net.model.5.weight': (256, 128, 4, 4),
            'net.model.8.weight': (1, 256, 4, 4),
            'net.model.8.bias': (1, )
        })
        if norm == 'batch':  # convs followed by BatchNorm have no bias
            layout.update(_bn('net.model.3', 128))
            layout.update(_bn('net.model.6', 256))
        else:
            layout.update({'net.model.2.bias': (128, ), 'net.model.5.bias': (256, )})
    return layout


def _random_state(layout):
    state = {}
    for key, shape in layout.items():
        state[key] = torch.tensor(7) if key.endswith('num_batches_tracked') else torch.randn(shape)
    return state


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_registered():
    for name, cls in [('DASRDownsampler', DASRDownsampler), ('DASRFSDiscriminator', DASRFSDiscriminator),
                      ('DASRPatchDiscriminator', DASRPatchDiscriminator)]:
        assert ARCH_REGISTRY.get(name) is cls


@pytest.mark.parametrize('scale,num_keys,num_params', [(4, 51, 668238), (2, 48, 631309), (1, 45, 594380)])
def test_downsampler_official_layout(scale, num_keys, num_params):
    net = DASRDownsampler(scale=scale)
    layout = official_generator_layout(8, scale)
    assert _shapes(net) == layout
    assert len(layout) == num_keys
    assert sum(p.numel() for p in net.parameters()) == num_params
    state = _random_state(layout)
    net.load_state_dict(state, strict=True)
    torch.testing.assert_close(net.state_dict()['block_output.bias'], state['block_output.bias'])


def test_downsampler_forward_shapes():
    net = DASRDownsampler(num_feat=8, num_block=1, scale=4)
    out = net(torch.rand(2, 3, 30, 33))
    assert out.shape == (2, 3, 8, 9)  # ceil(ceil(N / 2) / 2)
    assert out.min() > 0 and out.max() < 1
    gray = DASRDownsampler(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, scale=2)
    assert gray(torch.rand(1, 1, 16, 16)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match='scale'):
        DASRDownsampler(scale=3)


# every combination the official ``Discriminator`` accepts: filter (wavelet with 'cat' or 'sum' bands; cat_or_sum is
# ignored by the other filters) x norm x body = 5 x 2 x 3 = 30 variants
FILTER_BANDS = [('gau', 'cat'), ('avg_pool', 'cat'), ('wavelet', 'cat'), ('wavelet', 'sum'), ('rgb', 'cat')]
NORMS = ('batch', 'instance')
BODIES = ('fsd', 'nld_s1', 'nld_s2')
VARIANTS = [(f, n, a, c) for (f, c), n, a in itertools.product(FILTER_BANDS, NORMS, BODIES)]


def test_variant_grid_is_complete():
    assert len(VARIANTS) == len(set(VARIANTS)) == 30


@pytest.mark.parametrize('filter_type,norm,d_arch,cat_or_sum', VARIANTS)
def test_discriminator_official_layouts_load_strict(filter_type, norm, d_arch, cat_or_sum):
    net = DASRFSDiscriminator(filter_type=filter_type, norm=norm, d_arch=d_arch, cat_or_sum=cat_or_sum)
    layout = official_discriminator_layout(filter_type, norm, d_arch, cat_or_sum)
    assert _shapes(net) == layout
    state = _random_state(layout)
    net.load_state_dict(state, strict=True)
    loaded = net.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


# official parameter counts (spec section 2.3; the frozen Gaussian is a Parameter there, a buffer here; BatchNorm
# running statistics and the DWT filters are buffers in both)
@pytest.mark.parametrize('filter_type,cat_or_sum,norm,count', [('gau', 'cat', 'batch', 1030348),
                                                               ('gau', 'cat', 'instance', 1029580),
                                                               ('avg_pool', 'cat', 'batch', 1030273),
                                                               ('avg_pool', 'cat', 'instance', 1029505),
                                                               ('wavelet', 'cat', 'instance', 1039105),
                                                               ('wavelet', 'cat', 'batch', 1039873),
                                                               ('wavelet', 'sum', 'instance', 1029505)])
def test_fsd_official_parameter_counts(filter_type, cat_or_sum, norm, count):
    net = DASRFSDiscriminator(filter_type=filter_type, cat_or_sum=cat_or_sum, norm=norm)
    buffers = ('running_mean', 'running_var', 'num_batches_tracked')
    official = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith(buffers) and 'DWT2' not in k)
    assert official == count


def test_discriminator_test_tar_layout_has_19_keys():
    # codes/DSN/test.tar = Discriminator(kernel_size=5, D_arch='FSD', filter_type='gau', norm_layer='Batch')
    assert len(official_discriminator_layout('gau', 'batch')) == 19


def test_discriminator_filters_and_shapes():
    x = torch.rand(2, 3, 20, 20)
    net = DASRFSDiscriminator(filter_type='gau', norm='batch').eval()
    kernel = net.state_dict()['filter.filter_low.filter.gaussian_filter.weight']
    assert abs(kernel[0, 0, 2, 2].item() - 0.2299) < 1e-4
    assert not any('gaussian' in n for n, _ in net.named_parameters())  # frozen: a buffer, not optimised
    assert net(x).shape == (2, 1, 20, 20)
    from srplugins.ops.frequency import highpass, wavelet_highpass
    torch.testing.assert_close(net.high_frequency(x), highpass(x, 'gau', 5))
    avg = DASRFSDiscriminator(filter_type='avg_pool')
    torch.testing.assert_close(avg.high_frequency(x), highpass(x, 'avg_pool', 5, count_include_pad=False))
    wav = DASRFSDiscriminator(filter_type='wavelet', norm='instance')
    torch.testing.assert_close(wav.high_frequency(x), wavelet_highpass(x, 'cat'))
    assert wav(x).shape == (2, 1, 10, 10)
    assert DASRFSDiscriminator(filter_type='rgb', d_arch='nld_s2')(x).shape == (2, 1, 3, 3)
    assert DASRFSDiscriminator(filter_type='rgb', d_arch='nld_s1')(x).shape == (2, 1, 16, 16)
    gray = DASRFSDiscriminator(num_in_ch=1, filter_type='wavelet', norm='instance')
    assert gray(torch.rand(1, 1, 9, 9)).shape == (1, 1, 5, 5)
    with pytest.raises(ValueError, match='filter_type'):
        DASRFSDiscriminator(filter_type='median')
    with pytest.raises(ValueError, match='norm'):
        DASRFSDiscriminator(norm='group')


def test_wavelet_buffers_match_pytorch_wavelets():
    pytorch_wavelets = pytest.importorskip('pytorch_wavelets')
    ref = pytorch_wavelets.DWTForward(J=1, wave='haar', mode='reflect').state_dict()
    ours = DASRFSDiscriminator(filter_type='wavelet').DWT2.state_dict()
    assert set(ref) == set(ours)
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key].float())


def test_patch_discriminator_official_layout():
    net = DASRPatchDiscriminator(num_in_ch=9)
    layout = {
        'model.0.weight': (64, 9, 4, 4),
        'model.0.bias': (64, ),
        'model.2.weight': (128, 64, 4, 4),
        'model.5.weight': (256, 128, 4, 4),
        'model.8.weight': (1, 256, 4, 4),
        'model.8.bias': (1, )
    }
    assert _shapes(net) == layout
    assert sum(p.numel() for p in net.parameters()) == 668737
    assert sum(p.numel() for p in DASRPatchDiscriminator(num_in_ch=3).parameters()) == 662593
    net.load_state_dict(_random_state(layout), strict=True)
    assert net(torch.rand(2, 9, 64, 64)).shape == (2, 1, 14, 14)
