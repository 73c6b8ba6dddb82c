"""Tests for srplugins.data.dasr_dataset."""
import cv2
import numpy as np
import os
import os.path as osp
import pytest
import random
import torch
import warnings
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from PIL import Image

import srplugins  # noqa: F401
from srplugins.data.dasr_dataset import DASRPairedDataset, DASRUnpairedDataset
from srplugins.data.image_io import read_image


def _save(arr, path, mode=None):
    arr = np.asarray(arr)
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    img.save(path)
    return path


def _rand_img(rng, h, w, c=3):
    return rng.integers(0, 256, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def test_registered():
    assert DATASET_REGISTRY.get('DASRUnpairedDataset') is DASRUnpairedDataset
    assert DATASET_REGISTRY.get('DASRPairedDataset') is DASRPairedDataset


def test_read_image_modes(tmp_path):
    rng = np.random.default_rng(0)
    gray = _rand_img(rng, 5, 6, 1)
    out = read_image(_save(gray, tmp_path / 'g.png'))
    assert out.shape == (5, 6, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 1], gray / 255.0)
    rgba = _rand_img(rng, 5, 6, 4)
    with pytest.warns(UserWarning, match='alpha'):
        out = read_image(_save(rgba, tmp_path / 'a.png'))
    np.testing.assert_allclose(out, rgba[..., :3] / 255.0)
    deep = (rng.integers(0, 65536, size=(4, 4))).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / 'd.png')
    out = read_image(tmp_path / 'd.png')
    np.testing.assert_allclose(out[..., 0], deep / 65535.0, atol=1e-6)


def test_unpaired_dataset(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / 'hr').mkdir()
    (tmp_path / 'lr').mkdir()
    _save(_rand_img(rng, 40, 36), tmp_path / 'hr' / 'a.png')
    _save(_rand_img(rng, 40, 44, 1), tmp_path / 'hr' / 'b.png')  # grayscale HR
    for i in range(3):
        _save(_rand_img(rng, 12, 14), tmp_path / 'lr' / f'{i}.png')
    _save(_rand_img(rng, 12, 12, 4), tmp_path / 'lr' / 'rgba.png')
    opt = dict(
        dataroot_lq=str(tmp_path / 'lr'),
        dataroot_gt=str(tmp_path / 'hr'),
        scale=4,
        gt_size=32,
        use_hflip=True,
        use_rot=True,
        phase='train')
    ds = DASRUnpairedDataset(opt)
    assert len(ds) == 4  # number of real LR (source) images
    random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        items = [ds[i] for i in range(4)]
    for item in items:
        assert item['gt'].shape == (3, 32, 32)
        assert item['lq_real'].shape == (3, 8, 8) and item['lq_bicubic'].shape == (3, 8, 8)
        ref = np.clip(imresize(item['gt'].numpy().transpose(1, 2, 0), 0.25), 0, 1)
        np.testing.assert_allclose(item['lq_bicubic'].numpy().transpose(1, 2, 0), ref, atol=1e-6)
    with pytest.raises(ValueError, match='divisible'):
        DASRUnpairedDataset(dict(opt, gt_size=30))
    with pytest.raises(FileNotFoundError, match='dataroot_lq'):
        DASRUnpairedDataset(dict(opt, dataroot_lq=str(tmp_path / 'missing')))
    with pytest.raises(ValueError, match='smaller than'):
        DASRUnpairedDataset(dict(opt, gt_size=64))[0]


