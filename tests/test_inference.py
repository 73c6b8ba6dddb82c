"""Inference: tiles vs whole image, size multiples, outscale, image modes and depths, folder handling, failures."""
import cv2
import numpy as np
import os
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

import srplugins  # noqa: F401
from srplugins.inference import TileInferenceError, Upscaler, enhance, read_image, run_network, write_image
from srplugins.inference.cli import main


class TinySR(nn.Module):
    """Two 3x3 convs + pixel shuffle: receptive-field radius 2 input pixels."""

    def __init__(self, scale=2, unshuffle=1):
        super().__init__()
        self.scale, self.unshuffle = scale, unshuffle
        ch = 3 * unshuffle**2
        self.conv1 = nn.Conv2d(ch, 8, 3, 1, 1)
        self.conv2 = nn.Conv2d(8, 3 * (scale * unshuffle)**2, 3, 1, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        return F.pixel_shuffle(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), self.scale * self.unshuffle)


class NearestSwap(nn.Module):
    """Nearest x2 upsampling that zeroes the network's channel 0 (R in RGB): exposes channel-order mistakes."""

    def forward(self, x):
        out = F.interpolate(x, scale_factor=2, mode='nearest')
        return torch.cat([torch.zeros_like(out[:, :1]), out[:, 1:]], dim=1)


def _up2(img):
    return np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)


# ----------------------------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize('unshuffle,tile_pad,size', [(1, 4, (37, 29)), (2, 12, (45, 39))])
def test_tiles_equal_whole_image_for_small_receptive_field(unshuffle, tile_pad, size):
    # blending weights vanish within tile_pad / 2 of inner tile edges, so a receptive-field radius <= tile_pad / 2
    # (2 px for TinySR, 4-5 px with the 2x pixel-unshuffle) gives exactly the untiled output
    torch.manual_seed(0)
    net = TinySR(scale=2, unshuffle=unshuffle).eval()
    x = torch.rand(1, 3, *size)
    whole = run_network(net, x, 2, tile=0, size_multiple=unshuffle)
    net.calls = 0
    tiled = run_network(net, x, 2, tile=8, tile_pad=tile_pad, size_multiple=unshuffle)
    assert net.calls >= 4  # really tiled in both directions
    assert whole.shape == tiled.shape == (1, 3, size[0] * 2, size[1] * 2)
    assert (whole - tiled).abs().max() < 1e-5


def test_tiles_rrdbnet_x2_within_one_level_and_no_seams():
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    x = torch.rand(1, 3, 41, 35)
    whole = run_network(net, x, 2, size_multiple=2).clamp(0, 1)
    tiled = run_network(net, x, 2, tile=8, tile_pad=8, size_multiple=2).clamp(0, 1)
    assert tiled.shape == whole.shape == (1, 3, 82, 70)
    assert (whole - tiled).abs().max() < 1 / 255


def test_downsampler_tiles():
    if 'DASRDownsampler' not in ARCH_REGISTRY:
        pytest.skip('DASRDownsampler not registered yet')
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('DASRDownsampler')(num_feat=8, num_block=1, scale=4).eval()
    x = torch.rand(1, 3, 70, 52)
    whole = run_network(net, x, 0.25, size_multiple=4)
    tiled = run_network(net, x, 0.25, tile=16, tile_pad=24, size_multiple=4)
    assert whole.shape == tiled.shape == (1, 3, 18, 13)
    assert (whole - tiled).abs().max() < 1e-5


# ----------------------------------------------------------------------------------------------------------------- #
def test_enhance_bgr_order_uint8_and_outscale():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out, mode = enhance(NearestSwap(), img, 2)
    expected = _up2(img)
    expected[..., 2] = 0  # network channel 0 is R, i.e. BGR channel 2
    assert mode == 'RGB' and out.dtype == np.uint8 and np.array_equal(out, expected)

    out, _ = enhance(nn.Upsample(scale_factor=2, mode='nearest'), img, 2, outscale=3)
    assert out.shape == (27, 21, 3)
    out, _ = enhance(nn.Upsample(scale_factor=2, mode='nearest'), img, 2, outscale=1.5)
    assert out.shape == (14, 10, 3)


