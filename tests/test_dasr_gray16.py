"""One-channel 16-bit DASR (the single-channel MRI case): the gray16 demo option files train through train.py."""
import cv2
import glob
import numpy as np
import os
import os.path as osp
import pytest
import torch

import srplugins  # noqa: F401
from srplugins.data.dasr_dataset import DASRPairedDataset, DASRUnpairedDataset
from tests.conftest import load_option


def _grey16(rng, h, w):
    """Smooth 16-bit grey image whose values use the low byte (not multiples of 257)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c = rng.uniform(0.5, 2, 3)
    img = 0.5 + 0.4 * np.sin(2 * np.pi * (a * xx + b * yy) + c)
    return np.round(img * 65535).astype(np.uint16) | np.uint16(1)  # odd values: never k * 257


def _write_set(folder, count, h, w, seed):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        assert cv2.imwrite(osp.join(folder, f'img{i}.png'), _grey16(rng, h, w))
    return str(folder)


def _gray16_data(root):
    return {
        'source_lr': _write_set(root / 'dasr' / 'source_lr', 2, 40, 40, 1),
        'target_hr': _write_set(root / 'dasr' / 'target_hr', 2, 136, 136, 2),
        'val_hr': _write_set(root / 'val' / 'HR', 1, 48, 48, 3),
        'val_lr': _write_set(root / 'dasr' / 'val_lr', 1, 12, 12, 4),
    }


def test_gray16_samples_are_one_channel_full_precision(tmp_path):
    data = _gray16_data(tmp_path)
    ds = DASRUnpairedDataset({
        'dataroot_lq': data['source_lr'],
        'dataroot_gt': data['target_hr'],
        'gt_size': 64,
        'scale': 4,
        'color': 'gray'
    })
    item = ds[0]
    assert item['gt'].shape == (1, 64, 64) and item['lq_real'].shape == item['lq_bicubic'].shape == (1, 16, 16)
    for key in ('gt', 'lq_real', 'lq_bicubic'):
        assert item[key].dtype == torch.float32 and 0 <= item[key].min() and item[key].max() <= 1
    # 16-bit precision: the values are the files' uint16 / 65535 (8-bit decoding would give multiples of 1/255)
    gt_codes = item['gt'].numpy() * 65535
    np.testing.assert_allclose(gt_codes, np.round(gt_codes), atol=2e-3)
    assert np.all(np.round(gt_codes).astype(np.int64) % 2 == 1)
    full = cv2.imread(item['gt_path'], cv2.IMREAD_UNCHANGED)
    assert full.dtype == np.uint16 and set(np.round(gt_codes).astype(np.int64).ravel()) <= set(full.ravel().tolist())
    # the default stays RGB (three identical channels for a grey file)
    rgb = DASRUnpairedDataset({'dataroot_lq': data['source_lr'], 'dataroot_gt': data['target_hr'], 'gt_size': 64})[0]
    assert rgb['gt'].shape == (3, 64, 64)


def _demo_option(name, data, tmp_path, replace):
    opt = load_option(f'options/demo/{name}')
    text = repr(opt)
    assert 'datasets/demo_gray16/' in text and 'datasets/demo/' not in text
    for dataset in opt['datasets'].values():
        assert dataset['color'] == 'gray'
        for key, value in list(dataset.items()):
            if key.startswith('dataroot_') and value:
                dataset[key] = replace[value]
    opt['train']['total_iter'] = 2
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    opt['path']['experiments_root'] = str(tmp_path / 'experiments' / opt['name'])
    return opt


@pytest.mark.slow
def test_gray16_dsn_and_sr_demo_options_train(tmp_path, alexnet_weights, run_train):
    data = _gray16_data(tmp_path / 'demo_gray16')
    replace = {
        'datasets/demo_gray16/dasr/source_lr': data['source_lr'],
        'datasets/demo_gray16/dasr/target_hr': data['target_hr'],
        'datasets/demo_gray16/val/HR': data['val_hr'],
        'datasets/demo_gray16/dasr/val_lr': data['val_lr'],
    }
    dsn = _demo_option('demo_DASR_DSN_x4_gray16.yml', data, tmp_path, replace)
    assert dsn['network_g']['num_in_ch'] == dsn['network_g']['num_out_ch'] == dsn['network_d']['num_in_ch'] == 1
    result = run_train(dsn, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'psnr' in result.stdout
    models = glob.glob(str(tmp_path / 'experiments' / '*' / 'models' / 'net_g_2.pth'))
    assert models, result.stdout[-2000:]
    weights = torch.load(models[0], weights_only=True)
    weights = weights.get('params', weights)
    assert weights['block_input.0.weight'].shape[1] == 1 and weights['block_output.weight'].shape[0] == 1
    assert all(torch.isfinite(v).all() for v in weights.values())

    # SR stage on generated 16-bit grey LR (written here as dasr_generate_data would) and all-ones maps
    generated = tmp_path / 'demo_gray16' / 'dasr' / 'generated'
    (generated / 'ddm').mkdir(parents=True)
    lq = _write_set(generated / 'lq', 2, 34, 34, 5)
    for stem in ('img0', 'img1'):
        np.save(generated / 'ddm' / f'{stem}.npy', np.full((1, 1, 34, 34), 0.5))
    replace.update({
        'datasets/demo_gray16/dasr/generated/lq': lq,
        'datasets/demo_gray16/dasr/generated/ddm': str(generated / 'ddm')
    })
    sr = _demo_option('demo_DASR_SR_x4_gray16.yml', data, tmp_path, replace)
    assert sr['network_g']['num_in_ch'] == sr['network_g']['num_out_ch'] == 1 and sr['network_d']['num_in_ch'] == 3
    item = DASRPairedDataset(dict(sr['datasets']['train'], scale=4))[0]
    assert {
        k: tuple(item[k].shape)
        for k in ('lq', 'gt', 'ddm', 'lq_real', 'gt_unpair')
    } == {
        'lq': (1, 16, 16),
        'gt': (1, 64, 64),
        'ddm': (1, 16, 16),
        'lq_real': (1, 16, 16),
        'gt_unpair': (1, 64, 64)
    }
    result = run_train(sr, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'psnr' in result.stdout and 'ssim' in result.stdout
