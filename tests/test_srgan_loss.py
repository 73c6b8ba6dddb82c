"""VGGContentLoss: MSE on VGG19 post-ReLU features, checked against features computed with torchvision directly."""
import pytest
import torch
import torchvision
from basicsr.losses import build_loss

from srplugins.losses.srgan_loss import PAPER_LOSS_WEIGHT, VGGContentLoss

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# index of the ReLU after the named conv in torchvision's vgg19().features
TORCHVISION_INDEX = {'relu2_2': 8, 'relu5_4': 35}


@pytest.fixture(scope='module')
def vgg19_features(vgg19_weights):
    net = torchvision.models.vgg19(weights=None)
    net.load_state_dict(torch.load(vgg19_weights, map_location='cpu'))
    return net.features.eval()


def hand_mse(features, layer, x, gt):
    trunk = features[:TORCHVISION_INDEX[layer] + 1]
    with torch.no_grad():
        fx = trunk((x - IMAGENET_MEAN) / IMAGENET_STD)
        fg = trunk((gt - IMAGENET_MEAN) / IMAGENET_STD)
    assert isinstance(trunk[-1], torch.nn.ReLU) and fx.min() >= 0  # post-activation features
    return ((fx - fg)**2).sum() / fx.numel()


@pytest.mark.parametrize('layer', ['relu5_4', 'relu2_2'])
def test_content_loss_equals_hand_computed_mse(vgg19_features, layer):
    torch.manual_seed(0)
    x, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = build_loss(dict(type='VGGContentLoss', layer_weights={layer: 1.0}, perceptual_weight=PAPER_LOSS_WEIGHT))
    with torch.no_grad():
        value, style = loss(x, gt)
    assert style is None
    expected = hand_mse(vgg19_features, layer, x, gt) * (1 / 12.75)**2
    assert expected > 0
    assert torch.allclose(value, expected, rtol=1e-5)


def test_content_loss_range_norm_and_gradient(vgg19_weights):
    torch.manual_seed(0)
    x, gt = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    unit = VGGContentLoss({'relu2_2': 1.0}, perceptual_weight=3.0)
    signed = VGGContentLoss({'relu2_2': 1.0}, perceptual_weight=3.0, range_norm=True)
    x.requires_grad_(True)
    value = unit(x, gt)[0]
    value.backward()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in unit.parameters())  # VGG stays frozen
    with torch.no_grad():
        assert torch.allclose(signed(x * 2 - 1, gt * 2 - 1)[0], value, rtol=1e-5)
        assert unit(gt, gt)[0] == 0


def test_content_loss_rejects_unknown_layers():
    with pytest.raises(ValueError, match='layer_weights.*relu5_5'):
        VGGContentLoss({'relu5_5': 1.0})
    with pytest.raises(ValueError, match='vgg_type'):
        VGGContentLoss({'relu5_4': 1.0}, vgg_type='vgg20')
