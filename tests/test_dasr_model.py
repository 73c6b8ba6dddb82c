"""Tests for srplugins.models.dasr_model: a few real CPU iterations of both DASR stages."""
import copy
import glob
import math
import numpy as np
import os
import os.path as osp
import pytest
import re
import torch
from basicsr.models import build_model
from basicsr.utils.registry import MODEL_REGISTRY
from PIL import Image

import srplugins  # noqa: F401
from srplugins.models.dasr_model import DASRDownsamplerModel, DASRModel, LinearDecay
from tests.conftest import load_script


def _smooth_image(rng, h, w):
    """Smooth colour gradients plus a few blobs (learnable low frequencies)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (a * xx + b * yy) + c) for a, b, c in rng.uniform(0, 2, (3, 3))],
                   axis=2)
    return np.clip(img, 0, 1)


def _write(folder, count, h, w, seed):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(np.round(_smooth_image(rng, h, w) * 255).astype(np.uint8)).save(osp.join(folder, f'{i}.png'))
    return str(folder)


def _base_opt(tmp_path, model_type):
    models = tmp_path / 'models'
    models.mkdir(exist_ok=True)
    (tmp_path / 'states').mkdir(exist_ok=True)
    return {
        'name': 'dasr_test',
        'model_type': model_type,
        'scale': 4,
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'path': {
            'models': str(models),
            'training_states': str(tmp_path / 'states'),
            'pretrain_network_g': None
        },
        'val': {},
        'logger': {}
    }


def dsn_opt(tmp_path):
    opt = _base_opt(tmp_path, 'DASRDownsamplerModel')
    opt['network_g'] = {'type': 'DASRDownsampler', 'num_feat': 8, 'num_block': 1, 'scale': 4}
    opt['network_d'] = {'type': 'DASRFSDiscriminator', 'filter_type': 'wavelet', 'norm': 'instance', 'num_feat': 8}
    opt['train'] = {
        'perceptual_opt': None,  # LPIPS runs in test_pipeline_through_train_py (official default there)
        'optim_g': {
            'type': 'Adam',
            'lr': 5e-3,
            'betas': [0.5, 0.999]
        },
        'optim_d': {
            'type': 'Adam',
            'lr': 1e-4,
            'betas': [0.5, 0.999]
        },
        'scheduler': {
            'type': 'LinearDecayLR',
            'start_iter': 10,
            'total_iter': 30
        },
        'total_iter': 30,
    }
    return opt


def sr_opt(tmp_path):
    opt = _base_opt(tmp_path, 'DASRModel')
    opt['network_g'] = {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 8,
        'num_block': 1,
        'num_grow_ch': 4
    }
    opt['network_d'] = {'type': 'DASRPatchDiscriminator', 'num_in_ch': 9, 'num_feat': 8}
    opt['train'] = {
        'optim_g': {
            'type': 'Adam',
            'lr': 5e-3,
            'betas': [0.9, 0.999]
        },
        'optim_d': {
            'type': 'Adam',
            'lr': 1e-4,
            'betas': [0.9, 0.999]
        },
        'scheduler': {
            'type': 'MultiStepLR',
            'milestones': [1000],
            'gamma': 0.5
        },
        'total_iter': 30,
        'fs': {
            'type': 'wavelet',
            'norm': True
        },
        'pixel_opt': {
            'type': 'DomainDistanceWeightedL1Loss',
            'loss_weight': 1.0
        },
        'pixel_ll_opt': {
            'type': 'LowFrequencyL1Loss',
            'loss_weight': 1.0
        },
        'perceptual_opt': {
            'type': 'LPIPSLoss',
            'loss_weight': 1.0
        },
        'gan_opt': {
            'type': 'GANLoss',
            'gan_type': 'vanilla',
            'loss_weight': 5e-3
        },
    }
    return opt


def _dsn_batch(tmp_path):
    from srplugins.data.dasr_dataset import DASRUnpairedDataset
    ds = DASRUnpairedDataset({
        'dataroot_lq': _write(tmp_path / 'real', 2, 40, 40, 1),
        'dataroot_gt': _write(tmp_path / 'hr', 2, 70, 75, 2),
        'gt_size': 64,
        'scale': 4
    })
    items = [ds[i] for i in range(2)]
    return {k: torch.stack([it[k] for it in items]) for k in ('gt', 'lq_bicubic', 'lq_real')}


def test_registered():
    assert MODEL_REGISTRY.get('DASRDownsamplerModel') is DASRDownsamplerModel
    assert MODEL_REGISTRY.get('DASRModel') is DASRModel


def test_linear_decay_rule():
    rule = LinearDecay(250, 400)
    assert rule(0) == rule(249) == 1.0
    assert rule(325) == pytest.approx(0.5) and rule(400) == 0.0 and rule(500) == 0.0
    with pytest.raises(ValueError, match='start_iter'):
        LinearDecay(400, 400)


def test_dsn_model_trains_and_saves_bundle(tmp_path):
    torch.manual_seed(0)
    model = build_model(dsn_opt(tmp_path))
    assert model.cri_perceptual is None  # null switches a term off
    assert model.cri_gan.loss_weight == 0.005 and model.cri_col.loss_weight == 1.0  # official defaults
    assert model.cri_col.filter_type == 'wavelet' and not model.cri_col.padding  # follows D, valid filtering
    batch = _dsn_batch(tmp_path)
    col = []
    for it in range(1, 13):
        model.feed_data(batch)
        model.update_learning_rate(it)
        model.optimize_parameters(it)
        log = model.get_current_log()
        assert all(math.isfinite(v) for v in log.values()), log
        col.append(log['l_g_col'])
    assert col[-1] < 0.75 * col[0], col
    assert model.optimizer_g.param_groups[0]['lr'] == pytest.approx(5e-3 * (1 - 1 / 20))  # decay started at 10

    # validation semantics: G(HR) against the paired real LR
    model.feed_data({'gt': batch['gt'][:1], 'lq': batch['lq_real'][:1]})
    model.test()
    visuals = model.get_current_visuals()
    assert visuals['result'].shape == visuals['gt'].shape == (1, 3, 16, 16)

    model.save(epoch=0, current_iter=12)
    bundle = torch.load(tmp_path / 'models' / 'dsn_12.pth', weights_only=True)
    assert bundle['network_d'] == model.net_d.config()
    assert set(bundle['params_d']) == set(model.net_d.state_dict())
    assert osp.isfile(tmp_path / 'models' / 'net_d_12.pth') and osp.isfile(tmp_path / 'states' / '12.state')

    # resume: optimisers and the LinearDecayLR state come back
    resumed = build_model(dsn_opt(tmp_path))
    resumed.resume_training(torch.load(tmp_path / 'states' / '12.state', weights_only=True))
    assert resumed.schedulers[0].last_epoch == model.schedulers[0].last_epoch
    assert resumed.optimizer_g.param_groups[0]['lr'] == pytest.approx(model.optimizer_g.param_groups[0]['lr'])


def test_dsn_model_option_errors(tmp_path):
    opt = dsn_opt(tmp_path)
    opt['train']['gan_opt'] = None
    with pytest.raises(ValueError, match='gan_opt'):
        build_model(opt)
    opt = dsn_opt(tmp_path)
    opt['train']['scheduler'] = {'type': 'LinearDecayLR', 'start_iter': 5, 'total_iter': 5}
    with pytest.raises(ValueError, match='start_iter'):
        build_model(opt)


def _sr_batch(num=2, lq=8):
    torch.manual_seed(1)
    gt = torch.nn.functional.interpolate(
        torch.rand(num, 3, lq // 2, lq // 2), scale_factor=8, mode='bicubic', align_corners=False).clamp(0, 1)
    return {
        'lq': torch.nn.functional.avg_pool2d(gt, 4),
        'gt': gt,
        'ddm': torch.rand(num, 1, lq, lq),
        'lq_real': torch.rand(num, 3, lq, lq),
        'gt_unpair': torch.rand(num, 3, lq * 4, lq * 4)
    }


def test_sr_model_trains_with_domain_distance_weights(tmp_path):
    torch.manual_seed(0)
    opt = sr_opt(tmp_path)
    opt['train']['perceptual_opt'] = None  # LPIPS runs in test_pipeline_through_train_py
    model = build_model(opt)
    assert model.cri_pix_ll.filter_type == 'wavelet'  # low band follows train.fs
    batch = _sr_batch()
    pix = []
    for it in range(1, 11):
        model.feed_data(batch)
        model.optimize_parameters(it)
        log = model.get_current_log()
        assert all(math.isfinite(v) for v in log.values()), log
        pix.append(log['l_g_pix'])
    assert pix[-1] < 0.7 * pix[0], pix
    assert model.output.shape == (2, 3, 32, 32)


def test_sr_model_weighting_semantics(tmp_path):
    """The pixel term equals mean(up(ddm) * |SR - HR|) on the generated half of one generator pass."""
    torch.manual_seed(0)
    opt = sr_opt(tmp_path)
    opt['train']['perceptual_opt'] = None
    opt['train']['pixel_ll_opt'] = None
    opt['train']['optim_g']['lr'] = 0.0
    model = build_model(opt)
    batch = _sr_batch()
    model.feed_data(batch)
    model.optimize_parameters(1)
    with torch.no_grad():
        sr = model.net_g(batch['lq'])
        weight = torch.nn.functional.interpolate(batch['ddm'], size=(32, 32), mode='bilinear', align_corners=False)
        expected = (weight * (sr - batch['gt']).abs()).mean()
    assert model.get_current_log()['l_g_pix'] == pytest.approx(expected.item(), rel=1e-5)

    opt = sr_opt(tmp_path)
    opt['train']['ddm_weighted'] = ['pixel', 'colour']
    with pytest.raises(ValueError, match='ddm_weighted'):
        build_model(opt)
    opt = sr_opt(tmp_path)
    opt['train']['fs'] = {'type': 'dct'}
    with pytest.raises(ValueError, match='fs.type'):
        build_model(opt)


def _load_generate():
    return load_script('dasr_generate_data')


@pytest.mark.slow
def test_pipeline_dsn_generate_sr(tmp_path, alexnet_weights, run_train):
    """DSN (official default losses, basicsr data loader and validation loop) -> generation script -> SR stage
    through srplugins/train.py with validation."""
    from basicsr.data import build_dataloader, build_dataset
    data = tmp_path / 'data'
    real = _write(data / 'real', 2, 40, 40, 1)
    hr = _write(data / 'hr', 2, 132, 136, 2)
    val_hr = _write(data / 'val_hr', 1, 48, 48, 3)
    val_lr = data / 'val_lr'
    val_lr.mkdir()
    Image.open(osp.join(val_hr, '0.png')).resize((12, 12), Image.BICUBIC).save(val_lr / '0.png')
    val = {
        'name': 'val',
        'type': 'PairedImageDataset',
        'dataroot_gt': val_hr,
        'dataroot_lq': str(val_lr),
        'io_backend': {
            'type': 'disk'
        },
        'phase': 'val',
        'scale': 4
    }
    psnr = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}

    # stage 1 in-process: no col / perceptual / gan options -> the official defaults (LPIPS alex 0.01 included)
    opt = dsn_opt(tmp_path)
    opt['network_g'] = {'type': 'DASRDownsampler', 'num_feat': 4, 'num_block': 1, 'scale': 4}
    opt['network_d'] = {'type': 'DASRFSDiscriminator', 'filter_type': 'gau', 'norm': 'batch', 'num_feat': 8}
    opt['train'] = {'scheduler': {'type': 'LinearDecayLR', 'start_iter': 2, 'total_iter': 4}}  # default Adam
    opt['val'] = {'metrics': psnr}
    model = build_model(opt)
    assert model.cri_perceptual.loss_weight == 0.01 and model.optimizer_g.defaults['betas'] == (0.5, 0.999)
    train_set = build_dataset({
        'name': 'unpaired',
        'type': 'DASRUnpairedDataset',
        'dataroot_lq': real,
        'dataroot_gt': hr,
        'gt_size': 128,
        'scale': 4,
        'phase': 'train'
    })
    loader = build_dataloader(
        train_set, {
            'phase': 'train',
            'num_worker_per_gpu': 0,
            'batch_size_per_gpu': 2,
            'use_shuffle': True
        },
        num_gpu=0,
        dist=False,
        seed=0)
    for it, batch in enumerate(loader, start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
        log = model.get_current_log()
        assert {'l_g_col', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
        assert all(math.isfinite(v) for v in log.values()), log
    val_loader = build_dataloader(build_dataset(val), val, num_gpu=0, dist=False)
    model.validation(val_loader, current_iter=2, tb_logger=None, save_img=False)
    assert math.isfinite(model.metric_results['psnr'])  # PSNR of G(HR) against the paired real LR
    model.save(epoch=0, current_iter=-1)

    generated = tmp_path / 'generated'
    stems = _load_generate().generate(str(tmp_path / 'models' / 'dsn_latest.pth'), hr, str(generated), progress=False)
    assert stems == ['0', '1']

    # stage 3 through srplugins/train.py
    sr = {
        'name': 'dasr_sr_test',
        'model_type': 'DASRModel',
        'num_gpu': 0,
        'manual_seed': 0,
        'scale': 4,
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None
        },
        'val': {
            'val_freq': 4,
            'save_img': False,
            'metrics': psnr
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 4,
            'use_tb_logger': False,
            'wandb': {
                'project': None,
                'resume_id': None
            }
        },
        'dist_params': {
            'backend': 'gloo',
            'port': 29500
        }
    }
    sr['network_g'] = {
        'type': 'RRDBNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 4,
        'num_block': 1,
        'num_grow_ch': 4
    }
    sr['network_d'] = {'type': 'DASRPatchDiscriminator', 'num_in_ch': 9, 'num_feat': 4}
    sr['datasets'] = {
        'train': {
            'name': 'dasr',
            'type': 'DASRPairedDataset',
            'dataroot_gt': hr,
            'dataroot_lq': str(generated / 'lq'),
            'dataroot_ddm': str(generated / 'ddm'),
            'dataroot_lq_real': real,
            'gt_size': 32,
            'use_shuffle': True,
            'num_worker_per_gpu': 0,
            'batch_size_per_gpu': 2,
            'dataset_enlarge_ratio': 2,
            'prefetch_mode': None
        },
        'val': {
            k: v
            for k, v in val.items() if k not in ('phase', 'scale')
        }
    }
    sr['train'] = copy.deepcopy(sr_opt(tmp_path)['train'])
    sr['train'].update(total_iter=4, warmup_iter=-1)
    result = run_train(sr, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    exp = tmp_path / 'experiments' / 'dasr_sr_test'
    log = open(glob.glob(str(exp / 'train_*.log'))[0]).read()
    assert re.search(r'# psnr: \d+\.\d+', log), log[-2000:]
    for term in ('l_g_pix', 'l_g_pix_ll', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'):
        values = [float(v) for v in re.findall(term + r': ([-+\de.]+)', log)]
        assert len(values) == 4 and all(math.isfinite(v) for v in values), (term, log[-2000:])
    assert osp.isfile(exp / 'models' / 'net_g_latest.pth') and osp.isfile(exp / 'models' / 'net_d_latest.pth')


def _norm_buffers(net):
    return {
        k: v.clone()
        for k, v in net.state_dict().items() if k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
    }


def test_dsn_generator_step_leaves_batchnorm_statistics_alone(tmp_path):
    """Running statistics after one iteration = those of exactly the D step's forwards (real, then fake)."""
    torch.manual_seed(0)
    opt = dsn_opt(tmp_path)
    opt['network_d'] = {'type': 'DASRFSDiscriminator', 'filter_type': 'gau', 'norm': 'batch', 'num_feat': 8}
    opt['train'].update(col_opt=None, perceptual_opt=None)  # only the adversarial term reaches G
    model = build_model(opt)
    batch = _dsn_batch(tmp_path)
    ref_g, ref_d = copy.deepcopy(model.net_g), copy.deepcopy(model.net_d)
    g_before = [p.detach().clone() for p in model.net_g.parameters()]
    model.feed_data(batch)
    model.optimize_parameters(1)

    with torch.no_grad():  # the reference, by hand: two train-mode forwards with the pre-step weights
        fake = ref_g(batch['gt'])
        ref_d.train()
        ref_d(batch['lq_real'])
        ref_d(fake)
    expected, got = _norm_buffers(ref_d), _norm_buffers(model.net_d)
    assert set(got) == {
        f'net.net.{i}.{b}'
        for i in (3, 6)
        for b in ('running_mean', 'running_var', 'num_batches_tracked')
    }
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7)
    assert int(got['net.net.3.num_batches_tracked']) == int(got['net.net.6.num_batches_tracked']) == 2
    # the adversarial gradient still reached the generator through D
    assert any(not torch.equal(p, q) for p, q in zip(model.net_g.parameters(), g_before))
    assert all(p.requires_grad for p in model.net_d.parameters())


