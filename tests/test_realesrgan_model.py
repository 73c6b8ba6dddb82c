"""Tests for the device-agnostic Real-ESRNet / Real-ESRGAN models, their dataset and option files."""
import copy
import cv2
import importlib.util
import math
import numpy as np
import os
import os.path as osp
import pytest
import re
import subprocess
import sys
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY
from torch.utils.data import DataLoader

import srplugins  # noqa: F401  (registers everything)
from srplugins.archs.unet_sn_arch import UNetSNDiscriminator
from srplugins.data.realesrgan_dataset import RealESRGANGTDataset
from srplugins.models.realesrgan_model import RealESRGANAnyDeviceModel, RealESRNetAnyDeviceModel

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPES = osp.join(REPO, 'options', 'train', 'RealESRGAN')
GT_SIZE, CROP, SCALE, BATCH = 32, 80, 4, 2

# published degradation settings (Real-ESRGAN x4plus), the only thing kept at full value in the tiny runs
DEGRADATION = {
    'resize_prob': [0.2, 0.7, 0.1],
    'resize_range': [0.15, 1.5],
    'gaussian_noise_prob': 0.5,
    'noise_range': [1, 30],
    'poisson_scale_range': [0.05, 3],
    'gray_noise_prob': 0.4,
    'jpeg_range': [30, 95],
    'second_blur_prob': 0.8,
    'resize_prob2': [0.3, 0.4, 0.3],
    'resize_range2': [0.3, 1.2],
    'gaussian_noise_prob2': 0.5,
    'noise_range2': [1, 25],
    'poisson_scale_range2': [0.05, 2.5],
    'gray_noise_prob2': 0.4,
    'jpeg_range2': [30, 95]
}
KERNELS = {
    'blur_kernel_size': 21,
    'kernel_list': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
    'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'sinc_prob': 0.1,
    'blur_sigma': [0.2, 3],
    'betag_range': [0.5, 4],
    'betap_range': [1, 2],
    'blur_kernel_size2': 21,
    'kernel_list2': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso'],
    'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'sinc_prob2': 0.1,
    'blur_sigma2': [0.2, 1.5],
    'betag_range2': [0.5, 4],
    'betap_range2': [1, 2],
    'final_sinc_prob': 0.8
}


def write_images(folder, count=3, size=(88, 84), seed=0):
    """Smooth random colour images (upsampled noise) as PNG files; returns the folder."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        small = rng.random((6, 5, 3)).astype(np.float32) * 255
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(osp.join(folder, f'img{i}.png'), np.clip(img, 0, 255).astype(np.uint8))
    return folder


def dataset_opt(gt_folder):
    return dict(
        name='tiny',
        type='RealESRGANGTDataset',
        dataroot_gt=gt_folder,
        io_backend={'type': 'disk'},
        crop_pad_size=CROP,
        use_hflip=True,
        use_rot=False,
        phase='train',
        scale=SCALE,
        use_shuffle=False,
        num_worker_per_gpu=0,
        batch_size_per_gpu=BATCH,
        dataset_enlarge_ratio=1,
        **copy.deepcopy(KERNELS))


def model_opt(tmp_path, gan=True, num_gpu=0, perceptual=True):
    """An option dict as basicsr's parse_options returns it, with tiny networks."""
    gt_folder = write_images(str(tmp_path / 'gt'))
    opt = {
        'name': 'tiny_realesrgan',
        'model_type': 'RealESRGANAnyDeviceModel' if gan else 'RealESRNetAnyDeviceModel',
        'scale': SCALE,
        'num_gpu': num_gpu,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'manual_seed': 0,
        'gt_size': GT_SIZE,
        'queue_size': 2 * BATCH,
        **copy.deepcopy(DEGRADATION),
        'datasets': {
            'train': dataset_opt(gt_folder)
        },
        'network_g': {
            'type': 'RRDBNet',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 4,
            'num_block': 1,
            'num_grow_ch': 4
        },
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'experiments_root': str(tmp_path / 'exp'),
            'models': str(tmp_path / 'exp' / 'models'),
            'training_states': str(tmp_path / 'exp' / 'states'),
            'log': str(tmp_path / 'exp'),
            'visualization': str(tmp_path / 'exp' / 'vis')
        },
        'train': {
            'ema_decay': 0.999,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3,
                'weight_decay': 0,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [100],
                'gamma': 0.5
            },
            'total_iter': 2,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0,
                'reduction': 'mean'
            }
        },
        'val': {
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 4,
                    'test_y_channel': False
                }
            }
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 100,
            'use_tb_logger': False
        },
    }
    if gan:
        opt.update({'l1_gt_usm': True, 'percep_gt_usm': True, 'gan_gt_usm': False})
        opt['network_d'] = {'type': 'UNetSNDiscriminator', 'num_in_ch': 3, 'num_feat': 4, 'skip_connection': True}
        opt['train'].update({
            'optim_d': {
                'type': 'Adam',
                'lr': 1e-3,
                'weight_decay': 0,
                'betas': [0.9, 0.99]
            },
            'gan_opt': {
                'type': 'GANLoss',
                'gan_type': 'vanilla',
                'real_label_val': 1.0,
                'fake_label_val': 0.0,
                'loss_weight': 0.1
            },
            'net_d_iters': 1,
            'net_d_init_iters': 0
        })
        if perceptual:
            opt['train']['perceptual_opt'] = {
                'type': 'PerceptualLoss',
                'layer_weights': {
                    'conv1_2': 0.1,
                    'conv2_2': 0.1,
                    'conv3_4': 1,
                    'conv4_4': 1,
                    'conv5_4': 1
                },
                'vgg_type': 'vgg19',
                'use_input_norm': True,
                'perceptual_weight': 1.0,
                'style_weight': 0,
                'range_norm': False,
                'criterion': 'l1'
            }
    else:
        opt['gt_usm'] = True
    return opt


