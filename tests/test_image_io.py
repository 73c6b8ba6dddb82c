"""Tests for srplugins.data.image_io: full-precision decoding, rgb / gray, and named errors for bad files."""
import cv2
import numpy as np
import pytest
from basicsr.utils import FileClient
from PIL import Image

import srplugins  # noqa: F401
from srplugins.data.image_io import color_option, decode_image, read_image, read_with_client


def _png(path, arr):
    assert cv2.imwrite(str(path), arr)
    return str(path)


def test_16_bit_grey_and_colour_keep_full_precision(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    out = read_image(_png(tmp_path / 'g16.png', grey16), color='gray')
    assert out.shape == (9, 11, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], grey16.astype(np.float32) / 65535)

    bgr16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    rgb = read_image(_png(tmp_path / 'c16.png', bgr16))
    np.testing.assert_array_equal(rgb, bgr16[..., ::-1].astype(np.float32) / 65535)
    # gray of a colour file: Rec. 601 luma in float, no 8-bit rounding
    gray = read_image(tmp_path / 'c16.png', color='gray')[..., 0]
    r, g, b = (bgr16[..., i].astype(np.float64) / 65535 for i in (2, 1, 0))
    np.testing.assert_allclose(gray, 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-6)
    # rgb of a grey file: three equal channels; 8-bit files / 255
    grey8 = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    out = read_image(_png(tmp_path / 'g8.png', grey8))
    assert out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out, np.repeat(grey8[..., None], 3, 2).astype(np.float32) / 255)


def test_float_tiff_is_clipped_and_non_finite_pixels_are_named(tmp_path):
    arr = np.full((6, 7), 0.25, np.float32)
    arr[0, 0] = 1.5
    path = tmp_path / 'f.tif'
    Image.fromarray(arr, mode='F').save(path)
    out = read_image(str(path), color='gray')
    assert out[0, 0, 0] == 1 and out[1, 1, 0] == 0.25
    arr[2, 3] = np.nan
    Image.fromarray(arr, mode='F').save(path)
    with pytest.raises(ValueError, match=r'f\.tif \(from dataroot_lq\).*1 non-finite'):
        read_image(str(path), option='dataroot_lq')
    arr[2, 3] = np.inf
    Image.fromarray(arr, mode='F').save(path)
    with pytest.raises(ValueError, match='non-finite'):
        read_image(str(path))


def test_broken_files_name_the_file_and_option(tmp_path):
    good = cv2.imencode('.png', np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    (tmp_path / 'trunc.png').write_bytes(good[:len(good) // 2])
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.png').write_text('not an image')
    with pytest.raises(ValueError, match=r'trunc\.png \(from dataroot_gt\).*truncated, corrupt or not an image'):
        read_image(str(tmp_path / 'trunc.png'), option='dataroot_gt')
    with pytest.raises(ValueError, match=r'empty\.png.*empty \(0 bytes\)'):
        read_image(str(tmp_path / 'empty.png'))
    with pytest.raises(ValueError, match=r'text\.png.*not an image'):
        read_image(str(tmp_path / 'text.png'))
    with pytest.raises(FileNotFoundError, match='missing.png'):
        read_image(str(tmp_path / 'missing.png'))
    # through basicsr's FileClient (the lmdb / disk backend path of the datasets)
    client = FileClient('disk')
    with pytest.raises(ValueError, match='trunc.png'):
        read_with_client(client, str(tmp_path / 'trunc.png'), 'gt', 'gray', 'dataroot_gt')
    with pytest.raises(ValueError, match='missing.png'):
        read_with_client(client, str(tmp_path / 'missing.png'), 'gt', 'gray', 'dataroot_gt')


def test_tiff_16_bit_and_alpha(tmp_path):
    # 16-bit grey TIFF written by PIL (mode I;16)
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    Image.fromarray(arr).save(tmp_path / 'p.tif')
    np.testing.assert_array_equal(read_image(str(tmp_path / 'p.tif'), 'gray')[..., 0], arr.astype(np.float32) / 65535)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    with pytest.warns(UserWarning, match='alpha'):
        assert read_image(_png(tmp_path / 'a.png', rgba)).shape == (4, 4, 3)
    with pytest.raises(ValueError, match='color'):
        decode_image(b'x', 'x.png', color='y')


def test_color_option():
    assert color_option({}, 'X') == 'rgb' and color_option({'color': 'gray'}, 'X') == 'gray'
    with pytest.raises(ValueError, match="X: datasets option color must be one of .*'grey'"):
        color_option({'color': 'grey'}, 'X')