def _make_paired(tmp_path, stems=('x', 'y'), ddm_half=False):
    rng = np.random.default_rng(2)
    for sub in ('hr', 'lq', 'ddm', 'real'):
        (tmp_path / sub).mkdir(exist_ok=True)
    for stem in stems:
        hr = rng.integers(0, 256, size=(34, 42, 3)).astype(np.uint8)  # not a multiple of 4: mod-cropped to 32x40
        _save(hr, tmp_path / 'hr' / f'{stem}.jpg' if stem == 'y' else tmp_path / 'hr' / f'{stem}.png')
        hr = read_image(tmp_path / 'hr' / (f'{stem}.jpg' if stem == 'y' else f'{stem}.png'))
        lq = hr[:32, :40].reshape(8, 4, 10, 4, 3).mean(axis=(1, 3))  # block mean: exact 4x relation
        _save(np.round(lq * 255).astype(np.uint8), tmp_path / 'lq' / f'{stem}.png')
        lq = read_image(tmp_path / 'lq' / f'{stem}.png')
        ddm = lq[..., 0][None, None].astype(np.float64)
        if ddm_half:
            ddm = ddm[..., ::2, ::2]
        np.save(tmp_path / 'ddm' / f'{stem}.npy', ddm)
    for i in range(2):
        _save(rng.integers(0, 256, size=(10, 11, 3)).astype(np.uint8), tmp_path / 'real' / f'r{i}.png')
    return dict(
        dataroot_gt=str(tmp_path / 'hr'),
        dataroot_lq=str(tmp_path / 'lq'),
        dataroot_ddm=str(tmp_path / 'ddm'),
        dataroot_lq_real=str(tmp_path / 'real'),
        scale=4,
        gt_size=16,
        use_hflip=True,
        use_rot=True,
        phase='train')


def test_paired_dataset_crops_align(tmp_path):
    opt = _make_paired(tmp_path)
    ds = DASRPairedDataset(opt)
    assert len(ds) == 2 and ds.stems == ['x', 'y']
    random.seed(3)
    for _ in range(6):
        for idx in range(2):
            item = ds[idx]
            assert item['lq'].shape == (3, 4, 4) and item['gt'].shape == (3, 16, 16)
            assert item['ddm'].shape == (1, 4, 4)
            assert item['lq_real'].shape == (3, 4, 4) and item['gt_unpair'].shape == (3, 16, 16)
            # LR crop = 4x4 block mean of the HR crop, after the same flips / transposition
            block = torch.nn.functional.avg_pool2d(item['gt'][None], 4)[0]
            torch.testing.assert_close(item['lq'], block, atol=1 / 255, rtol=0)
            # the map crop follows the LR crop
            torch.testing.assert_close(item['ddm'][0], item['lq'][0])
            assert osp.splitext(osp.basename(item['lq_path']))[0] == osp.splitext(osp.basename(item['gt_path']))[0]


def test_paired_dataset_resizes_half_size_maps(tmp_path):
    opt = _make_paired(tmp_path, ddm_half=True)
    item = DASRPairedDataset(dict(opt, use_hflip=False, use_rot=False))[0]
    assert item['ddm'].shape == (1, 4, 4)
    assert torch.isfinite(item['ddm']).all()


def test_paired_dataset_refuses_mismatched_folders(tmp_path):
    opt = _make_paired(tmp_path, stems=('x', 'y', 'z'))
    (tmp_path / 'ddm' / 'y.npy').unlink()
    with pytest.raises(ValueError, match=r"dataroot_ddm lacks 1 stem\(s\): y"):
        DASRPairedDataset(opt)
    (tmp_path / 'hr' / 'z.png').rename(tmp_path / 'hr' / 'w.png')
    with pytest.raises(ValueError, match='dataroot_gt lacks'):
        DASRPairedDataset(dict(opt, dataroot_ddm=None))
    # without maps every weight is 1
    (tmp_path / 'lq' / 'z.png').unlink()
    item = DASRPairedDataset(dict(opt, dataroot_ddm=None))[0]
    torch.testing.assert_close(item['ddm'], torch.ones(1, 4, 4))


def test_paired_dataset_refuses_wrong_sizes(tmp_path):
    opt = _make_paired(tmp_path, stems=('x', ))
    _save(np.zeros((8, 8, 3), np.uint8), tmp_path / 'lq' / 'x.png')
    with pytest.raises(ValueError, match='regenerate'):
        DASRPairedDataset(opt)[0]