def test_enhance_grayscale_rgba_and_16bit_round_trip(tmp_path):
    up = nn.Upsample(scale_factor=2, mode='nearest')
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    out, mode = enhance(up, gray, 2)
    assert mode == 'L' and out.shape == (16, 12) and np.array_equal(out, _up2(gray))

    # 16-bit with small values stays 16-bit (Real-ESRGAN decides by max > 256)
    low16 = rng.integers(0, 200, (5, 4, 3)).astype(np.uint16)
    out, _ = enhance(up, low16, 2)
    assert out.dtype == np.uint16 and np.array_equal(out, _up2(low16))

    rgba16 = rng.integers(0, 65536, (6, 5, 4)).astype(np.uint16)
    rgba16[..., 3] = 40000
    for alpha_upsampler in ('network', 'bicubic'):
        out, mode = enhance(up, rgba16, 2, alpha_upsampler=alpha_upsampler)
        assert mode == 'RGBA' and out.dtype == np.uint16 and out.shape == (12, 10, 4)
        assert np.array_equal(out[..., :3], _up2(rgba16[..., :3]))
        assert np.abs(out[..., 3].astype(int) - 40000).max() <= 1

    path = str(tmp_path / 'ü_rgba16.png')  # non-ASCII name
    write_image(path, out)
    back = read_image(path)
    assert back.dtype == np.uint16 and np.array_equal(back, out)


def test_cpu_forces_fp32_and_tile_failure_propagates_with_hint():
    with pytest.warns(UserWarning, match='float32'):
        ups = Upscaler(TinySR(), 2, device='cpu', half=True)
    assert not ups.half and next(ups.net.parameters()).dtype == torch.float32
    out, _ = ups.enhance(np.zeros((8, 8, 3), np.uint8))
    assert out.shape == (16, 16, 3)

    class Exploding(nn.Module):

        def forward(self, x):
            if x.shape[-1] > 20:
                raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')
            return F.interpolate(x, scale_factor=2)

    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(TileInferenceError, match=r'--tile 512') as err:
        enhance(Exploding(), img, 2)
    assert isinstance(err.value.__cause__, RuntimeError)
    with pytest.raises(TileInferenceError, match=r'--tile 32'):
        enhance(Exploding(), img, 2, tile=24, tile_pad=8)
    out, _ = enhance(Exploding(), img, 2, tile=8, tile_pad=4)  # small enough tiles work
    assert out.shape == (80, 80, 3)


def test_upscaler_maps_minus_one_to_one_outputs():

    class TanhLike(nn.Module):
        output_range = (-1, 1)

        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode='nearest') * 2 - 1

    img = np.random.default_rng(3).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    out, _ = Upscaler(TanhLike(), 2, device='cpu').enhance(img)
    assert np.array_equal(out, _up2(img))


# ----------------------------------------------------------------------------------------------------------------- #
def _tiny_rrdb_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=2, num_feat=4, num_block=1, num_grow_ch=4)
    path = str(tmp_path / 'tiny_x2.pth')
    torch.save({'params_ema': net.state_dict()}, path)
    return net, path


