"""Offline lookup of backbone weights: clear errors, search order, VGG and LPIPS built from local files."""
import os
import pytest
import torch

from srplugins.utils import pretrained


def test_missing_file_names_file_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'torch_home' / 'hub'))
    with pytest.raises(FileNotFoundError) as info:
        pretrained.resolve_pretrained('vgg19-dcbb9e9d.pth', 'VGG19 for a test')
    message = str(info.value)
    assert 'vgg19-dcbb9e9d.pth' in message and str(tmp_path) in message
    assert pretrained.ENV_VAR in message and 'VGG19 for a test' in message


def test_search_order(tmp_path, monkeypatch):
    env_dir, cwd = tmp_path / 'env', tmp_path / 'cwd'
    hub = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    for folder in (env_dir, cwd / 'experiments' / 'pretrained_models', hub):
        folder.mkdir(parents=True)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'torch_home' / 'hub'))
    monkeypatch.setenv(pretrained.ENV_VAR, str(env_dir))
    monkeypatch.chdir(cwd)
    (hub / 'a.pth').write_bytes(b'')
    assert pretrained.resolve_pretrained('a.pth') == str(hub / 'a.pth')
    (cwd / 'experiments' / 'pretrained_models' / 'a.pth').write_bytes(b'')
    assert pretrained.resolve_pretrained('a.pth') == str(cwd / 'experiments' / 'pretrained_models' / 'a.pth')
    (env_dir / 'a.pth').write_bytes(b'')
    assert pretrained.resolve_pretrained('a.pth') == str(env_dir / 'a.pth')


def test_perceptual_loss_uses_local_vgg19(vgg19_weights):
    from basicsr.losses.basic_loss import PerceptualLoss
    loss = PerceptualLoss({'conv5_4': 1.0}, vgg_type='vgg19', perceptual_weight=1.0)
    saved = torch.load(vgg19_weights, weights_only=True)
    assert torch.equal(loss.vgg.vgg_net[0].weight, saved['features.0.weight'])
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x)[0].item() == 0
    assert loss(x, torch.rand(1, 3, 32, 32))[0].item() > 0


def test_vgg16_request_loads_vgg16_file(vgg16_weights, vgg19_weights):
    """basicsr loads its single vgg19 path for every vgg_type; the lookup picks the file of the requested type."""
    from basicsr.archs.vgg_arch import VGGFeatureExtractor
    net = VGGFeatureExtractor(['relu2_2'], vgg_type='vgg16')
    saved = torch.load(vgg16_weights, weights_only=True)
    assert torch.equal(net.vgg_net[0].weight, saved['features.0.weight'])


def test_missing_vgg_is_a_clear_error(tmp_path, monkeypatch):
    from basicsr.archs.vgg_arch import VGGFeatureExtractor
    monkeypatch.setenv(pretrained.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match='vgg19-dcbb9e9d.pth'):
        VGGFeatureExtractor(['conv5_4'], vgg_type='vgg19')


def test_build_lpips_copies_local_alexnet(alexnet_weights):
    model = pretrained.build_lpips('alex')
    saved = torch.load(alexnet_weights, weights_only=True)
    assert torch.equal(model.net.slice1._modules['0'].weight, saved['features.0.weight'])
    assert torch.equal(model.net.slice5._modules['10'].weight, saved['features.10.weight'])
    assert not any(p.requires_grad for p in model.parameters())
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert model(x, x).item() == pytest.approx(0, abs=1e-7)
    assert model(x, torch.rand(1, 3, 32, 32) * 2 - 1).item() > 0


def test_build_lpips_rejects_unknown_net():
    with pytest.raises(ValueError, match='alex'):
        pretrained.build_lpips('resnet')


def test_environment_not_leaked():
    assert os.environ.get(pretrained.ENV_VAR) is None or os.path.isdir(os.environ[pretrained.ENV_VAR])