def test_read_image_scales_16_bit_by_type(tmp_path):
    rng = np.random.default_rng(7)
    dark = rng.integers(0, 200, size=(4, 5)).astype(np.uint16)  # a dark 16-bit image: every value below 256
    Image.fromarray(dark).save(tmp_path / 'dark.png')
    cv2.imwrite(str(tmp_path / 'dark.pgm'), dark)  # PIL opens 16-bit PGM as 32-bit 'I'
    for name in ('dark.png', 'dark.pgm'):
        out = read_image(tmp_path / name)
        assert out.shape == (4, 5, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.repeat(dark[..., None], 3, axis=2) / 65535.0, atol=1e-7, err_msg=name)
    deep_rgb = rng.integers(0, 65536, size=(4, 5, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / 'rgb16.png'), deep_rgb[..., ::-1])  # full 16-bit precision is kept
    np.testing.assert_allclose(read_image(tmp_path / 'rgb16.png'), deep_rgb / 65535.0, atol=1e-7)
    gray_alpha = rng.integers(0, 256, size=(3, 4, 2), dtype=np.uint8)
    with pytest.warns(UserWarning, match='alpha'):
        out = read_image(_save(gray_alpha, tmp_path / 'la.png', 'LA'))
    np.testing.assert_allclose(out, np.repeat(gray_alpha[..., :1], 3, axis=2) / 255.0)


def _dihedral(img):
    """The 8 flips / transpositions of an ``(H, W, C)`` square array."""
    out = []
    for arr in (img, img.transpose(1, 0, 2)):
        out += [arr, arr[:, ::-1], arr[::-1], arr[::-1, ::-1]]
    return out


def _variant_index(item, variants):
    hits = [i for i, v in enumerate(variants) if np.array_equal(item, v)]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize('use_hflip,use_rot,expected', [(False, False, {0}), (True, False, {0, 1}),
                                                        (True, True, set(range(8)))])
def test_unpaired_dataset_augmentation_keys(tmp_path, use_hflip, use_rot, expected):
    rng = np.random.default_rng(8)
    (tmp_path / 'hr').mkdir()
    (tmp_path / 'lr').mkdir()
    hr = _rand_img(rng, 16, 16)  # crop size = image size: only the augmentation changes the crop
    lr = _rand_img(rng, 4, 4)
    _save(hr, tmp_path / 'hr' / 'a.png')
    _save(lr, tmp_path / 'lr' / 'b.png')
    opt = dict(dataroot_lq=str(tmp_path / 'lr'), dataroot_gt=str(tmp_path / 'hr'), scale=4, gt_size=16)
    ds = DASRUnpairedDataset(dict(opt, use_hflip=use_hflip, use_rot=use_rot))
    hr_variants, lr_variants = _dihedral(hr.astype(np.float32) / 255.0), _dihedral(lr.astype(np.float32) / 255.0)
    random.seed(0)
    seen_hr, seen_lr = set(), set()
    for _ in range(64):
        item = ds[0]
        seen_hr.add(_variant_index(item['gt'].numpy().transpose(1, 2, 0), hr_variants))
        seen_lr.add(_variant_index(item['lq_real'].numpy().transpose(1, 2, 0), lr_variants))
    assert seen_hr == expected and seen_lr == expected
    for bad in ('use_flip', 'use_vflip', 'use_rotation'):
        with pytest.raises(ValueError, match=bad):
            DASRUnpairedDataset(dict(opt, **{bad: True}))


def test_paired_dataset_rejects_other_flip_keys(tmp_path):
    opt = _make_paired(tmp_path)
    with pytest.raises(ValueError, match='use_flip'):
        DASRPairedDataset(dict(opt, use_flip=True))
    item = DASRPairedDataset(dict(opt, use_hflip=False, use_rot=False))[0]  # no augmentation: LR crop = HR block mean
    block = torch.nn.functional.avg_pool2d(item['gt'][None], 4)[0]
    torch.testing.assert_close(item['lq'], block, atol=1 / 255, rtol=0)


