"""Fallback to spandrel (optional extra ``srplugins[spandrel]``) for layouts none of srplugins' families know."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet

import srplugins  # noqa: F401
from srplugins import checkpoints
from srplugins.checkpoints import spandrel_support
from srplugins.inference.cli import main


def _swinir_small(tmp_path):
    spandrel_swinir = pytest.importorskip('spandrel.architectures.SwinIR')
    torch.manual_seed(0)
    net = spandrel_swinir.SwinIR(
        upscale=2,
        img_size=16,
        window_size=4,
        embed_dim=12,
        depths=[1, 1],
        num_heads=[2, 2],
        mlp_ratio=1,
        upsampler='pixelshuffledirect').eval()
    path = str(tmp_path / 'swinir_small.pth')
    torch.save({'params': net.state_dict()}, path)
    return net, path


def test_spandrel_only_architecture_runs_through_our_loader_and_cli(tmp_path, capsys):
    pytest.importorskip('spandrel')
    net, path = _swinir_small(tmp_path)
    built, info = checkpoints.build_network(path)
    assert info.family == 'spandrel:SwinIR' and info.scale == 2  # spandrel's SwinIR pads to its window itself
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.allclose(built(x), net(x), atol=1e-6)
    img = tmp_path / 'odd.png'
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
    assert main(['-i', str(img), '-o', str(tmp_path / 'o'), '--model_path', path, '--quiet', '--device', 'cpu']) == 0
    assert cv2.imread(str(tmp_path / 'o' / 'odd_out.png')).shape == (18, 14, 3)
    with pytest.raises(ValueError, match='recognised by spandrel only'):
        checkpoints.convert(path, str(tmp_path / 'c.pth'))


def test_our_families_win_where_both_recognise(tmp_path):
    pytest.importorskip('spandrel')
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=32)
    path = str(tmp_path / 'esrgan.pth')
    torch.save({'params_ema': net.state_dict()}, path)
    info = checkpoints.read(path)
    assert info.family == 'basicsr_rrdbnet' and info.arch_type == 'RRDBNet'  # spandrel knows it too (ESRGAN)
    assert spandrel_support.detect(info.state_dict) is not None


def test_without_spandrel_the_error_suggests_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(spandrel_support, 'available', lambda: False)
    path = str(tmp_path / 'mystery.pth')
    torch.save({'encoder.0.weight': torch.zeros(2, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match=r'pip install "srplugins\[spandrel\]"'):
        checkpoints.read(path)
