"""Tests of BSRGANDataset (srplugins/data/bsrgan_dataset.py)."""
import cv2
import numpy as np
import os.path as osp
import pytest
import torch
from basicsr.utils.registry import DATASET_REGISTRY

import srplugins  # noqa: F401
from srplugins.data.bsrgan_dataset import BSRGANDataset


def _write(folder, name, img):
    path = osp.join(str(folder), name)
    assert cv2.imwrite(path, img)
    return path


@pytest.fixture
def hr_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'hr'
    folder.mkdir()
    red = np.zeros((40, 44, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk: pure red
    _write(folder, 'a_red.png', red)
    _write(folder, 'b_gray.png', (rng.random((41, 40)) * 255).astype(np.uint8))
    _write(folder, 'c_rgba.png', (rng.random((40, 40, 4)) * 255).astype(np.uint8))
    return folder


def _opt(folder, **kw):
    opt = dict(
        name='t',
        type='BSRGANDataset',
        dataroot_gt=str(folder),
        io_backend={'type': 'disk'},
        scale=2,
        lq_patchsize=8,
        gt_size=20,
        phase='train')
    opt.update(kw)
    return opt


def test_registered():
    assert DATASET_REGISTRY.get('BSRGANDataset') is BSRGANDataset


def test_sample_dict_shapes_rgb_order_and_modes(hr_folder):
    ds = BSRGANDataset(_opt(hr_folder))
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path'}
        assert item['lq'].shape == (3, 8, 8) and item['gt'].shape == (3, 16, 16)
        assert item['lq'].dtype == torch.float32 and 0 <= item['lq'].min() and item['lq'].max() <= 1
        assert item['gt_path'] == ds.paths[i]
    gt = ds[0]['gt']  # pure red file: RGB tensor has R = 1, G = B = 0 (the HQ patch is not degraded)
    assert torch.all(gt[0] == 1) and torch.all(gt[1:] == 0)
    gray = ds[1]['gt']
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_bsrgan_plus_and_scale3(hr_folder):
    ds = BSRGANDataset(
        _opt(hr_folder, degradation_type='bsrgan_plus', use_sharp=True, scale=3, lq_patchsize=6, gt_size=18))
    item = ds[2]
    assert item['lq'].shape == (3, 6, 6) and item['gt'].shape == (3, 18, 18)


def test_training_randomness_is_reproducible_and_fresh(hr_folder):
    torch.manual_seed(123)
    a = BSRGANDataset(_opt(hr_folder))
    first, second = a[2], a[2]  # same process, next epoch: a fresh sample
    assert not torch.equal(first['lq'], second['lq'])
    torch.manual_seed(123)
    b = BSRGANDataset(_opt(hr_folder))
    again = b[2]
    assert torch.equal(again['lq'], first['lq']) and torch.equal(again['gt'], first['gt'])  # same seed -> same item
    torch.manual_seed(124)  # another worker seed
    c = BSRGANDataset(_opt(hr_folder))
    assert not torch.equal(c[2]['lq'], first['lq'])


def test_dataloader_workers_give_fresh_samples_per_epoch(hr_folder):
    torch.manual_seed(0)
    ds = BSRGANDataset(_opt(hr_folder))
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False, num_workers=2)
    epoch1 = [b['lq'] for b in loader]
    epoch2 = [b['lq'] for b in loader]
    assert all(not torch.equal(x, y) for x, y in zip(epoch1, epoch2))


def test_validation_is_deterministic_per_index(hr_folder):
    torch.manual_seed(1)
    a = BSRGANDataset(_opt(hr_folder, phase='val', lq_patchsize=16))
    torch.manual_seed(2)
    b = BSRGANDataset(_opt(hr_folder, phase='val', lq_patchsize=16))
    for i in range(3):
        x, y = a[i], b[i]
        assert x['lq'].shape == (3, 16, 16) and x['gt'].shape == (3, 32, 32)
        assert torch.equal(x['lq'], y['lq']) and torch.equal(x['gt'], y['gt'])
        assert torch.equal(a[i]['lq'], x['lq'])  # repeated epochs too
    full = BSRGANDataset(_opt(hr_folder, phase='test', lq_patchsize=None))[0]  # 40x44 image -> 40x40 square
    assert full['lq'].shape == (3, 20, 20) and full['gt'].shape == (3, 40, 40)
    c = BSRGANDataset(_opt(hr_folder, phase='val', lq_patchsize=16, val_seed=5))
    assert not torch.equal(c[2]['lq'], a[2]['lq'])


def test_small_image_raises_naming_file_or_is_skipped(hr_folder, caplog):
    small = _write(hr_folder, 'd_small.png', np.zeros((12, 50, 3), np.uint8))
    ds = BSRGANDataset(_opt(hr_folder))
    index = ds.paths.index(small)
    with pytest.raises(ValueError, match='d_small.png'):
        ds[index]
    skipping = BSRGANDataset(_opt(hr_folder, skip_small=True))
    item = skipping[index]
    assert item['gt_path'] != small and item['gt'].shape == (3, 16, 16)


def test_option_errors(hr_folder, tmp_path):
    with pytest.raises(ValueError, match='degradation_type'):
        BSRGANDataset(_opt(hr_folder, degradation_type='realesrgan'))
    with pytest.raises(ValueError, match='gt_size'):
        BSRGANDataset(_opt(hr_folder, gt_size=12))
    with pytest.raises(ValueError, match='scale'):
        BSRGANDataset(_opt(hr_folder, scale=8))
    with pytest.raises(FileNotFoundError, match='dataroot_gt'):
        BSRGANDataset(_opt(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match='meta_info'):
        BSRGANDataset(_opt(hr_folder, meta_info=str(tmp_path / 'none.txt')))
    with pytest.raises(ValueError, match='shuffle_prob'):
        BSRGANDataset(_opt(hr_folder, shuffle_prob=2))


def test_meta_info_and_lmdb_backends(hr_folder, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('c_rgba.png (40,40,3)\na_red.png (40,44,3)\n')
    ds = BSRGANDataset(_opt(hr_folder, meta_info=str(meta)))
    assert [osp.basename(p) for p in ds.paths] == ['c_rgba.png', 'a_red.png']
    assert ds[1]['gt'].shape == (3, 16, 16)

    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    lmdb_path = str(tmp_path / 'hr.lmdb')
    make_lmdb_from_imgs(str(hr_folder), lmdb_path, ['a_red.png', 'c_rgba.png'], ['a_red', 'c_rgba'], map_size=1 << 24)
    ds = BSRGANDataset(_opt(lmdb_path, io_backend={'type': 'lmdb'}))
    assert len(ds) == 2
    gt = ds[0]['gt']
    assert gt.shape == (3, 16, 16) and torch.all(gt[0] == 1)


@pytest.mark.parametrize('degrade_on', ['dataset', 'model'])
def test_gray_16_bit_samples(tmp_path, degrade_on):
    rng = np.random.default_rng(3)
    folder = tmp_path / 'hr16'
    folder.mkdir()
    for name in ('a', 'b'):
        _write(folder, f'{name}.png', rng.integers(0, 65536, (40, 40), dtype=np.uint16))
    ds = BSRGANDataset(_opt(folder, color='gray', degrade_on=degrade_on, use_rot=False, use_hflip=False))
    for i in range(2):
        item = ds[i]
        assert item['gt'].dtype == torch.float32 and item['gt'].shape[0] == 1
        codes = item['gt'].numpy() * 65535  # the HR crop keeps 16-bit precision
        np.testing.assert_allclose(codes, np.round(codes), atol=5e-3)
        assert set(np.round(codes).astype(np.int64).ravel()) <= set(cv2.imread(item['gt_path'], -1).ravel().tolist())
        if degrade_on == 'dataset':
            assert item['lq'].shape == (1, 8, 8) and 0 <= item['lq'].min() and item['lq'].max() <= 1
        else:
            assert 'lq' not in item and item['gt'].shape == (1, 20, 20)
    with pytest.raises(ValueError, match='BSRGANDataset: datasets option color'):
        BSRGANDataset(_opt(folder, color='grey'))


def test_bad_files_name_the_file(hr_folder):
    png = cv2.imencode('.png', np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))[1].tobytes()
    (hr_folder / 'd_trunc.png').write_bytes(png[:200])
    (hr_folder / 'e_empty.png').write_bytes(b'')  # basicsr's imfrombytes: cv2.error (!buf.empty())
    ds = BSRGANDataset(_opt(hr_folder))
    with pytest.raises(ValueError, match=r'd_trunc\.png \(from dataroot_gt\).*truncated'):
        ds[3]
    with pytest.raises(ValueError, match=r'e_empty\.png \(from dataroot_gt\).*0 bytes'):
        ds[4]