def test_paired_dataset_grayscale_and_rgba_files(tmp_path):
    rng = np.random.default_rng(9)
    for sub in ('hr', 'lq', 'real', 'unpair'):
        (tmp_path / sub).mkdir()
    hr = rng.integers(0, 256, size=(32, 40), dtype=np.uint8)  # grayscale HR
    _save(hr, tmp_path / 'hr' / 'x.png')
    lq = np.round(hr.reshape(8, 4, 10, 4).mean(axis=(1, 3))).astype(np.uint8)
    alpha = rng.integers(0, 256, size=(8, 10, 1), dtype=np.uint8)
    _save(np.concatenate([np.repeat(lq[..., None], 3, axis=2), alpha], axis=2), tmp_path / 'lq' / 'x.png', 'RGBA')
    _save(_rand_img(rng, 9, 9, 1), tmp_path / 'real' / 'r.png')  # grayscale real LR
    _save(_rand_img(rng, 20, 20, 4), tmp_path / 'unpair' / 'u.png')  # RGBA unpaired HR
    opt = dict(
        dataroot_gt=str(tmp_path / 'hr'),
        dataroot_lq=str(tmp_path / 'lq'),
        dataroot_ddm=None,
        dataroot_lq_real=str(tmp_path / 'real'),
        dataroot_gt_unpair=str(tmp_path / 'unpair'),
        scale=4,
        gt_size=16,
        use_hflip=True,
        use_rot=True)
    ds = DASRPairedDataset(opt)
    random.seed(4)
    for _ in range(4):
        with pytest.warns(UserWarning, match='alpha'):
            item = ds[0]
        assert item['lq'].shape == item['lq_real'].shape == (3, 4, 4)
        assert item['gt'].shape == item['gt_unpair'].shape == (3, 16, 16)
        for key in ('lq', 'gt', 'lq_real'):  # grayscale files: three equal channels
            torch.testing.assert_close(item[key][1:], item[key][:1].expand(2, -1, -1))
        block = torch.nn.functional.avg_pool2d(item['gt'][None], 4)[0]
        torch.testing.assert_close(item['lq'], block, atol=1 / 255, rtol=0)


def test_non_finite_tiff_and_truncated_files_are_named(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / 'lq').mkdir()
    (tmp_path / 'hr').mkdir()
    bad = rng.random((20, 20)).astype(np.float32)
    bad[3, 4] = np.nan
    Image.fromarray(bad, mode='F').save(tmp_path / 'lq' / 'nan.tif')  # official reader keeps NaN through np.clip
    _save(_rand_img(rng, 80, 80), tmp_path / 'hr' / 'h.png')
    ds = DASRUnpairedDataset({'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'hr'), 'gt_size': 64})
    with pytest.raises(ValueError, match=r'nan\.tif \(from dataroot_lq\).*non-finite'):
        ds[0]
    # a truncated file that neither OpenCV nor the PIL fallback can decode is named
    os.remove(tmp_path / 'lq' / 'nan.tif')
    _save(_rand_img(rng, 40, 40), tmp_path / 'lq' / 'full.png')
    data = (tmp_path / 'lq' / 'full.png').read_bytes()
    (tmp_path / 'lq' / 'full.png').write_bytes(data[:len(data) // 2])
    ds = DASRUnpairedDataset({'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'hr'), 'gt_size': 64})
    with pytest.raises(ValueError, match=r'full\.png \(from dataroot_lq\).*truncated, corrupt or not an image'):
        ds[0]


def test_gray_option_gives_one_channel_everywhere(tmp_path):
    ds = DASRPairedDataset(dict(_make_paired(tmp_path), color='gray'))
    item = ds[0]
    for key in ('lq', 'gt', 'lq_real', 'gt_unpair', 'ddm'):
        assert item[key].shape[0] == 1, key
    rgb = DASRPairedDataset(_make_paired(tmp_path))[0]
    assert rgb['lq'].shape[0] == 3