def test_cli_folder_with_modes_and_broken_entries(tmp_path, capsys):
    net, model_path = _tiny_rrdb_checkpoint(tmp_path)
    src = tmp_path / 'in'
    (src / 'subfolder').mkdir(parents=True)
    rng = np.random.default_rng(2)
    color = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(src / 'color.png'), color)
    cv2.imwrite(str(src / 'gray.png'), rng.integers(0, 256, (8, 6), dtype=np.uint8))
    cv2.imwrite(str(src / 'rgba16.png'), rng.integers(0, 65536, (6, 6, 4)).astype(np.uint16))
    cv2.imwrite(str(src / 'photo.jpg'), color)
    (src / 'notes.txt').write_text('not an image')
    (src / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)

    out_dir = tmp_path / 'out'
    with pytest.warns(UserWarning, match='Skipping'):
        code = main([
            '-i',
            str(src), '-o',
            str(out_dir), '--model_path', model_path, '--quiet', '--tile', '4', '--tile_pad', '4'
        ])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'written: 4 file(s)' in printed and 'skipped: 3' in printed and 'precision: fp32' in printed
    assert sorted(os.listdir(out_dir)) == ['color_out.png', 'gray_out.png', 'photo_out.jpg', 'rgba16_out.png']
    gray = read_image(str(out_dir / 'gray_out.png'))
    rgba = read_image(str(out_dir / 'rgba16_out.png'))
    assert gray.shape == (16, 12) and gray.dtype == np.uint8
    assert rgba.shape == (12, 12, 4) and rgba.dtype == np.uint16

    # the CLI result equals the network applied directly (tiles of 4 + padding 4 at size multiple 2)
    x = torch.from_numpy(color[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy() / 255.)[None]
    with torch.no_grad():
        ref = run_network(net.eval(), x, 2, size_multiple=2).clamp(0, 1)[0].numpy().transpose(1, 2, 0)[..., ::-1]
    got = read_image(str(out_dir / 'color_out.png')).astype(np.float32) / 255.
    assert np.abs(got - ref).max() <= 1 / 255 + 1e-6


def test_cli_option_file_and_errors(tmp_path, capsys):
    _, model_path = _tiny_rrdb_checkpoint(tmp_path)
    opt = tmp_path / 'test.yml'
    opt.write_text('name: tiny\nscale: 2\nnetwork_g:\n  type: RRDBNet\n  num_in_ch: 3\n  num_out_ch: 3\n  scale: 2\n'
                   '  num_feat: 4\n  num_block: 1\n  num_grow_ch: 4\n'
                   f'path:\n  pretrain_network_g: {model_path}\n  param_key_g: params_ema\n')
    img_path = tmp_path / 'a.png'
    cv2.imwrite(str(img_path), np.full((5, 7, 3), 100, np.uint8))
    assert main([
        '-i',
        str(img_path), '-o',
        str(tmp_path / 'o'), '--opt',
        str(opt), '--quiet', '-s', '3', '--suffix', '', '--ext', 'png'
    ]) == 0
    assert read_image(str(tmp_path / 'o' / 'a.png')).shape == (15, 21, 3)

    disc = ARCH_REGISTRY.get('UNetDiscriminatorSN_basicsr')(3, num_feat=4)
    d_path = str(tmp_path / 'netD.pth')
    torch.save({'params': disc.state_dict()}, d_path)
    assert main(['-i', str(img_path), '--model_path', d_path, '--quiet']) == 2
    assert 'discriminator' in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------- #
#  --opt: scale checks and clear errors (exit code 2, no traceback)
# ----------------------------------------------------------------------------------------------------------------- #
def _write_opt(tmp_path, network_g, weights, scale=2, name='test.yml'):
    lines = [f'name: tiny\nscale: {scale}\nnetwork_g:\n']
    lines += [f'  {k}: {v}\n' for k, v in network_g.items()]
    lines += [f'path:\n  pretrain_network_g: {weights}\n']
    path = tmp_path / name
    path.write_text(''.join(lines))
    return str(path)


def _tiny_a2n_opt(tmp_path, weights_name, scale=2):
    """A2N x2 and x3 weights have identical shapes: a file named for another scale would load silently."""
    torch.manual_seed(0)
    net_g = dict(type='A2N', num_feat=8, num_up_feat=4, num_block=2, upscale=scale)
    net = ARCH_REGISTRY.get('A2N')(**{k: v for k, v in net_g.items() if k != 'type'})
    weights = str(tmp_path / weights_name)
    torch.save(net.state_dict(), weights)
    return _write_opt(tmp_path, net_g, weights, scale=scale), weights


def _image(tmp_path, size=(5, 7)):
    path = tmp_path / 'a.png'
    cv2.imwrite(str(path), np.full(size + (3, ), 100, np.uint8))
    return str(path)


def test_cli_opt_refuses_checkpoint_named_for_another_scale(tmp_path, capsys):
    opt, weights = _tiny_a2n_opt(tmp_path, 'aan_x3.pt', scale=2)
    img = _image(tmp_path)
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'path.pretrain_network_g' in err and weights in err and opt in err and 'x3' in err
    assert 'Traceback' not in err and not (tmp_path / 'o').exists()

    # the same through --opt_model_path, named as such
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--opt_model_path', weights, '--quiet']) == 2
    assert '--opt_model_path' in capsys.readouterr().err

    # a file named for the right scale loads
    right = str(tmp_path / 'aan_x2.pt')
    os.replace(weights, right)
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--opt_model_path', right, '--quiet']) == 0
    assert read_image(str(tmp_path / 'o' / 'a_out.png')).shape == (10, 14, 3)


def test_cli_opt_scale_argument_must_agree(tmp_path, capsys):
    opt, _ = _tiny_a2n_opt(tmp_path, 'aan_x2.pt', scale=2)
    img = _image(tmp_path)
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--scale', '3', '--quiet']) == 2
    err = capsys.readouterr().err
    assert '--scale 3 conflicts' in err and opt in err
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--scale', '2', '--quiet']) == 0


def test_cli_opt_shape_mismatch_and_unknown_type_are_messages(tmp_path, capsys):
    _, model_path = _tiny_rrdb_checkpoint(tmp_path)  # num_feat 4
    img = _image(tmp_path)
    net_g = dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    opt = _write_opt(tmp_path, net_g, model_path)
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'do not fit network_g (RRDBNet)' in err and 'size mismatch' in err and opt in err and model_path in err
    assert 'Traceback' not in err

    opt = _write_opt(tmp_path, dict(net_g, type='RRDBNett'), model_path, name='typo.yml')
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--quiet']) == 2
    err = capsys.readouterr().err
    assert "network_g.type 'RRDBNett' is not a registered architecture" in err and 'Did you mean RRDBNet' in err
    assert opt in err

    opt = _write_opt(tmp_path, dict(net_g, num_feats=4), model_path, name='kwarg.yml')
    assert main(['-i', img, '-o', str(tmp_path / 'o'), '--opt', opt, '--quiet']) == 2
    assert 'cannot be built from its options' in capsys.readouterr().err


def test_swinir_window_size_multiple_on_odd_image(tmp_path):
    # basicsr's SwinIR needs sides that are multiples of window_size (it does not pad); the option file's
    # window_size becomes the size multiple, so an odd-sized image gives exactly scale x its size
    from srplugins.checkpoints import size_multiple_of
    net_g = dict(
        type='SwinIR',
        upscale=2,
        in_chans=3,
        img_size=8,
        window_size=4,
        img_range=1.,
        depths=[1],
        embed_dim=8,
        num_heads=[1],
        mlp_ratio=1,
        upsampler='pixelshuffledirect')
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('SwinIR')(**{k: v for k, v in net_g.items() if k != 'type'}).eval()
    weights = str(tmp_path / 'swinir_x2.pth')
    torch.save({'params': net.state_dict()}, weights)
    with pytest.raises(RuntimeError):
        net(torch.rand(1, 3, 9, 7))
    opt = _write_opt(tmp_path, {k: (str(v) if isinstance(v, list) else v) for k, v in net_g.items()}, weights)
    img_path = tmp_path / 'odd.png'
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(img_path), img)
    for tile, out_dir in ((0, 'whole'), (4, 'tiled')):
        code = main([
            '-i',
            str(img_path), '-o',
            str(tmp_path / out_dir), '--opt', opt, '--quiet', '--tile',
            str(tile), '--tile_pad', '4', '--device', 'cpu'
        ])
        assert code == 0
        assert read_image(str(tmp_path / out_dir / 'odd_out.png')).shape == (18, 14, 3)
    assert size_multiple_of('SwinIR', {'window_size': 4}) == 4
    assert size_multiple_of('SwinIR', {}) == 7  # the constructor's default window_size
    assert size_multiple_of('RRDBNet', {'scale': 2, 'window_size': 8}) == 16  # pixel-unshuffle x window

    class HATLike(nn.Module):
        window_size = 16

    assert size_multiple_of('HATLike', {}, HATLike()) == 16
    assert size_multiple_of('RRDBNet', {'scale': 4}) == 1