def run_iterations(opt, iterations=2):
    """Build dataset + model from the options and run real training iterations; returns (model, log_dicts)."""
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = build_dataset(opt['datasets']['train'])
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, num_workers=0, drop_last=True)
    model = build_model(opt)
    logs = []
    batches = iter(loader)
    for current_iter in range(1, iterations + 1):
        try:
            data = next(batches)
        except StopIteration:
            batches = iter(loader)
            data = next(batches)
        model.feed_data(data)
        lq_shape, gt_shape = tuple(model.lq.shape), tuple(model.gt.shape)
        assert lq_shape == (BATCH, 3, GT_SIZE // SCALE, GT_SIZE // SCALE)
        assert gt_shape == (BATCH, 3, GT_SIZE, GT_SIZE)
        assert model.lq.device.type == model.device.type
        assert not hasattr(model, 'net_d') or model.gt_usm.shape == gt_shape
        # the LQ is 8-bit quantised, as upstream
        assert torch.allclose(model.lq * 255, (model.lq * 255).round(), atol=1e-3)
        model.optimize_parameters(current_iter)
        logs.append({k: float(v) for k, v in model.get_current_log().items()})
    return model, logs


def test_registered_names_and_no_collisions():
    assert MODEL_REGISTRY.get('RealESRGANAnyDeviceModel') is RealESRGANAnyDeviceModel
    assert MODEL_REGISTRY.get('RealESRNetAnyDeviceModel') is RealESRNetAnyDeviceModel
    assert DATASET_REGISTRY.get('RealESRGANGTDataset') is RealESRGANGTDataset
    for name in ('RealESRGANModel', 'RealESRNetModel'):  # names of the realesrgan package
        assert name not in MODEL_REGISTRY or not MODEL_REGISTRY.get(name).__module__.startswith('srplugins')


def test_dataset_sample(tmp_path):
    dataset = build_dataset(dataset_opt(write_images(str(tmp_path / 'gt'), size=(60, 100))))
    assert len(dataset) == 3
    sample = dataset[0]
    assert sample['gt'].shape == (3, CROP, CROP)  # 60 rows padded, 100 cols cropped
    assert 0 <= float(sample['gt'].min()) and float(sample['gt'].max()) <= 1
    for key, size in (('kernel1', 21), ('kernel2', 21), ('sinc_kernel', 21)):
        assert sample[key].shape == (size, size) and sample[key].dtype == torch.float32
        assert float(sample[key].sum()) == pytest.approx(1.0, abs=1e-4)
    assert sample['gt_path'].endswith('img0.png')


def test_dataset_kernel_size_option_and_errors(tmp_path):
    folder = write_images(str(tmp_path / 'gt'))
    opt = dataset_opt(folder)
    opt.update(blur_kernel_size=11, sinc_prob=1.0)
    sample = RealESRGANGTDataset(opt)[1]
    assert sample['kernel1'].shape == (11, 11)
    with pytest.raises(ValueError, match='kernel_prob2'):
        RealESRGANGTDataset({**dataset_opt(folder), 'kernel_prob2': [1.0]})
    with pytest.raises(ValueError, match='blur_kernel_size'):
        RealESRGANGTDataset({**dataset_opt(folder), 'blur_kernel_size': 8})
    with pytest.raises(FileNotFoundError, match='does_not_exist'):
        RealESRGANGTDataset({**dataset_opt(str(tmp_path / 'does_not_exist'))})
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (84,88,3)\n')
    assert RealESRGANGTDataset({**dataset_opt(folder), 'meta_info': str(meta)}).paths == [osp.join(folder, 'img2.png')]


def test_realesrgan_two_cpu_iterations(tmp_path, vgg19_weights):
    opt = model_opt(tmp_path, gan=True)
    model, logs = run_iterations(opt, iterations=2)
    assert isinstance(model, RealESRGANAnyDeviceModel) and model.device.type == 'cpu'
    assert isinstance(model.net_d, UNetSNDiscriminator)
    assert model.jpeger.compress.y_quantize.y_table.device.type == 'cpu'
    assert model.queue_ptr == 2 * BATCH and model.queue_lr.shape == (2 * BATCH, 3, GT_SIZE // SCALE, GT_SIZE // SCALE)
    for log in logs:
        assert set(log) >= {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake'}
        assert all(math.isfinite(v) for v in log.values()), log
    # a third iteration takes its pairs from the (now full) pool
    before = model.queue_lr.clone()
    data = next(iter(DataLoader(build_dataset(opt['datasets']['train']), batch_size=BATCH)))
    model.feed_data(data)
    assert any(torch.equal(model.lq[0], row) for row in before)


def test_realesrnet_two_cpu_iterations_loss_and_ema(tmp_path):
    opt = model_opt(tmp_path, gan=False)
    model, logs = run_iterations(opt, iterations=2)
    assert isinstance(model, RealESRNetAnyDeviceModel) and not hasattr(model, 'net_d')
    assert all(math.isfinite(log['l_pix']) for log in logs)
    assert hasattr(model, 'net_g_ema')


def test_queue_swaps_whole_pairs(tmp_path):
    model = build_model(model_opt(tmp_path, gan=False))
    model.queue_size = 4

    def batch(value):
        lq = torch.full((BATCH, 3, 2, 2), float(value)) + torch.arange(BATCH).view(-1, 1, 1, 1) / 10
        return lq, lq.repeat(1, 1, SCALE, SCALE) * 10  # gt tied to its lq

    for value in (1, 2):  # filling: batches pass through unchanged
        model.lq, model.gt = batch(value)
        model._dequeue_and_enqueue()
        assert torch.equal(model.lq, batch(value)[0])
    model.lq, model.gt = batch(3)
    model._dequeue_and_enqueue()
    stored = {round(float(v), 3) for v in model.queue_lr[:, 0, 0, 0]}
    assert {3.0, 3.1} <= stored and len(stored) == 4
    for lq, gt in zip(model.lq, model.gt):
        assert round(float(lq[0, 0, 0]), 3) in (1.0, 1.1, 2.0, 2.1) and torch.allclose(gt[:, :2, :2], lq * 10)


def test_validation_skips_degradation(tmp_path):
    model = build_model(model_opt(tmp_path, gan=False))
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
    model.is_train = False
    model.feed_data({'lq': lq, 'gt': gt})
    assert torch.equal(model.lq, lq) and torch.equal(model.gt, gt)
    # nondist_validation switches the degradation off and back on
    model.is_train = True
    lq_dir, gt_dir = tmp_path / 'val_lq', tmp_path / 'val_gt'
    for folder, size in ((lq_dir, (8, 8)), (gt_dir, (32, 32))):
        write_images(str(folder), count=1, size=size)
    val_set = build_dataset({
        'name': 'val',
        'type': 'PairedImageDataset',
        'dataroot_gt': str(gt_dir),
        'dataroot_lq': str(lq_dir),
        'io_backend': {
            'type': 'disk'
        },
        'phase': 'val',
        'scale': SCALE
    })
    model.nondist_validation(DataLoader(val_set, batch_size=1), 1, None, False)
    assert model.is_train is True
    assert math.isfinite(model.metric_results['psnr'])


@pytest.mark.parametrize('change, match', [
    ({
        'queue_size': 5
    }, 'queue_size'),
    ({
        'resize_prob': [0.5, 0.5]
    }, 'resize_prob'),
    ({
        'jpeg_range': [30, 120]
    }, 'jpeg_range'),
    ({
        'gt_size': 30
    }, 'gt_size'),
    ({
        'gan_gt_usm': None
    }, 'gan_gt_usm'),
    ({
        'noise_range2': None
    }, 'noise_range2'),
])
def test_bad_options_raise_value_error(tmp_path, change, match):
    opt = model_opt(tmp_path, gan=True, perceptual=False)
    opt.update(change)
    with pytest.raises(ValueError, match=match):
        build_model(opt)


def test_too_small_crop_raises_value_error(tmp_path):
    opt = model_opt(tmp_path, gan=False)
    opt['datasets']['train']['crop_pad_size'] = 48  # the second blur would pad 10 px on a 7 px image
    with pytest.raises(ValueError, match='crop_pad_size=48.*at least 74'):
        build_model(opt)
    opt['datasets']['train']['crop_pad_size'] = CROP
    model = build_model(opt)
    data = {
        'gt': torch.rand(BATCH, 3, 48, 48),
        'kernel1': torch.ones(BATCH, 21, 21) / 441,
        'kernel2': torch.ones(BATCH, 21, 21) / 441,
        'sinc_kernel': torch.ones(BATCH, 21, 21) / 441
    }
    with pytest.raises(ValueError, match='48x48 is too small'):
        model.feed_data(data)


def load_recipe(name):
    with open(osp.join(RECIPES, name)) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


@pytest.mark.parametrize(
    'name', ['train_RealESRNet_x4plus.yml', 'train_RealESRGAN_x4plus.yml', 'finetune_RealESRGAN_x4plus.yml'])
def test_recipes_match_published_settings(name):
    opt = load_recipe(name)
    gan = 'RealESRGAN' in name
    assert opt['model_type'] == ('RealESRGANAnyDeviceModel' if gan else 'RealESRNetAnyDeviceModel')
    assert opt['scale'] == 4 and opt['gt_size'] == 256 and opt['queue_size'] == 180
    assert {k: opt[k] for k in DEGRADATION} == DEGRADATION
    train = opt['datasets']['train']
    assert train['type'] == 'RealESRGANGTDataset' and train['batch_size_per_gpu'] == 12
    assert train['crop_pad_size'] == 400 and {k: train[k] for k in KERNELS} == KERNELS
    assert opt['network_g'] == {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 64,
        'num_block': 23,
        'num_grow_ch': 32
    }
    assert opt['train']['ema_decay'] == 0.999 and opt['train']['pixel_opt']['loss_weight'] == 1.0
    assert opt['path']['param_key_g'] == 'params_ema'
    if not gan:
        assert opt['gt_usm'] is True and opt['train']['optim_g']['lr'] == 2e-4
        assert opt['train']['total_iter'] == 1000000
        return
    assert (opt['l1_gt_usm'], opt['percep_gt_usm'], opt['gan_gt_usm']) == (True, True, False)
    assert opt['network_d'] == {'type': 'UNetSNDiscriminator', 'num_in_ch': 3, 'num_feat': 64, 'skip_connection': True}
    assert opt['train']['optim_g']['lr'] == opt['train']['optim_d']['lr'] == 1e-4
    assert opt['train']['total_iter'] == 400000
    percep = opt['train']['perceptual_opt']
    assert dict(percep['layer_weights']) == {'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_4': 1, 'conv4_4': 1, 'conv5_4': 1}
    assert percep['vgg_type'] == 'vgg19' and percep['criterion'] == 'l1' and percep['style_weight'] == 0
    assert opt['train']['gan_opt']['gan_type'] == 'vanilla' and opt['train']['gan_opt']['loss_weight'] == 0.1
    if name.startswith('finetune'):
        assert opt['path']['pretrain_network_g'].endswith('RealESRGAN_x4plus.pth')
        assert opt['path']['pretrain_network_d'].endswith('RealESRGAN_x4plus_netD.pth')
        assert opt['path']['param_key_d'] == 'params'


def _demo_option(name, demo_data):
    """A demo option file shrunk to 2 iterations, with absolute demo-data paths."""
    with open(osp.join(REPO, 'options', 'demo', name)) as f:
        opt = yaml.safe_load(f)
    train, val = opt['datasets']['train'], opt['datasets']['val']
    train.update(
        dataroot_gt=osp.join(demo_data, 'train', 'HR'),
        crop_pad_size=CROP,
        batch_size_per_gpu=BATCH,
        num_worker_per_gpu=0)
    val.update(dataroot_gt=osp.join(demo_data, 'val', 'HR'), dataroot_lq=osp.join(demo_data, 'val', 'LR_bicubic', 'X4'))
    opt.update(gt_size=GT_SIZE, queue_size=2 * BATCH)
    opt['train']['total_iter'] = 2
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    return opt


@pytest.mark.slow
def test_demo_two_stages_through_train_py(tmp_path, demo_data, run_train):
    """Stage 1 then stage 2 of the CPU demo through srplugins/train.py; stage 2 starts from stage 1's params_ema."""
    stage1 = run_train(_demo_option('demo_RealESRNet_x4.yml', demo_data), tmp_path)
    assert stage1.returncode == 0, stage1.stdout[-3000:]
    assert 'l_pix' in stage1.stdout and 'Bicubic baseline' in stage1.stdout
    assert osp.isfile(tmp_path / 'experiments' / 'demo_RealESRNet_x4' / 'models' / 'net_g_latest.pth')
    stage2 = run_train(_demo_option('demo_RealESRGAN_x4.yml', demo_data), tmp_path)
    assert stage2.returncode == 0, stage2.stdout[-3000:]
    assert 'Loading RRDBNet model from' in stage2.stdout and 'params_ema' in stage2.stdout
    for key in ('l_g_pix', 'l_g_gan', 'l_d_real', 'l_d_fake'):
        assert key in stage2.stdout
    assert 'UNetSNDiscriminator' in stage2.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_realesrgan_same_options_on_cuda(tmp_path, vgg19_weights):
    opt = model_opt(tmp_path, gan=True, num_gpu=torch.cuda.device_count())
    model, logs = run_iterations(opt, iterations=2)
    assert model.device.type == 'cuda' and model.queue_lr.is_cuda and model.gt_usm.is_cuda
    assert next(model.net_d.parameters()).is_cuda
    for log in logs:
        assert all(math.isfinite(v) for v in log.values()), log


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_demo_option_files_unchanged_on_cuda(tmp_path, demo_data, run_train):
    """The CPU demo option files (``num_gpu: auto``) train on the GPU when one is present, both stages."""
    for name in ('demo_RealESRNet_x4.yml', 'demo_RealESRGAN_x4.yml'):
        opt = _demo_option(name, demo_data)
        assert opt['num_gpu'] == 'auto'
        result = run_train(opt, tmp_path, env={'CUDA_VISIBLE_DEVICES': '0'})
        assert result.returncode == 0, result.stdout[-3000:]
        # basicsr logs the resolved option; 'auto' became the number of visible GPUs
        assert re.search(r'num_gpu: 1\b', result.stdout), result.stdout[-3000:]
        assert 'l_pix' in result.stdout or 'l_g_pix' in result.stdout


IMPORT_CHECK = """
import sys, types
if sys.argv[1] == 'realesrgan-first':
    # basicsr 1.4.2 (imported by realesrgan) needs this alias on torchvision >= 0.17; srplugins installs it itself
    import torchvision.transforms.functional as F
    alias = types.ModuleType('torchvision.transforms.functional_tensor')
    alias.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules.setdefault('torchvision.transforms.functional_tensor', alias)
    import realesrgan, srplugins
else:
    import srplugins, realesrgan
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
assert ARCH_REGISTRY.get('UNetDiscriminatorSN').__module__.startswith('realesrgan.')
assert MODEL_REGISTRY.get('RealESRGANModel').__module__.startswith('realesrgan.')
assert ARCH_REGISTRY.get('UNetSNDiscriminator').__module__ == 'srplugins.archs.unet_sn_arch'
assert MODEL_REGISTRY.get('RealESRGANAnyDeviceModel').__module__ == 'srplugins.models.realesrgan_model'
assert DATASET_REGISTRY.get('RealESRGANGTDataset').__module__ == 'srplugins.data.realesrgan_dataset'
print('ok')
"""


@pytest.mark.skipif(importlib.util.find_spec('realesrgan') is None, reason='the realesrgan package is not installed')
@pytest.mark.parametrize('order', ['srplugins-first', 'realesrgan-first'])
def test_imports_together_with_realesrgan(order):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', IMPORT_CHECK, order],
                            env=env,
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]