def test_sr_model_checks_discriminator_channels(tmp_path):
    opt = sr_opt(tmp_path)
    opt['train']['perceptual_opt'] = None
    opt['network_d']['num_in_ch'] = 3
    with pytest.raises(ValueError, match=r"network_d.num_in_ch must be 9 for train.fs.type 'wavelet'.*got 3"):
        build_model(opt)
    opt['train']['fs'] = {'type': 'gau', 'kernel_size': 9}
    assert build_model(copy.deepcopy(opt)).net_d.model[0].in_channels == 3
    opt['network_d']['num_in_ch'] = 9
    with pytest.raises(ValueError, match=r"must be 3 for train.fs.type 'gau'"):
        build_model(opt)


def test_sr_model_logs_discriminator_probabilities(tmp_path):
    torch.manual_seed(0)
    opt = sr_opt(tmp_path)
    opt['train']['perceptual_opt'] = None
    opt['train']['optim_g']['lr'] = 0.0
    opt['train']['optim_d']['lr'] = 0.0
    model = build_model(opt)
    batch = _sr_batch()
    model.feed_data(batch)
    model.optimize_parameters(1)
    log = model.get_current_log()
    with torch.no_grad():
        real = torch.sigmoid(model.net_d(model.high(batch['gt_unpair']))).mean()
        fake = torch.sigmoid(model.net_d(model.high(model.net_g(batch['lq_real'])))).mean()
    assert log['out_d_real'] == pytest.approx(real.item(), rel=1e-5)
    assert log['out_d_fake'] == pytest.approx(fake.item(), rel=1e-5)


def test_dsn_bundle_written_atomically_and_never_nonfinite(tmp_path):
    from srplugins.utils.health import TrainingHealthError
    torch.manual_seed(0)
    model = build_model(dsn_opt(tmp_path))
    model.save_dsn_bundle(3)
    assert sorted(os.listdir(tmp_path / 'models')) == ['dsn_3.pth']  # no temporary file left
    with torch.no_grad():
        next(model.net_d.parameters()).fill_(float('inf'))
    with pytest.raises(TrainingHealthError, match=r'refusing to save dsn_4\.pth: params_d'):
        model.save_dsn_bundle(4)
    with pytest.raises(TrainingHealthError, match=r'refusing to save net_d_4\.pth: network net_d'):
        model.save(epoch=0, current_iter=4)
    assert sorted(os.listdir(tmp_path / 'models')) == ['dsn_3.pth', 'net_g_4.pth']
