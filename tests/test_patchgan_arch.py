"""Tests of PatchGANDiscriminatorSN (srplugins/archs/patchgan_arch.py)."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import srplugins  # noqa: F401  (registers the archs)
from srplugins.archs.patchgan_arch import PatchGANDiscriminatorSN


def test_registered_under_own_name():
    assert ARCH_REGISTRY.get('PatchGANDiscriminatorSN') is PatchGANDiscriminatorSN


def test_parameter_count_and_kair_state_dict_layout():
    net = PatchGANDiscriminatorSN()
    assert sum(p.numel() for p in net.parameters()) == 2764737
    channels = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    # KAIR Discriminator_PatchGAN(norm_type='spectral') keys: model.child{i}.0.{bias, weight_orig, weight_u, weight_v}
    official = {}
    for i, (cin, cout) in enumerate(channels):
        official[f'model.child{i}.0.bias'] = torch.randn(cout)
        official[f'model.child{i}.0.weight_orig'] = torch.randn(cout, cin, 4, 4)
        official[f'model.child{i}.0.weight_u'] = torch.randn(cout)
        official[f'model.child{i}.0.weight_v'] = torch.randn(cin * 16)
    assert set(net.state_dict()) == set(official)
    net.load_state_dict(official, strict=True)
    assert torch.equal(net.model.child3[0].weight_orig, official['model.child3.0.weight_orig'])


@pytest.mark.parametrize('size,out', [(96, 15), (64, 11)])
def test_output_shape(size, out):
    net = PatchGANDiscriminatorSN(num_feat=8)
    y = net(torch.rand(2, 3, size, size))
    assert y.shape == (2, 1, out, out)


def test_strides_padding_and_spectral_norm_on_every_conv():
    net = PatchGANDiscriminatorSN(num_feat=8)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.padding == (2, 2) and c.kernel_size == (4, 4) and c.bias is not None for c in convs)
    assert all(hasattr(c, 'weight_orig') for c in convs)
    # spectral norm bounds the largest singular value of each (reshaped) weight by about 1 after a few power steps
    net.train()
    for _ in range(20):
        net(torch.rand(1, 3, 32, 32))
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_receptive_field_is_70():
    torch.manual_seed(0)
    net = PatchGANDiscriminatorSN(num_feat=8).eval()
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero().flatten()
    cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_gradients_flow_to_every_layer():
    net = PatchGANDiscriminatorSN(num_feat=8)
    net(torch.rand(2, 3, 48, 48)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_invalid_layers():
    with pytest.raises(ValueError, match='num_layers'):
        PatchGANDiscriminatorSN(num_layers=0)
