"""Inference switches: x8 self-ensemble, channels_last, bf16 / fp16 autocast, --tile auto; tiler equals untiled."""
import numpy as np
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from torch import nn

import srplugins  # noqa: F401
from srplugins.inference import Upscaler, ensemble_forward, tile_forward
from srplugins.inference.cli import main


def _net(scale=2):
    torch.manual_seed(0)
    return RRDBNet(3, 3, scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()


def test_ensemble_is_the_mean_over_the_dihedral_group():
    net = _net(4)
    x = torch.rand(1, 3, 7, 5)
    # reference: the 8 elements as rotations of x and of its transpose (another parametrisation of the same group)
    outs = []
    for base, undo_t in ((x, False), (x.transpose(-2, -1), True)):
        for k in range(4):
            y = torch.rot90(net(torch.rot90(base, k, (-2, -1))), -k, (-2, -1))
            outs.append(y.transpose(-2, -1) if undo_t else y)
    with torch.no_grad():
        expected = torch.stack(outs).mean(0)
        got = ensemble_forward(net, x)
    assert got.shape == (1, 3, 28, 20)
    assert (got - expected).abs().max() < 1e-6
    up = nn.Upsample(scale_factor=2, mode='nearest')  # flip / transpose equivariant: the ensemble changes nothing
    assert torch.allclose(ensemble_forward(up, x), up(x))


def test_upscaler_ensemble_channels_last_and_bf16_against_plain():
    net = _net(2)
    img = np.random.default_rng(0).integers(0, 256, (10, 8, 3), dtype=np.uint8)
    plain = Upscaler(net, 2, size_multiple=2, device='cpu').enhance(img)[0].astype(int)
    cl = Upscaler(net, 2, size_multiple=2, device='cpu', channels_last=True).enhance(img)[0].astype(int)
    assert np.abs(cl - plain).max() <= 1  # rounding of float sums in another order
    ens = Upscaler(net, 2, size_multiple=2, device='cpu', ensemble=True)
    out = ens.enhance(img)[0]
    x = torch.from_numpy(img[..., ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    ref = ensemble_forward(net, x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)[..., ::-1]
    assert np.abs(out.astype(float) - (ref * 255 + 0.5).astype(np.uint8)).max() <= 1
    bf16 = Upscaler(net, 2, size_multiple=2, device='cpu', precision='bf16').enhance(img)[0].astype(int)
    assert np.abs(bf16 - plain).mean() < 3  # bf16 keeps 8 bits of mantissa


def test_fp16_on_cpu_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        Upscaler(_net(), 2, device='cpu', precision='fp16')
    model = str(tmp_path / 'tiny_x2.pth')
    torch.save({'params': _net().state_dict()}, model)
    img = tmp_path / 'a.png'
    import cv2
    cv2.imwrite(str(img), np.zeros((4, 4, 3), np.uint8))
    assert main(
        ['-i',
         str(img), '-o',
         str(tmp_path / 'o'), '--model_path', model, '--device', 'cpu', '--precision', 'fp16']) == 2
    assert 'fp16 needs a CUDA device' in capsys.readouterr().err
    assert main([
        '-i',
        str(img), '-o',
        str(tmp_path / 'o'), '--model_path', model, '--device', 'cpu', '--precision', 'bf16', '--channels_last',
        '--ensemble', '--quiet', '--tile', 'auto'
    ]) == 0
    assert 'precision: bf16, channels_last: True' in capsys.readouterr().out


@pytest.mark.parametrize('scale,multiple,size,tile,pad', [(4, 1, (37, 29), 8, 6), (2, 2, (45, 39), 10, 24),
                                                          (0.25, 4, (70, 52), 16, 24)])
def test_tiles_equal_untiled_within_1e6(scale, multiple, size, tile, pad):
    torch.manual_seed(0)
    if scale < 1:
        from basicsr.utils.registry import ARCH_REGISTRY
        net = ARCH_REGISTRY.get('DASRDownsampler')(num_feat=8, num_block=1, scale=4).eval()
    else:
        net = RRDBNet(3, 3, scale=scale, num_feat=4, num_block=1, num_grow_ch=2).eval()
    x = torch.rand(1, 3, *size)
    whole = tile_forward(net, x, scale=scale, size_multiple=multiple)
    pieces = []
    tiled = tile_forward(net, x, tile=tile, tile_pad=pad, scale=scale, size_multiple=multiple)
    tile_forward(
        net,
        x,
        tile=tile,
        tile_pad=pad,
        scale=scale,
        size_multiple=multiple,
        sink=lambda y, x0, p: pieces.append((y, x0, p.shape[-2:])))
    assert whole.shape == tiled.shape == (1, 3, round(size[0] * scale), round(size[1] * scale))
    assert (whole - tiled).abs().max() < 1e-6
    assert len(pieces) >= 4 and sum(h * w for _, _, (h, w) in pieces) == whole.shape[-1] * whole.shape[-2]
