"""srplugins-data (srplugins/tools/data.py): make-lr equals basicsr's imresize rounded to the file type and an explicit
MATLAB per-axis reference, sub-images follow BasicSR's crop grid, meta_info files list / pair the images, and the
16-bit grey demo data keeps its depth."""
import cv2
import math
import numpy as np
import pytest

import srplugins  # noqa: F401

# isort: split
from basicsr.utils.matlab_functions import imresize

from srplugins.tools import data


def _cubic(x):
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.


def _matlab_axis_reference(img, scale, axis, peak):
    """MATLAB imresize (bicubic, antialiasing, symmetric border) along one axis, written out pixel by pixel from the
    definition: output pixel i samples u = (i + 1) / s + 0.5 (1 - 1 / s) (1-based), kernel widened by 1 / s."""
    src = np.moveaxis(img.astype(np.float64), axis, 0)
    n = src.shape[0]
    out_len = math.ceil(n * scale)
    out = np.zeros((out_len, ) + src.shape[1:])
    width = 4. / scale
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = range(left, left + int(math.ceil(width)) + 2 + 1)
        weights = np.array([scale * _cubic(scale * (u - j)) for j in taps])
        weights /= weights.sum()
        for j, wgt in zip(taps, weights):
            k = j - 1  # 0-based, mirrored at the borders (MATLAB 'symmetric')
            while k < 0 or k >= n:
                k = -k - 1 if k < 0 else 2 * n - k - 1
            out[i] += wgt * src[k]
    return np.moveaxis(np.clip(np.round(out), 0, peak), 0, axis)


def test_make_lr_equals_basicsr_imresize_rounded(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / 'hr').mkdir()
    rgb = rng.integers(0, 256, (26, 33, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (24, 30), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'hr' / 'rgb.png'), rgb)
    cv2.imwrite(str(tmp_path / 'hr' / 'grey16.png'), grey16)
    assert data.main(
        ['make-lr', '-i',
         str(tmp_path / 'hr'), '-o',
         str(tmp_path / 'lr'), '--scale', '3', '--name-tmpl', '{}x3']) == 0
    lr = cv2.imread(str(tmp_path / 'lr' / 'rgbx3.png'), cv2.IMREAD_UNCHANGED)
    expected = np.clip(np.round(imresize(rgb[:24, :33].astype(np.float64) / 255., 1 / 3) * 255), 0, 255)
    assert lr.dtype == np.uint8 and lr.shape == (8, 11, 3)
    np.testing.assert_array_equal(lr, expected.astype(np.uint8))
    lr16 = cv2.imread(str(tmp_path / 'lr' / 'grey16x3.png'), cv2.IMREAD_UNCHANGED)
    expected16 = np.clip(np.round(imresize(grey16.astype(np.float64) / 65535., 1 / 3) * 65535), 0, 65535)
    assert lr16.dtype == np.uint16 and lr16.shape == (8, 10)
    np.testing.assert_array_equal(lr16, expected16.astype(np.uint16))


@pytest.mark.parametrize('dtype,scale', [(np.uint8, 2), (np.uint8, 3), (np.uint16, 4)])
def test_matlab_uint8_mode_rounds_after_each_axis(dtype, scale):
    peak = np.iinfo(dtype).max
    img = np.random.default_rng(scale).integers(0, peak + 1, (12, 16, 3), dtype=dtype)
    expected = _matlab_axis_reference(_matlab_axis_reference(img, 1 / scale, 0, peak), 1 / scale, 1, peak)
    got = data.downscale(img, scale, 'matlab-uint8')
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected.astype(dtype))
    # and it is not the float path (the intermediate rounding changes some pixels)
    assert not np.array_equal(got, data.downscale(img, scale, 'basicsr-round')) or dtype == np.uint16


