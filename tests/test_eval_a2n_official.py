"""scripts/eval_a2n_official.py: LR modes (the MATLAB-uint8 resize itself is tested in tests/test_tools_data.py), LR
file naming and the whole evaluation on a tiny synthetic HR set with a randomly initialised A2N (no released weights
needed)."""
import cv2
import numpy as np
import os.path as osp
import pytest
import torch
from basicsr.metrics import calculate_psnr
from basicsr.utils.matlab_functions import imresize

import srplugins  # noqa: F401
from srplugins.archs.a2n_arch import A2N
from tests.conftest import load_script


@pytest.fixture(scope='module')
def script():
    return load_script('eval_a2n_official')


def _round_uint8(img01):
    return np.clip(np.round(img01 * 255.), 0, 255).astype(np.uint8)


def test_lr_modes(script):
    hr = np.random.default_rng(1).integers(0, 256, (24, 18, 3)).astype(np.uint8)
    exact = imresize(hr.astype(np.float32) / 255., 1 / 3)
    as_float = script.make_lr(hr, 3, 'basicsr-float')
    rounded = script.make_lr(hr, 3, 'basicsr-round')
    matlab = script.make_lr(hr, 3, 'matlab-uint8')
    for lr in (as_float, rounded, matlab):
        assert lr.shape == (8, 6, 3) and lr.dtype == np.float32
    assert np.allclose(as_float, exact, atol=1e-6)
    assert np.array_equal(rounded, _round_uint8(exact).astype(np.float32) / 255.)
    # rounding between the two passes moves some values by one level, never more
    assert np.array_equal(np.round(matlab * 255.), matlab * 255.)
    assert np.abs(matlab - rounded).max() * 255. <= 1 + 1e-4 and (matlab != rounded).any()


def test_find_lr_file_names(script, tmp_path):
    for name in ('a.png', 'bx2.png', 'c_x2.png'):
        cv2.imwrite(str(tmp_path / name), np.zeros((2, 2, 3), np.uint8))
    assert script.find_lr_file(str(tmp_path), 'a.png', 2) == osp.join(str(tmp_path), 'a.png')
    assert script.find_lr_file(str(tmp_path), 'b.png', 2) == osp.join(str(tmp_path), 'bx2.png')
    assert script.find_lr_file(str(tmp_path), 'c.png', 2) == osp.join(str(tmp_path), 'c_x2.png')
    with pytest.raises(FileNotFoundError, match='dx2.png'):
        script.find_lr_file(str(tmp_path), 'd.png', 2)


def test_main_random_a2n_save_lr_and_files_mode(script, tmp_path, capsys):
    torch.manual_seed(0)
    net = A2N(upscale=2).eval()  # the official hyper-parameters, random weights
    weights = tmp_path / 'aan_x2.pt'
    torch.save(net.state_dict(), weights)  # raw state dict, as the authors' files
    hr_dir = tmp_path / 'HR'
    hr_dir.mkdir()
    rng = np.random.default_rng(2)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (41, 37, 3)).astype(np.uint8), (5, 5), 2)
    cv2.imwrite(str(hr_dir / 'odd.png'), smooth)  # odd size: mod-cropped to 40 x 36
    cv2.imwrite(str(hr_dir / 'even.png'), smooth[:36, :32])

    lr_dir, sr_dir = tmp_path / 'LR', tmp_path / 'SR'
    mean = script.main([
        '--weights',
        str(weights), '--scale', '2', '--hr',
        str(hr_dir), '--save-lr',
        str(lr_dir), '--save-sr',
        str(sr_dir), '--device', 'cpu'
    ])
    assert 'Average x2 (2 images, LR basicsr-round' in capsys.readouterr().out
    assert sorted(p.name for p in lr_dir.iterdir()) == ['evenx2.png', 'oddx2.png']  # EDSR benchmark naming
    lr = cv2.imread(str(lr_dir / 'oddx2.png'))
    hr_rgb = smooth[:40, :36, ::-1].copy()
    assert np.array_equal(lr[..., ::-1], _round_uint8(imresize(hr_rgb.astype(np.float32) / 255., 1 / 2)))

    # the reported A2N PSNR is basicsr's on the uint8 SR of this LR (Y, crop = scale)
    with torch.no_grad():
        x = torch.from_numpy(lr[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy() / 255.)[None]
        sr_rgb = net(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    sr_bgr = _round_uint8(sr_rgb)[..., ::-1]
    assert np.array_equal(cv2.imread(str(sr_dir / 'odd.png')), sr_bgr)
    psnr_odd = calculate_psnr(sr_bgr, smooth[:40, :36], crop_border=2, test_y_channel=True)
    sr_even = cv2.imread(str(sr_dir / 'even.png'))
    psnr_even = calculate_psnr(sr_even, smooth[:36, :32], crop_border=2, test_y_channel=True)
    assert mean[0] == pytest.approx((psnr_odd + psnr_even) / 2, abs=1e-6)
    assert len(mean) == 4 and np.isfinite(mean).all()

    # reading those LR files back (--lr-mode files, "<stem>x2.png") gives the same numbers
    again = script.main([
        '--weights',
        str(weights), '--scale', '2', '--hr',
        str(hr_dir), '--lr-mode', 'files', '--lr',
        str(lr_dir), '--device', 'cpu'
    ])
    assert np.allclose(again, mean, atol=1e-9)
    # matlab-uint8 LR differs slightly from basicsr-round LR
    other = script.main([
        '--weights',
        str(weights), '--scale', '2', '--hr',
        str(hr_dir), '--lr-mode', 'matlab-uint8', '--device', 'cpu'
    ])
    assert not np.allclose(other, mean, atol=1e-9) and abs(other[2] - mean[2]) < 0.5

    # bf16 autocast on the CPU: the same protocol, PSNR within 0.3 dB of float32; x8 self-ensemble runs too
    bf16 = script.main(
        ['--weights',
         str(weights), '--scale', '2', '--hr',
         str(hr_dir), '--device', 'cpu', '--precision', 'bf16'])
    assert abs(bf16[0] - mean[0]) < 0.3 and bf16[2] == mean[2]
    ens = script.main(['--weights', str(weights), '--scale', '2', '--hr', str(hr_dir), '--device', 'cpu', '--ensemble'])
    assert np.isfinite(ens).all() and ens[0] != mean[0]
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        script.main(
            ['--weights',
             str(weights), '--scale', '2', '--hr',
             str(hr_dir), '--device', 'cpu', '--precision', 'fp16'])
    # weights of another architecture or variant are refused by the checkpoint detection, naming --weights
    with pytest.raises(ValueError, match='--non-attention-kernel'):
        script.main([
            '--weights',
            str(weights), '--scale', '2', '--hr',
            str(hr_dir), '--device', 'cpu', '--non-attention-kernel', '1'
        ])
