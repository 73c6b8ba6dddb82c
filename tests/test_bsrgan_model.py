"""BSRNetModel / BSRGANModel: on-device degradation in feed_data, its option, seeding, resume and the entry check."""
import copy
import math
import numpy as np
import os.path as osp
import pytest
import re
import torch
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils.registry import MODEL_REGISTRY

import srplugins  # noqa: F401
from srplugins.models.bsrgan_model import BSRGANModel, BSRNetModel
from srplugins.utils.entry import check_degrade_on
from tests.conftest import load_option
from tests.test_bsrgan_recipe import tiny_demo_option

SCALE, P, GT_SIZE = 4, 8, 40


def _opt(tmp_path, model_type='BSRNetModel', degrade_on='model', **train_set):
    train = dict(
        name='hr',
        type='BSRGANDataset',
        dataroot_gt=str(tmp_path),
        phase='train',
        scale=SCALE,
        lq_patchsize=P,
        gt_size=GT_SIZE,
        degrade_on=degrade_on,
        io_backend={'type': 'disk'})
    train.update(train_set)
    opt = {
        'name': 'bsrgan_model_test',
        'model_type': model_type,
        'scale': SCALE,
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'manual_seed': 3,
        'datasets': {
            'train': train
        },
        'network_g': {
            'type': 'RRDBNet',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 8,
            'num_block': 1,
            'num_grow_ch': 4,
            'scale': SCALE
        },
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [100],
                'gamma': 0.5
            },
            'total_iter': 10,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0,
                'reduction': 'mean'
            }
        },
        'logger': {
            'print_freq': 1
        },
    }
    if model_type == 'BSRGANModel':
        opt['network_d'] = {'type': 'PatchGANDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8, 'num_layers': 3}
        opt['train'].update(
            optim_d={
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            gan_opt={
                'type': 'GANLoss',
                'gan_type': 'lsgan',
                'loss_weight': 0.1
            },
            net_d_iters=1,
            net_d_init_iters=0)
    return opt


def _hr_batch(batch=3, seed=0):
    torch.manual_seed(seed)
    return torch.rand(batch, 3, GT_SIZE, GT_SIZE)


def test_registered_and_inherit_basicsr_models():
    from basicsr.models.sr_model import SRModel
    from basicsr.models.srgan_model import SRGANModel
    assert MODEL_REGISTRY.get('BSRNetModel') is BSRNetModel and issubclass(BSRNetModel, SRModel)
    assert MODEL_REGISTRY.get('BSRGANModel') is BSRGANModel and issubclass(BSRGANModel, SRGANModel)


def test_feed_data_degrades_hr_batches_with_seeded_per_batch_plans(tmp_path):
    model = build_model(_opt(tmp_path))
    hr = _hr_batch()
    model.feed_data({'gt': hr})
    assert model.lq.shape == (3, 3, P, P) and model.gt.shape == (3, 3, P * SCALE, P * SCALE)
    # the plans of batch 0 come from default_rng([manual_seed, rank, 0]): gt is the aligned crop of each HR patch
    rng = np.random.default_rng([3, 0, 0])
    for i in range(3):
        top, left = model.degrader.sample_plan(rng, (GT_SIZE, GT_SIZE))['crop']
        assert torch.equal(model.gt[i], hr[i, :, top * SCALE:(top + P) * SCALE, left * SCALE:(left + P) * SCALE])
    first = model.lq.clone()
    model.feed_data({'gt': hr})  # batch 1: fresh randomness
    assert not torch.equal(first, model.lq)
    again = build_model(_opt(tmp_path))
    again.feed_data({'gt': hr})
    assert torch.equal(first, again.lq)  # reproducible from the seed


def test_paired_batches_pass_through_unchanged(tmp_path):
    model = build_model(_opt(tmp_path))
    lq, gt = torch.rand(1, 3, P, P), torch.rand(1, 3, P * SCALE, P * SCALE)
    model.feed_data({'lq': lq, 'gt': gt})
    assert torch.equal(model.lq, lq) and torch.equal(model.gt, gt)


def test_resume_continues_the_degradation_sequence(tmp_path):
    model = build_model(_opt(tmp_path))
    hr = _hr_batch()
    outputs = []
    for _ in range(3):
        model.feed_data({'gt': hr})
        outputs.append(model.lq.clone())
    resumed = build_model(_opt(tmp_path))
    state = {
        'iter': 2,
        'epoch': 0,
        'optimizers': [o.state_dict() for o in resumed.optimizers],
        'schedulers': [s.state_dict() for s in resumed.schedulers]
    }
    resumed.resume_training(state)
    resumed.feed_data({'gt': hr})
    assert torch.equal(resumed.lq, outputs[2])


def test_hr_only_batch_without_degrade_on_model_is_an_error(tmp_path):
    model = build_model(_opt(tmp_path, degrade_on='dataset'))
    assert model.degrader is None
    with pytest.raises(ValueError, match='degrade_on: model'):
        model.feed_data({'gt': _hr_batch(1)})


def test_option_errors(tmp_path):
    with pytest.raises(ValueError, match='degrade_on must be one of'):
        build_model(_opt(tmp_path, degrade_on='gpu'))
    with pytest.raises(ValueError, match=r'gt_size \(16\) must be >= lq_patchsize\*scale \(32\)'):
        build_model(_opt(tmp_path, gt_size=16))
    opt = _opt(tmp_path, model_type='SRModel')
    with pytest.raises(ValueError, match='model_type SRModel does not degrade them'):
        check_degrade_on(opt)
    check_degrade_on(_opt(tmp_path, model_type='BSRGANModel'))  # accepted
    check_degrade_on(_opt(tmp_path, model_type='SRModel', degrade_on='dataset'))


def test_dataset_yields_hr_crops_only_when_the_model_degrades(demo_data):
    opt = _opt(None)['datasets']['train']
    opt.update(dataroot_gt=osp.join(demo_data, 'train', 'HR'))
    item = build_dataset(opt)[0]
    assert set(item) == {'gt', 'gt_path', 'lq_path'} and item['gt'].shape == (3, GT_SIZE, GT_SIZE)
    val = dict(opt, phase='val', lq_patchsize=16)
    item = build_dataset(val)[0]  # validation keeps degrading on the CPU, deterministically
    assert item['lq'].shape == (3, 16, 16) and item['gt'].shape == (3, 64, 64)


def test_one_bsrgan_step_on_device_degraded_batches_has_finite_losses(tmp_path):
    model = build_model(_opt(tmp_path, model_type='BSRGANModel'))
    model.feed_data({'gt': _hr_batch(2)})
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert {'l_g_pix', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
    assert all(math.isfinite(v) for v in log.values())


@pytest.mark.slow
@pytest.mark.parametrize('recipe', ['demo_BSRNet_x4.yml', 'demo_BSRGAN_x4.yml'])
def test_recipe_with_degrade_on_model_trains_and_loss_is_finite(recipe, demo_data, vgg19_weights, run_train, tmp_path):
    opt = tiny_demo_option(recipe, demo_data, 'ondevice_' + recipe[:-4], degrade_on='model')
    result = run_train(opt, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    losses = re.findall(r'(l_g_pix|l_pix|l_g_gan|l_d_real|l_d_fake): ([-+0-9.e]+|nan|inf)', result.stdout)
    assert len(losses) >= 3 and all(math.isfinite(float(v)) for _, v in losses)
    assert (tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_3.pth').is_file()


@pytest.mark.slow
def test_wrong_model_for_degrade_on_model_fails_before_training(demo_data, run_train, tmp_path):
    opt = copy.deepcopy(load_option(osp.join('options', 'demo', 'demo_BSRNet_x4.yml')))
    opt['model_type'] = 'SRModel'
    opt['datasets']['train'].update(dataroot_gt=osp.join(demo_data, 'train', 'HR'), degrade_on='model')
    result = run_train(opt, tmp_path)
    assert result.returncode != 0
    assert 'degrade_on: model' in result.stdout and 'BSRNetModel' in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('degradation_type', ['bsrgan', 'bsrgan_plus'])
def test_degrade_on_model_on_cuda(tmp_path, degradation_type):
    """BSRGANModel with degrade_on: model on CUDA: the torch degradation (CUDA generator, Poisson, DiffJPEG on the
    device) in feed_data without a host-device synchronisation, then finite G and D steps."""
    opt = _opt(tmp_path, model_type='BSRGANModel', degradation_type=degradation_type, shuffle_prob=0.5)
    opt['num_gpu'] = 1
    model = build_model(opt)
    assert model.device.type == 'cuda' and next(model.net_d.parameters()).is_cuda
    hr = _hr_batch(8).cuda()
    model.feed_data({'gt': hr})  # warm-up (cuDNN, pinned host buffers)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        model.feed_data({'gt': hr})
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert model.lq.is_cuda and model.gt.is_cuda
    assert model.lq.shape == (8, 3, P, P) and model.gt.shape == (8, 3, P * SCALE, P * SCALE)
    # batch 1's plans come from default_rng([manual_seed, rank, 1]): gt is each sample's aligned HR crop
    rng = np.random.default_rng([3, 0, 1])
    for i in range(8):
        top, left = model.degrader.sample_plan(rng, (GT_SIZE, GT_SIZE))['crop']
        assert torch.equal(model.gt[i], hr[i, :, top * SCALE:(top + P) * SCALE, left * SCALE:(left + P) * SCALE])
    # Poisson and speckle noise with the CUDA generator, whatever the plans drew
    plans = [model.degrader.sample_plan(np.random.default_rng(i), (GT_SIZE, GT_SIZE)) for i in range(4)]
    for i, plan in enumerate(plans):
        plan['steps'].insert(0, ('poisson_noise', {'vals': 200.0, 'gray': i % 2 == 0}))
        plan['steps'].insert(1, ('speckle_noise', {'mode': 'color', 'sigma': 0.05, 'cov': None}))
    lq, _ = model.degrader.degrade_plans(hr[:4], plans, torch.Generator(device='cuda').manual_seed(0))
    assert lq.is_cuda and torch.isfinite(lq).all()
    for current_iter in (1, 2):
        model.feed_data({'gt': hr})
        model.optimize_parameters(current_iter)
        log = model.get_current_log()
        assert {'l_g_pix', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
        assert all(math.isfinite(v) for v in log.values()), log
