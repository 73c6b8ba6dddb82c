"""Tests of the BSRGAN/KAIR RRDBNet key conversion (srplugins/checkpoints/bsrgan_keys.py) and BSRGANRRDBNet."""
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.utils.registry import ARCH_REGISTRY

import srplugins  # noqa: F401
from srplugins.archs.bsrgan_rrdbnet_arch import BSRGANRRDBNet
from srplugins.checkpoints.bsrgan_keys import (basicsr_to_bsrgan, bsrgan_rrdbnet_scale, bsrgan_to_basicsr,
                                               is_bsrgan_rrdbnet)


def _kair_keys(num_block, scale):
    """The official KAIR RRDBNet key list (network_rrdbnet.py), written out from the documented layout."""
    keys = ['conv_first.weight', 'conv_first.bias']
    for i in range(num_block):
        for r in (1, 2, 3):
            for c in range(1, 6):
                keys += [f'RRDB_trunk.{i}.RDB{r}.conv{c}.weight', f'RRDB_trunk.{i}.RDB{r}.conv{c}.bias']
    keys += ['trunk_conv.weight', 'trunk_conv.bias', 'upconv1.weight', 'upconv1.bias']
    if scale == 4:
        keys += ['upconv2.weight', 'upconv2.bias']
    return keys + ['HRconv.weight', 'HRconv.bias', 'conv_last.weight', 'conv_last.bias']


@pytest.mark.parametrize('scale', [2, 4])
def test_bsrgan_rrdbnet_uses_the_official_key_layout(scale):
    net = BSRGANRRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=scale)
    assert list(net.state_dict()) == _kair_keys(2, scale)
    assert ARCH_REGISTRY.get('BSRGANRRDBNet') is BSRGANRRDBNet
    y = net(torch.rand(1, 3, 6, 5))
    assert y.shape == (1, 3, 6 * scale, 5 * scale)


def test_full_size_parameter_counts():
    with torch.device('meta'):  # shapes only, no allocation or init cost
        assert sum(p.numel() for p in BSRGANRRDBNet(scale=4).parameters()) == 16697987
        assert sum(p.numel() for p in BSRGANRRDBNet(scale=2).parameters()) == 16661059


def test_x4_conversion_loads_strict_into_basicsr_rrdbnet_with_identical_output():
    torch.manual_seed(0)
    kair = BSRGANRRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=4).eval()
    for p in kair.parameters():  # non-trivial weights everywhere
        p.data.normal_(0, 0.1)
    official = kair.state_dict()
    assert is_bsrgan_rrdbnet(official) and bsrgan_rrdbnet_scale(official) == 4
    converted = bsrgan_to_basicsr(official)
    assert 'body.0.rdb1.conv1.weight' in converted and 'conv_body.weight' in converted
    ours = RRDBNet(3, 3, scale=4, num_feat=8, num_block=2, num_grow_ch=4).eval()
    ours.load_state_dict(converted, strict=True)
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        assert torch.equal(ours(x), kair(x))
    # round trip back to the KAIR layout, also through a params wrapper and a DataParallel prefix
    back = basicsr_to_bsrgan({'params': {'module.' + k: v for k, v in converted.items()}})
    assert list(back) == list(official) and all(torch.equal(back[k], official[k]) for k in official)


def test_x2_release_is_refused_with_a_reason():
    official = BSRGANRRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2).state_dict()
    assert bsrgan_rrdbnet_scale(official) == 2
    with pytest.raises(ValueError, match='x2'):
        bsrgan_to_basicsr(official)
    BSRGANRRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2).load_state_dict(official, strict=True)


def test_non_kair_dict_is_rejected():
    with pytest.raises(ValueError, match='KAIR/BSRGAN'):
        bsrgan_to_basicsr(RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4).state_dict())
    with pytest.raises(ValueError, match='scale'):
        BSRGANRRDBNet(scale=3)
