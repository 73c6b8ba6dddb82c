"""RealESRGANGTDataset: upstream RealESRGANDataset's attributes, gray / 16-bit GT crops, bad files named."""
import copy
import cv2
import numpy as np
import os
import pytest
import torch
from basicsr.data.realesrgan_dataset import RealESRGANDataset as UpstreamRealESRGANDataset

import srplugins  # noqa: F401
from srplugins.data.realesrgan_dataset import RealESRGANGTDataset
from tests.test_realesrgan_model import dataset_opt, write_images

# basicsr 1.4.2's RealESRGANDataset (registered as RealESRGANDataset_basicsr) is xinntao/Real-ESRGAN's
# realesrgan/data/realesrgan_dataset.py verbatim (only the registry suffix differs), so it stands for upstream offline.


def _with_meta(tmp_path):
    folder = write_images(str(tmp_path / 'gt'))
    meta = tmp_path / 'meta.txt'
    meta.write_text(''.join(f'{name}\n' for name in sorted(os.listdir(folder))))
    opt = dataset_opt(folder)
    opt['meta_info'] = str(meta)
    return opt


def test_degradation_attributes_match_upstream(tmp_path):
    opt = _with_meta(tmp_path)
    ours = RealESRGANGTDataset(copy.deepcopy(opt))
    upstream = UpstreamRealESRGANDataset(copy.deepcopy(opt))
    names = set(vars(upstream)) - {'opt', 'file_client', 'io_backend_opt', 'training'}
    assert {
        'kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range2', 'final_sinc_prob', 'kernel_range', 'pulse_tensor'
    } <= names
    for name in sorted(names):
        assert hasattr(ours, name), name
        theirs, mine = getattr(upstream, name), getattr(ours, name)
        if torch.is_tensor(theirs):
            assert torch.equal(theirs, mine), name
        else:
            assert mine == theirs, name
    assert ours.io_backend_opt['type'] == upstream.io_backend_opt['type'] and ours.file_client is None


def test_items_are_drawn_from_the_attributes(tmp_path):
    opt = _with_meta(tmp_path)
    opt['final_sinc_prob'] = 1.0
    ds = RealESRGANGTDataset(opt)
    assert not torch.equal(ds[0]['sinc_kernel'], ds.pulse_tensor)
    ds.final_sinc_prob = 0.0  # as with upstream's dataset, changing the attribute changes the sampling
    assert torch.equal(ds[0]['sinc_kernel'], ds.pulse_tensor)
    ds.kernel_list, ds.kernel_prob, ds.blur_sigma, ds.sinc_prob = ['iso'], [1.0], [2.0, 2.001], 0.0
    kernel = ds[1]['kernel1'].numpy()
    assert np.allclose(kernel, kernel.T, atol=1e-6) and np.allclose(kernel, kernel[::-1], atol=1e-6)  # isotropic


def test_gray_16_bit_gt_crops(tmp_path):
    folder = tmp_path / 'gt16'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        assert cv2.imwrite(str(folder / f'{i}.png'), rng.integers(0, 65536, (90, 85), dtype=np.uint16))
    ds = RealESRGANGTDataset(dict(dataset_opt(str(folder)), color='gray'))
    item = ds[0]
    assert item['gt'].shape == (1, 80, 80) and item['gt'].dtype == torch.float32
    codes = item['gt'].numpy() * 65535
    np.testing.assert_allclose(codes, np.round(codes), atol=5e-3)
    assert set(np.round(codes).astype(np.int64).ravel()) <= set(cv2.imread(item['gt_path'], -1).ravel().tolist())
    small = RealESRGANGTDataset(dict(dataset_opt(str(folder)), color='gray', crop_pad_size=100))[1]  # padded
    assert small['gt'].shape == (1, 100, 100)
    assert RealESRGANGTDataset(dataset_opt(str(folder)))[0]['gt'].shape == (3, 80, 80)


def test_unreadable_files_are_named(tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'empty.png').write_bytes(b'')
    ds = RealESRGANGTDataset(dataset_opt(str(folder)))
    with pytest.raises(ValueError, match=r'empty\.png \(from dataroot_gt\).*0 bytes'):
        ds[0]
