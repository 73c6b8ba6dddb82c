"""Tests for SRPairedImageDataset: drop-in for basicsr's PairedImageDataset, 16-bit / grey, every bad file named."""
import cv2
import numpy as np
import os
import pytest
import random
import torch
from basicsr.data import build_dataset
from basicsr.data.paired_image_dataset import PairedImageDataset
from torch.utils.data import DataLoader

import srplugins  # noqa: F401
from srplugins.data.sr_paired_dataset import SRPairedImageDataset


def _pairs(root, names=('a', 'b', 'c'), size=24, scale=2, dtype=np.uint8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    for sub in ('gt', 'lq'):
        os.makedirs(root / sub, exist_ok=True)
    for name in names:
        shape = (size, size + 4) + ((channels, ) if channels > 1 else ())
        gt = rng.integers(0, top + 1, shape, dtype=dtype)
        lq = cv2.resize(gt, ((size + 4) // scale, size // scale), interpolation=cv2.INTER_AREA)
        assert cv2.imwrite(str(root / 'gt' / f'{name}.png'), gt) and cv2.imwrite(str(root / 'lq' / f'{name}.png'), lq)
    return str(root / 'gt'), str(root / 'lq')


def _opt(gt, lq, **kw):
    opt = {
        'name': 't',
        'type': 'SRPairedImageDataset',
        'dataroot_gt': gt,
        'dataroot_lq': lq,
        'io_backend': {
            'type': 'disk'
        },
        'scale': 2,
        'phase': 'train',
        'gt_size': 8,
        'use_hflip': True,
        'use_rot': True
    }
    opt.update(kw)
    return opt


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_same_samples_as_basicsr_paired_dataset_on_8_bit_rgb(tmp_path, phase):
    gt, lq = _pairs(tmp_path)
    ours = build_dataset(_opt(gt, lq, phase=phase))
    assert isinstance(ours, SRPairedImageDataset)
    theirs = PairedImageDataset(_opt(gt, lq, phase=phase))
    assert len(ours) == len(theirs) == 3
    theirs_index = {p['gt_path']: i for i, p in enumerate(theirs.paths)}  # basicsr keeps os.scandir order
    assert [p['gt_path'] for p in ours.paths] == sorted(theirs_index)
    for index in range(3):
        random.seed(index)
        a = ours[index]
        random.seed(index)
        b = theirs[theirs_index[a['gt_path']]]
        assert a['gt_path'] == b['gt_path'] and a['lq_path'] == b['lq_path']
        torch.testing.assert_close(a['gt'], b['gt'], rtol=0, atol=0)
        torch.testing.assert_close(a['lq'], b['lq'], rtol=0, atol=0)


def test_filename_tmpl_meta_info_mean_std(tmp_path):
    gt, lq = _pairs(tmp_path)
    for name in ('a', 'b', 'c'):
        os.rename(os.path.join(lq, f'{name}.png'), os.path.join(lq, f'{name}x2.png'))
    meta = tmp_path / 'meta.txt'
    meta.write_text('b.png (24,28,3)\na.png (24,28,3)\n')
    ds = SRPairedImageDataset(_opt(gt, lq, filename_tmpl='{}x2', meta_info_file=str(meta), phase='val'))
    assert [os.path.basename(p['lq_path']) for p in ds.paths] == ['bx2.png', 'ax2.png']
    plain = SRPairedImageDataset(_opt(gt, lq, filename_tmpl='{}x2', phase='val'))[0]
    normed = SRPairedImageDataset(_opt(gt, lq, filename_tmpl='{}x2', phase='val', mean=[0.5] * 3, std=[0.25] * 3))[0]
    torch.testing.assert_close(normed['gt'], (plain['gt'] - 0.5) / 0.25)
    with pytest.raises(FileNotFoundError, match='meta_info_file'):
        SRPairedImageDataset(_opt(gt, lq, meta_info_file=str(tmp_path / 'nope.txt')))


def test_16_bit_gray_samples(tmp_path):
    gt, lq = _pairs(tmp_path, dtype=np.uint16, channels=1)
    ds = SRPairedImageDataset(_opt(gt, lq, color='gray'))
    loader = DataLoader(ds, batch_size=3)
    batch = next(iter(loader))
    assert batch['gt'].shape == (3, 1, 8, 8) and batch['lq'].shape == (3, 1, 4, 4)
    assert batch['gt'].dtype == torch.float32 and 0 <= batch['gt'].min() and batch['gt'].max() <= 1
    val = SRPairedImageDataset(_opt(gt, lq, color='gray', phase='val'))[0]
    file = cv2.imread(val['gt_path'], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(val['gt'][0].numpy(), file.astype(np.float32) / 65535)  # not 8-bit
    # colour files with color: gray are converted to one luma channel; color: y keeps basicsr's Y channel
    gt3, lq3 = _pairs(tmp_path / 'rgb')
    assert SRPairedImageDataset(_opt(gt3, lq3, color='gray'))[0]['gt'].shape == (1, 8, 8)
    y = SRPairedImageDataset(_opt(gt3, lq3, color='y', phase='val'))[0]['gt']
    ref = PairedImageDataset(_opt(gt3, lq3, color='y', phase='val'))[0]['gt']
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match='color must be one of'):
        SRPairedImageDataset(_opt(gt, lq, color='grey'))


def test_truncated_and_empty_images_name_file_and_option(tmp_path):
    gt, lq = _pairs(tmp_path)
    data = open(os.path.join(gt, 'b.png'), 'rb').read()
    with open(os.path.join(gt, 'b.png'), 'wb') as f:
        f.write(data[:len(data) // 2])
    open(os.path.join(lq, 'c.png'), 'wb').close()
    ds = SRPairedImageDataset(_opt(gt, lq))
    ds[0]
    with pytest.raises(ValueError, match=r'gt[/\\]b\.png \(from dataroot_gt\).*truncated'):
        ds[1]
    with pytest.raises(ValueError, match=r'lq[/\\]c\.png \(from dataroot_lq\).*empty \(0 bytes\)'):
        ds[2]


def test_non_image_files_are_ignored_and_empty_folder_is_an_error(tmp_path, caplog):
    gt, lq = _pairs(tmp_path)
    (tmp_path / 'gt' / 'notes.txt').write_text('x')
    (tmp_path / 'lq' / 'Thumbs.db').write_bytes(b'\0')
    (tmp_path / 'gt' / 'X2').mkdir()  # sub-folders are not scanned (basicsr's folder mode is not recursive)
    cv2.imwrite(str(tmp_path / 'gt' / 'X2' / 'a.png'), np.zeros((4, 4, 3), np.uint8))
    ds = SRPairedImageDataset(_opt(gt, lq))
    assert len(ds) == 3 and all(p['gt_path'].endswith('.png') for p in ds.paths)
    (tmp_path / 'empty_gt').mkdir()
    (tmp_path / 'empty_gt' / 'readme.txt').write_text('x')
    with pytest.raises(ValueError, match=r'dataroot_gt: no images .* in .*empty_gt'):
        SRPairedImageDataset(_opt(str(tmp_path / 'empty_gt'), lq))
    with pytest.raises(FileNotFoundError, match='dataroot_lq: folder'):
        SRPairedImageDataset(_opt(gt, str(tmp_path / 'missing')))


def test_scale_mismatch_names_the_pair_and_missing_partner_is_named(tmp_path):
    gt, lq = _pairs(tmp_path, scale=2)
    ds = SRPairedImageDataset(_opt(gt, lq, scale=4, gt_size=8))
    with pytest.raises(ValueError, match=r'Scale mismatch: GT .*a\.png is 28x24 but LQ .*a\.png is 14x12.*scale=4'):
        ds[0]
    # benchmark-style pairs (GT side not divisible by the scale) are mod-cropped, not an error
    os.makedirs(tmp_path / 'odd' / 'gt')
    os.makedirs(tmp_path / 'odd' / 'lq')
    cv2.imwrite(str(tmp_path / 'odd' / 'gt' / 'x.png'), np.zeros((25, 27, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'odd' / 'lq' / 'x.png'), np.zeros((12, 13, 3), np.uint8))
    item = SRPairedImageDataset(_opt(str(tmp_path / 'odd' / 'gt'), str(tmp_path / 'odd' / 'lq'), phase='val'))[0]
    assert item['gt'].shape == (3, 24, 26)
    os.remove(os.path.join(lq, 'b.png'))
    with pytest.raises(ValueError, match=r'1 GT image\(s\) .* no LQ partner .*b\.png \(expected b\.png\)'):
        SRPairedImageDataset(_opt(gt, lq))


def test_option_errors(tmp_path):
    gt, lq = _pairs(tmp_path)
    with pytest.raises(ValueError, match='gt_size must be a positive integer divisible by scale=2'):
        SRPairedImageDataset(_opt(gt, lq, gt_size=9))
    with pytest.raises(ValueError, match='dataroot_lq is required'):
        SRPairedImageDataset(_opt(gt, None))
    with pytest.raises(ValueError, match=r'LQ .*a\.png is 14x12, smaller than the 16x16 crop'):
        SRPairedImageDataset(_opt(gt, lq, gt_size=32))[0]