# ----------------------------------------------------------------------------------------------------------------- #
#  enhance leaves the caller's network alone; grey + alpha PNGs round-trip
# ----------------------------------------------------------------------------------------------------------------- #
def test_enhance_does_not_modify_the_callers_network(monkeypatch):
    torch.manual_seed(0)
    net = TinySR().eval().double()  # float64: enhance computes in float32
    before = {k: v.clone() for k, v in net.state_dict().items()}
    img = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    out, _ = enhance(net, img, 2, half=True)  # half is ignored on the CPU: float32
    assert out.shape == (12, 10, 3)
    assert all(p.dtype == torch.float64 and p.device.type == 'cpu' for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    ref = Upscaler(TinySR().eval(), 2, device='cpu')
    ref.net.load_state_dict({k: v.float() for k, v in before.items()})
    assert np.array_equal(out, ref.enhance(img)[0])

    # a network already in place (as Upscaler arranges) is used as is, without a copy
    def no_copy(*args, **kwargs):
        raise AssertionError('unexpected copy')

    monkeypatch.setattr('srplugins.inference.images.copy.deepcopy', no_copy)
    ref.enhance(img)
    if torch.cuda.is_available():
        monkeypatch.undo()
        enhance(net, img, 2, device='cuda', half=True)
        assert all(p.device.type == 'cpu' and p.dtype == torch.float64 for p in net.parameters())


def test_grey_alpha_png_round_trips_as_grey_alpha(tmp_path, capsys):
    from PIL import Image
    up = nn.Upsample(scale_factor=2, mode='nearest')
    rng = np.random.default_rng(5)
    for dtype, top in ((np.uint8, 256), (np.uint16, 65536)):
        la = rng.integers(0, top, (6, 5, 2)).astype(dtype)
        out, mode = enhance(up, la, 2, alpha_upsampler='bicubic')
        assert mode == 'LA' and out.dtype == dtype and out.shape == (12, 10, 2)
        assert np.array_equal(out[..., 0], _up2(la[..., 0]))
        path = str(tmp_path / f'la_{np.dtype(dtype).itemsize * 8}.png')
        write_image(path, out)
        assert np.array_equal(read_image(path, grey_alpha=True), out)
        assert read_image(path).shape == (12, 10, 4)  # OpenCV's own layout by default

    # the CLI: a grey + alpha PNG written by another tool comes back grey + alpha at twice the size
    _, model_path = _tiny_rrdb_checkpoint(tmp_path)
    src = tmp_path / 'in'
    src.mkdir()
    grey = rng.integers(0, 256, (7, 6), dtype=np.uint8)
    alpha = np.full((7, 6), 200, np.uint8)
    Image.fromarray(np.stack([grey, alpha], axis=2), 'LA').save(str(src / 'logo.png'))
    assert main([
        '-i',
        str(src), '-o',
        str(tmp_path / 'out'), '--model_path', model_path, '--quiet', '--alpha_upsampler', 'bicubic'
    ]) == 0
    written = tmp_path / 'out' / 'logo_out.png'
    with Image.open(str(written)) as result:
        assert result.mode == 'LA' and result.size == (12, 14)
    back = read_image(str(written), grey_alpha=True)
    assert back.shape == (14, 12, 2) and np.abs(back[..., 1].astype(int) - 200).max() <= 1


def test_cli_opt_downsampler_writes_the_small_image(tmp_path):
    # a DASR down-sampler's `scale: 4` is its down-sampling factor: the option file route gives 1/4-size outputs,
    # tiled or not (tiles assume the real output / input ratio)
    if 'DASRDownsampler' not in ARCH_REGISTRY:
        pytest.skip('DASRDownsampler not registered yet')
    net_g = dict(type='DASRDownsampler', num_feat=8, num_block=1, scale=4)
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('DASRDownsampler')(num_feat=8, num_block=1, scale=4)
    weights = str(tmp_path / 'dsn_x4.pth')
    torch.save({'params': net.state_dict()}, weights)
    opt = _write_opt(tmp_path, net_g, weights, scale=4)
    img = _image(tmp_path, (40, 36))
    for tile in (0, 16):
        out_dir = tmp_path / f'o{tile}'
        assert main(['-i', img, '-o',
                     str(out_dir), '--opt', opt, '--quiet', '--tile',
                     str(tile), '--tile_pad', '4']) == 0
        assert read_image(str(out_dir / 'a_out.png')).shape == (10, 9, 3)
