"""SRResNet / SRGANDiscriminator: parameter counts from the paper's layer table, topology against a functional
re-computation, shapes, output ranges and the documented errors."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch.nn import functional as F

from srplugins.archs.srgan_arch import SRGANDiscriminator, SRResNet


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def srresnet_param_count(num_feat=64, num_block=16, upscale=4, in_ch=3, out_ch=3, prelu=1):
    """Ledig et al. Fig. 4 counted by hand: every conv has a bias, BN has weight + bias."""
    head = conv_params(in_ch, num_feat, 9) + prelu
    block = 2 * conv_params(num_feat, num_feat, 3) + 2 * 2 * num_feat + prelu
    post = conv_params(num_feat, num_feat, 3) + 2 * num_feat
    stages = [3] if upscale == 3 else [2] * {2: 1, 4: 2, 8: 3}[upscale]
    up = sum(conv_params(num_feat, num_feat * s * s, 3) + prelu for s in stages)
    tail = conv_params(num_feat, out_ch, 9)
    return head + num_block * block + post + up + tail


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_registered_names():
    assert ARCH_REGISTRY.get('SRResNet') is SRResNet
    assert ARCH_REGISTRY.get('SRGANDiscriminator') is SRGANDiscriminator


def test_srresnet_param_count_x4_paper():
    net = SRResNet(upscale=4)
    assert n_params(net) == srresnet_param_count() == 1549462
    assert n_params(SRResNet(upscale=4, per_channel_prelu=True)) == srresnet_param_count(prelu=64) == 1550659
    # BN after every conv of the body (2 per block + post-body), PReLU after head, in blocks and after each shuffle
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 33
    assert sum(isinstance(m, torch.nn.PReLU) for m in net.modules()) == 1 + 16 + 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.upsample.modules())


@pytest.mark.parametrize('scale', [2, 3, 4, 8])
def test_srresnet_shapes_and_counts(scale):
    net = SRResNet(num_feat=8, num_block=2, upscale=scale).eval()
    assert n_params(net) == srresnet_param_count(8, 2, scale)
    with torch.no_grad():
        out = net(torch.rand(2, 3, 6, 5))
    assert out.shape == (2, 3, 6 * scale, 5 * scale)


def reference_srresnet(net, x):
    """SRResNet forward pass written with torch.nn.functional from the paper's description (eval-mode BN)."""

    def bn(mod, t):
        return F.batch_norm(t, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0., mod.eps)

    def conv(mod, t):
        return F.conv2d(t, mod.weight, mod.bias, padding=mod.kernel_size[0] // 2)

    head = F.prelu(conv(net.conv_first, x), net.prelu_first.weight)
    feat = head
    for blk in net.body:
        res = bn(blk.bn1, conv(blk.conv1, feat))
        res = bn(blk.bn2, conv(blk.conv2, F.prelu(res, blk.prelu.weight)))
        feat = feat + res
    feat = bn(net.bn_body, conv(net.conv_body, feat)) + head
    mods = list(net.upsample)
    for conv_mod, shuffle, prelu in zip(mods[0::3], mods[1::3], mods[2::3]):
        feat = F.prelu(F.pixel_shuffle(conv(conv_mod, feat), shuffle.upscale_factor), prelu.weight)
    return conv(net.conv_last, feat)


@pytest.mark.parametrize('output_range', [[0, 1], '[-1,1]'])
def test_srresnet_matches_functional_reference(output_range):
    torch.manual_seed(0)
    net = SRResNet(num_feat=8, num_block=3, upscale=4, output_range=output_range)
    for m in net.modules():  # non-trivial BN statistics and PReLU slopes
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(0.1, 0.4)
    net.eval()
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        ref = reference_srresnet(net, x)
        if output_range != [0, 1]:
            ref = torch.tanh(ref)
        out = net(x)
    assert torch.allclose(out, ref, atol=1e-5)
    if output_range != [0, 1]:
        assert out.abs().max() < 1


def test_srresnet_errors():
    with pytest.raises(ValueError, match='output_range'):
        SRResNet(output_range=[0, 255])
    with pytest.raises(ValueError, match='upscale'):
        SRResNet(upscale=6)


def test_discriminator_param_count_and_shapes():
    net = SRGANDiscriminator()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features) == 7
    assert isinstance(net.features[1], torch.nn.LeakyReLU)  # no BN after the first conv
    chans = [3, 64, 64, 128, 128, 256, 256, 512, 512]
    expected = sum(conv_params(chans[i], chans[i + 1], 3) for i in range(8)) + 2 * sum(chans[2:])
    expected += 512 * 6 * 6 * 1024 + 1024 + 1024 + 1
    assert n_params(net) == expected == 23565505
    with torch.no_grad():
        assert net.features(torch.rand(1, 3, 96, 96)).shape == (1, 512, 6, 6)
        out = net(torch.rand(2, 3, 96, 96))
    assert out.shape == (2, 1)
    # a raw logit: the sigmoid belongs to GANLoss('vanilla')
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())


def test_discriminator_input_size_option():
    net = SRGANDiscriminator(num_feat=4, input_size=32).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 1)
    with pytest.raises(ValueError, match=r'32x32 inputs, got 48x48.*gt_size.*input_size'):
        net(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r'96x96 inputs, got 128x128.*gt_size'):
        SRGANDiscriminator(num_feat=4)(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match='input_size'):
        SRGANDiscriminator(input_size=100)