def test_subimages_follow_the_basicsr_grid(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / 'hr').mkdir()
    img = rng.integers(0, 65536, (50, 70), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'hr' / '0001x4.png'), img)
    # rows: 0, 16 and the flush crop 20 (remainder 50 - 46 = 4 > 1); columns 0, 16, 32 and 40 (remainder 8 > 1)
    assert data.crop_positions(50, 30, 16, 1) == [0, 16, 20]
    assert data.crop_positions(70, 30, 16, 1) == [0, 16, 32, 40]
    assert data.crop_positions(50, 30, 16, 4) == [0, 16]
    assert data.main([
        'subimages', '-i',
        str(tmp_path / 'hr'), '-o',
        str(tmp_path / 'sub'), '--crop-size', '30', '--step', '16', '--thresh-size', '1'
    ]) == 0
    names = sorted(p.name for p in (tmp_path / 'sub').iterdir())
    assert names == [f'0001_s{i:03d}.png' for i in range(1, 13)]
    crop = cv2.imread(str(tmp_path / 'sub' / '0001_s007.png'), cv2.IMREAD_UNCHANGED)  # row 1 (y 16), column 2 (x 32)
    np.testing.assert_array_equal(crop, img[16:46, 32:62])


def test_meta_info_unpaired_and_paired(tmp_path):
    for sub in ('gt/a', 'lq'):
        (tmp_path / sub).mkdir(parents=True)
    img = np.zeros((4, 4, 3), np.uint8)
    for name in ('gt/a/x.png', 'gt/y.png', 'lq/x.png', 'lq/y.png'):
        cv2.imwrite(str(tmp_path / name), img)
    assert data.main(['meta-info', '-i', str(tmp_path / 'gt'), '-o', str(tmp_path / 'meta' / 'm.txt')]) == 0
    assert (tmp_path / 'meta' / 'm.txt').read_text() == 'a/x.png\ny.png\n'
    assert data.main([
        'meta-info', '--paired', '-i',
        str(tmp_path / 'gt'),
        str(tmp_path / 'lq'), '--root',
        str(tmp_path),
        str(tmp_path), '-o',
        str(tmp_path / 'pairs.txt')
    ]) == 0
    assert (tmp_path / 'pairs.txt').read_text() == 'gt/a/x.png, lq/x.png\ngt/y.png, lq/y.png\n'
    cv2.imwrite(str(tmp_path / 'lq' / 'z.png'), img)
    with pytest.raises(ValueError, match="LQ only \\['z'\\]"):
        data.meta_info([str(tmp_path / 'gt'), str(tmp_path / 'lq')], str(tmp_path / 'p2.txt'), paired=True)


def test_gray16_demo_is_16_bit_single_channel(tmp_path, monkeypatch):
    # two photographs are enough to check the layout and the values
    monkeypatch.setattr(data, 'TRAIN_IMAGES', ('astronaut', ))
    monkeypatch.setattr(data, 'VAL_IMAGES', ('coffee', ))
    monkeypatch.chdir(tmp_path)
    assert data.main(['demo', '--gray16']) == 0
    root = tmp_path / 'datasets' / 'demo_gray16'
    hr = cv2.imread(str(root / 'train' / 'HR' / 'astronaut.png'), cv2.IMREAD_UNCHANGED)
    rgb = data.load_sample('astronaut').astype(np.float64)
    expected = np.round((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255. * 65535)
    assert hr.dtype == np.uint16 and hr.ndim == 2
    np.testing.assert_allclose(hr, expected, atol=1)  # float rounding order may move a half-way value by 1
    assert len(np.unique(hr)) > 256  # genuinely 16 bit
    for split, name in (('train', 'astronaut'), ('val', 'coffee')):
        for s in (2, 3, 4):
            lr = cv2.imread(str(root / split / 'LR_bicubic' / f'X{s}' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
            assert lr.dtype == np.uint16 and lr.ndim == 2
    lr4 = cv2.imread(str(root / 'train' / 'LR_bicubic' / 'X4' / 'astronaut.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(lr4, data.downscale(hr, 4))
