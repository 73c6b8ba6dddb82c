"""BSRGAN option files: every type resolves to a registered class, and the GAN recipe trains on CPU."""
import glob
import math
import os.path as osp
import pytest
import re
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

import srplugins  # noqa: F401
from tests.conftest import REPO_ROOT, load_option

OPTION_FILES = sorted(
    glob.glob(osp.join(REPO_ROOT, 'options', 'train', 'BSRGAN', '*.yml')) +
    glob.glob(osp.join(REPO_ROOT, 'options', 'test', 'BSRGAN', '*.yml')) +
    glob.glob(osp.join(REPO_ROOT, 'options', 'demo', 'demo_BSR*.yml')))


def test_option_files_exist():
    names = {osp.basename(p) for p in OPTION_FILES}
    assert {
        'train_BSRNet_x4.yml', 'train_BSRGAN_x4.yml', 'train_BSRGAN_x4_kair.yml', 'train_BSRNet_x2.yml',
        'train_BSRGAN_x2.yml', 'demo_BSRNet_x4.yml', 'demo_BSRGAN_x4.yml'
    } <= names


@pytest.mark.parametrize('path', OPTION_FILES, ids=osp.basename)
def test_option_types_are_registered(path):
    opt = load_option(path)
    assert opt['model_type'] in MODEL_REGISTRY
    for key in ('network_g', 'network_d'):
        if key in opt:
            assert opt[key]['type'] in ARCH_REGISTRY, opt[key]['type']
    for dataset in opt['datasets'].values():
        assert dataset['type'] in DATASET_REGISTRY
    for key, value in opt.get('train', {}).items():
        if key.endswith('_opt') and value:
            assert value['type'] in LOSS_REGISTRY


def test_paper_recipe_values():
    opt = load_option('options/train/BSRGAN/train_BSRGAN_x4.yml')
    train = opt['train']
    assert opt['network_d']['type'] == 'PatchGANDiscriminatorSN'
    assert train['pixel_opt']['loss_weight'] == 1.0
    assert train['perceptual_opt']['layer_weights'] == {'conv4_4': 1.0}
    assert train['perceptual_opt']['perceptual_weight'] == 1.0
    assert train['gan_opt']['gan_type'] == 'lsgan' and train['gan_opt']['loss_weight'] == 0.1
    assert train['optim_g']['lr'] == 1e-5 and train['optim_d']['lr'] == 1e-5
    data = opt['datasets']['train']
    assert data['lq_patchsize'] == 72 and data['gt_size'] == 320 and data['batch_size_per_gpu'] * 4 == 48


def tiny_demo_option(recipe, demo_data, name, **train_set):
    """A BSRNet/BSRGAN demo option shrunk to a seconds-long CPU run: 3 iterations, tiny RRDBNet, 16x16 LQ patches."""
    opt = load_option(osp.join('options', 'demo', recipe))
    opt['name'] = name
    opt['datasets']['train'].update(
        dataroot_gt=osp.join(demo_data, 'train', 'HR'), gt_size=64, lq_patchsize=16, batch_size_per_gpu=2, **train_set)
    opt['datasets']['val'].update(dataroot_gt=osp.join(demo_data, 'val', 'HR'), lq_patchsize=16)
    opt['network_g'].update(num_feat=8, num_block=1, num_grow_ch=4)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 8
    opt['path']['pretrain_network_g'] = None
    opt['train']['total_iter'] = 3
    opt['val']['val_freq'] = 3
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    return opt


@pytest.mark.slow
def test_gan_recipe_runs_three_cpu_iterations(demo_data, vgg19_weights, run_train, tmp_path):
    opt = tiny_demo_option('demo_BSRGAN_x4.yml', demo_data, 'bsrgan_recipe_test')
    result = run_train(opt, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    losses = re.findall(r'(l_g_pix|l_g_percep|l_g_gan|l_d_real|l_d_fake): ([-+0-9.e]+|nan|inf)', result.stdout)
    assert {name for name, _ in losses} == {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'}
    assert all(math.isfinite(float(v)) for _, v in losses)
    exp = tmp_path / 'experiments' / 'bsrgan_recipe_test' / 'models'
    assert (exp / 'net_g_3.pth').is_file() and (exp / 'net_d_3.pth').is_file()
