"""The recipes of issue 17: each option file is parsed by basicsr's own ``parse_options`` and trains two CPU iterations.

Networks, batches and patches are shrunk in the parsed dict (as tests/test_realesrgan_model.py and
tests/test_dasr_model.py do); everything that is not size (model type, dataset type, losses and their weights, the
pretrained-file names and loading rules, scale) stays as the option file has it. Data and "pretrained" files are made
in tmp_path.
"""
import copy
import cv2
import glob
import math
import numpy as np
import os
import os.path as osp
import pytest
import re
import shlex
import sys
import torch
import yaml

import srplugins  # noqa: F401  (registers everything)

# isort: split
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.utils.options import parse_options
from torch.utils.data import DataLoader

from tests.conftest import REPO_ROOT

REAL_ESRGAN = 'options/train/RealESRGAN'
BATCH = 2
TINY_RRDB = {'num_feat': 4, 'num_block': 1, 'num_grow_ch': 4}


def parse_recipe(rel_path, root, monkeypatch, is_train=True):
    """``rel_path`` as basicsr's ``parse_options`` reads it for ``train.py`` / ``test.py`` (root = ``root``), on CPU."""
    monkeypatch.setattr(sys, 'argv', ['train.py' if is_train else 'test.py', '-opt', osp.join(REPO_ROOT, rel_path)])
    opt, _ = parse_options(str(root), is_train=is_train)
    opt['num_gpu'] = 0
    return opt


def load_yaml(rel_path):
    with open(osp.join(REPO_ROOT, rel_path), encoding='utf-8') as f:
        return yaml.safe_load(f)


def first_line(rel_path):
    with open(osp.join(REPO_ROOT, rel_path), encoding='utf-8') as f:
        return f.readline().rstrip('\n')


def smooth_images(folder, count, size, seed=0, names=None):
    """Smooth colour PNGs (upsampled noise), ``size`` = (h, w); returns the folder."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        small = rng.random((5, 6, 3)).astype(np.float32) * 255
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        name = names[i] if names else f'img{i}.png'
        cv2.imwrite(osp.join(folder, name), np.clip(img, 0, 255).astype(np.uint8))
    return str(folder)


def save_params(net_opt, path, key, seed):
    """A randomly initialised network of ``net_opt`` saved as basicsr does (``{key: state_dict}``); returns it."""
    torch.manual_seed(seed)
    state = build_network(copy.deepcopy(net_opt)).state_dict()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({key: state}, path)
    return state


def relocate(opt, key, folder):
    """Moves ``opt['path'][key]`` into ``folder`` under the option file's own file name; returns the new path."""
    path = osp.join(str(folder), osp.basename(opt['path'][key]))
    opt['path'][key] = path
    return path


def use_tmp_experiment(opt, tmp_path):
    for key in ('models', 'training_states', 'visualization', 'log'):
        os.makedirs(opt['path'][key], exist_ok=True)
    assert opt['path']['models'].startswith(str(tmp_path))


def two_iterations(opt, check_batch=None, check_model=None):
    """Dataset + model from ``opt``, two real training iterations; returns (model, [log dicts]).

    ``check_model(model)`` runs before training, ``check_batch(model, data)`` after each ``feed_data``.
    """
    torch.manual_seed(0)
    np.random.seed(0)
    train_opt = opt['datasets']['train']
    loader = DataLoader(build_dataset(train_opt), batch_size=train_opt['batch_size_per_gpu'], drop_last=True)
    model = build_model(opt)
    if check_model is not None:
        check_model(model)
    logs, current_iter = [], 0
    while current_iter < 2:
        for data in loader:
            current_iter += 1
            model.feed_data(data)
            if check_batch is not None:
                check_batch(model, data)
            model.optimize_parameters(current_iter)
            log = {k: float(v) for k, v in model.get_current_log().items()}
            assert log and all(math.isfinite(v) for v in log.values()), log
            logs.append(log)
            if current_iter == 2:
                break
    return model, logs


# ---------------------------------------------------------------------------------------------------------------------
# Real-ESRGAN x2plus (on-the-fly degradation)


def shrink_realesrgan(opt, tmp_path, gt_size=32, crop=80):
    opt['network_g'].update(TINY_RRDB)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 4
    train = opt['datasets']['train']
    train.update(
        dataroot_gt=smooth_images(tmp_path / 'gt', 3, (88, 84)),
        meta_info=None,
        crop_pad_size=crop,
        batch_size_per_gpu=BATCH,
        num_worker_per_gpu=0)
    opt.update(gt_size=gt_size, queue_size=2 * BATCH)
    use_tmp_experiment(opt, tmp_path)


@pytest.mark.parametrize('stage', ['RealESRNet', 'RealESRGAN'])
def test_x2plus_follows_the_x4plus_recipe_at_scale_2(stage):
    """Upstream's x2plus files are its x4plus files with scale 2 (the stage-1 file also changes its init)."""
    x4 = load_yaml(f'{REAL_ESRGAN}/train_{stage}_x4plus.yml')
    x2 = load_yaml(f'{REAL_ESRGAN}/train_{stage}_x2plus.yml')
    assert x2['scale'] == 2 and x2['network_g'].pop('scale') == 2
    assert x2['name'] == x4['name'].replace('x4plus', 'x2plus')
    if stage == 'RealESRNet':  # upstream: init from the released x4 GAN model, non-strict (conv_first differs)
        assert osp.basename(x2['path']['pretrain_network_g']) == 'RealESRGAN_4xplus.pth'
        assert x2['path']['strict_load_g'] is False and x2['path']['param_key_g'] == 'params_ema'
        # a renamed copy: srplugins refuses the upstream file name (_x4plus) in a scale-2 run
        from srplugins.compat import check_checkpoint_scale
        check_checkpoint_scale(x2['path']['pretrain_network_g'], 2)
        with pytest.raises(ValueError, match='says x4'):
            check_checkpoint_scale('experiments/pretrained_models/RealESRGAN_x4plus.pth', 2)
    else:
        assert x2['path']['pretrain_network_g'] == x4['path']['pretrain_network_g'].replace('x4plus', 'x2plus')
        assert x2['path']['strict_load_g'] is True
    for opt in (x2, x4):
        for key in ('name', 'scale', 'path'):
            opt.pop(key)
    assert x2 == x4


def test_realesrnet_x2plus_two_iterations_from_x4plus_weights(tmp_path, monkeypatch):
    opt = parse_recipe(f'{REAL_ESRGAN}/train_RealESRNet_x2plus.yml', tmp_path, monkeypatch)
    assert opt['model_type'] == 'RealESRNetAnyDeviceModel' and opt['datasets']['train']['scale'] == 2
    shrink_realesrgan(opt, tmp_path)
    x4_path = relocate(opt, 'pretrain_network_g', tmp_path / 'pretrained')
    x4_state = save_params({**opt['network_g'], 'scale': 4}, x4_path, 'params_ema', seed=1)

    def check(model, data):
        assert model.lq.shape == (BATCH, 3, 16, 16) and model.gt.shape == (BATCH, 3, 32, 32)

    model, logs = two_iterations(opt, check)
    assert all('l_pix' in log for log in logs)
    # the x4 weights were loaded (two Adam steps of lr 2e-4 move each weight by at most ~4e-4); conv_first (3 vs 12
    # input channels) was skipped by the non-strict load and keeps its random init
    state = model.get_bare_model(model.net_g).state_dict()
    assert state['conv_first.weight'].shape == (4, 12, 3, 3) and x4_state['conv_first.weight'].shape == (4, 3, 3, 3)
    for key in ('conv_last.weight', 'conv_up2.weight', 'conv_hr.weight', 'body.0.rdb1.conv1.weight'):
        assert torch.allclose(state[key], x4_state[key], atol=1e-3), key
        assert not torch.equal(state[key], x4_state[key]), key  # and trained


def test_realesrgan_x2plus_two_iterations(tmp_path, monkeypatch, vgg19_weights):
    opt = parse_recipe(f'{REAL_ESRGAN}/train_RealESRGAN_x2plus.yml', tmp_path, monkeypatch)
    assert opt['model_type'] == 'RealESRGANAnyDeviceModel'
    shrink_realesrgan(opt, tmp_path)
    stage1 = relocate(opt, 'pretrain_network_g', tmp_path / 'pretrained')
    stage1_state = save_params(opt['network_g'], stage1, 'params_ema', seed=2)  # strict load of a x2 RRDBNet

    def check(model, data):
        assert model.lq.shape == (BATCH, 3, 16, 16) and model.gt_usm.shape == (BATCH, 3, 32, 32)

    model, logs = two_iterations(opt, check)
    for log in logs:
        assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
    assert model.get_bare_model(model.net_g).conv_first.in_channels == 12
    assert set(model.get_bare_model(model.net_g).state_dict()) == set(stage1_state)


# ---------------------------------------------------------------------------------------------------------------------
# Real-ESRGAN fine-tuning on paired data (high_order_degradation: false)


def write_pairs(tmp_path, scale, count=3, gt_side=64):
    """GT and LQ folders with different file names per pair, and an upstream-format meta_info file."""
    gt_names = [f'pic{i}.png' for i in range(count)]
    lq_names = [f'pic{i}_lq.png' for i in range(count)]
    gt_dir = smooth_images(tmp_path / 'pairs' / 'HR', count, (gt_side, gt_side), seed=3, names=gt_names)
    lq_dir = tmp_path / 'pairs' / 'LR'
    lq_dir.mkdir(parents=True)
    for gt_name, lq_name in zip(gt_names, lq_names):
        gt = cv2.imread(osp.join(gt_dir, gt_name))
        cv2.imwrite(str(lq_dir / lq_name), cv2.resize(gt, (gt_side // scale, gt_side // scale), cv2.INTER_AREA))
    meta = tmp_path / 'pairs' / 'meta_info_pair.txt'
    # in reverse order: the dataset must follow the file, not sorted folder listings
    meta.write_text(''.join(f'{g}, {q}\n' for g, q in reversed(list(zip(gt_names, lq_names)))))
    return gt_dir, str(lq_dir), str(meta)


@pytest.mark.parametrize('scale', [4, 2])
def test_finetune_pairdata_two_iterations(tmp_path, monkeypatch, vgg19_weights, scale):
    name = f'finetune_RealESRGAN_x{scale}plus_pairdata.yml'
    assert first_line(f'{REAL_ESRGAN}/{name}').startswith('# Fine-tune Real-ESRGAN')
    opt = parse_recipe(f'{REAL_ESRGAN}/{name}', tmp_path, monkeypatch)
    assert opt['high_order_degradation'] is False and opt['scale'] == scale
    assert opt['network_g'].get('scale', 4) == scale
    train = opt['datasets']['train']
    gt_dir, lq_dir, meta = write_pairs(tmp_path, scale)
    train.update(
        dataroot_gt=gt_dir,
        dataroot_lq=lq_dir,
        meta_info=meta,
        gt_size=32,
        batch_size_per_gpu=BATCH,
        num_worker_per_gpu=0)
    opt['network_g'].update(TINY_RRDB)
    opt['network_d']['num_feat'] = 4
    use_tmp_experiment(opt, tmp_path)
    g_path = relocate(opt, 'pretrain_network_g', tmp_path / 'pretrained')
    d_path = relocate(opt, 'pretrain_network_d', tmp_path / 'pretrained')
    assert osp.basename(g_path) == f'RealESRGAN_x{scale}plus.pth'
    assert osp.basename(d_path) == f'RealESRGAN_x{scale}plus_netD.pth'
    g_state = save_params(opt['network_g'], g_path, opt['path']['param_key_g'], seed=4)
    d_state = save_params(opt['network_d'], d_path, opt['path']['param_key_d'], seed=5)

    dataset = build_dataset(copy.deepcopy(train))
    assert [(osp.basename(p['gt_path']), osp.basename(p['lq_path'])) for p in dataset.paths] == \
        [(f'pic{i}.png', f'pic{i}_lq.png') for i in (2, 1, 0)]

    def check(model, data):
        # the pairs are used as they are: no synthetic degradation, no training-pair pool
        assert torch.equal(model.lq, data['lq']) and torch.equal(model.gt, data['gt'])
        assert model.lq.shape == (BATCH, 3, 32 // scale, 32 // scale) and model.gt_usm.shape == (BATCH, 3, 32, 32)
        assert not hasattr(model, 'queue_lr')

    def loaded(model):  # the released weights load strictly into the recipe's networks
        for net, state in ((model.net_g, g_state), (model.net_d, d_state)):
            assert all(torch.equal(model.get_bare_model(net).state_dict()[k], v) for k, v in state.items())

    _, logs = two_iterations(opt, check, loaded)
    for log in logs:
        assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)


# ---------------------------------------------------------------------------------------------------------------------
# DASR at x2 (RealSR-style) and x1 (CameraSR-style, same-size LR / HR)

DASR_SCALES = [2, 1]


def dasr_val_pairs(tmp_path, scale, side=96):
    """A paired validation folder as the recipes' val / test blocks read it: HR and real LR under the same names."""
    hr = smooth_images(tmp_path / 'val' / 'HR', 2, (side, side), seed=7)
    lr = tmp_path / 'val' / 'LR'
    lr.mkdir(parents=True)
    for name in sorted(os.listdir(hr)):
        img = cv2.imread(osp.join(hr, name))
        cv2.imwrite(str(lr / name), cv2.resize(img, (side // scale, side // scale), interpolation=cv2.INTER_AREA))
    return hr, str(lr)


def run_validation(model, opt, val_opt):
    """basicsr's validation loop over ``val_opt`` (a dataset block of the recipe); returns {metric: value}."""
    from basicsr.data import build_dataloader
    val_opt.update(phase='val', scale=opt['scale'])
    loader = build_dataloader(build_dataset(val_opt), val_opt, num_gpu=0, dist=False)
    opt['val']['save_img'] = False
    model.validation(loader, current_iter=2, tb_logger=None, save_img=False)
    results = model.metric_results
    assert set(results) == set(opt['val']['metrics']), results
    assert all(math.isfinite(v) for v in results.values()), results
    return results


def train_dasr_dsn(tmp_path, monkeypatch, scale):
    """The DSN recipe at ``scale``, shrunk, after two CPU iterations; returns (opt, model)."""
    rel = f'options/train/DASR/train_DASR_DSN_x{scale}.yml'
    assert first_line(rel).startswith(f'# DASR step 1/3 at x{scale}')
    opt = parse_recipe(rel, tmp_path, monkeypatch)
    assert opt['model_type'] == 'DASRDownsamplerModel' and opt['network_g']['scale'] == scale
    assert opt['train']['perceptual_opt']['type'] == 'LPIPSLoss'  # the official L_per, kept in the tiny run
    opt['network_g'].update(num_feat=4, num_block=1)
    opt['network_d']['num_feat'] = 8
    gt_size = 32 * scale  # LR crops of 32: LPIPS' AlexNet needs at least that
    opt['datasets']['train'].update(
        dataroot_lq=smooth_images(tmp_path / 'real', 2, (40, 44), seed=1),
        dataroot_gt=smooth_images(tmp_path / 'hr', 2, (70, 72), seed=2),
        gt_size=gt_size,
        batch_size_per_gpu=BATCH,
        num_worker_per_gpu=0)
    use_tmp_experiment(opt, tmp_path)

    def check(model, data):
        lr = gt_size // scale
        assert model.hr.shape == (BATCH, 3, gt_size, gt_size) and model.lq_real.shape == (BATCH, 3, lr, lr)
        # x1: the generator's input is bicubic(HR, 1/1) = HR itself
        assert model.lq_bicubic.shape == (BATCH, 3, lr, lr)
        if scale == 1:
            assert torch.equal(model.lq_bicubic, model.hr)

    model, logs = two_iterations(opt, check)
    for log in logs:
        assert {'l_g_col', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
    assert model.output.shape == (BATCH, 3, gt_size // scale, gt_size // scale)
    return opt, model


@pytest.mark.parametrize('scale', DASR_SCALES)
def test_dasr_dsn_two_iterations_and_validation(tmp_path, monkeypatch, alexnet_weights, scale):
    opt, model = train_dasr_dsn(tmp_path, monkeypatch, scale)
    # validation block: G(HR) against the paired real LR at this scale
    hr, lr = dasr_val_pairs(tmp_path, scale)
    run_validation(model, opt, dict(opt['datasets']['val'], dataroot_gt=hr, dataroot_lq=lr))
    model.save(0, 2)
    bundle = torch.load(osp.join(opt['path']['models'], 'dsn_2.pth'), map_location='cpu', weights_only=True)
    assert bundle['scale'] == scale and bundle['network_g']['scale'] == scale


@pytest.mark.parametrize('scale', DASR_SCALES)
def test_dasr_generation_from_the_recipe_dsn_feeds_the_sr_recipe(tmp_path, monkeypatch, alexnet_weights, scale):
    """Step 2 on the step-1 bundle of the x2 / x1 recipe writes what the step-3 recipe's dataset reads. At x1 this
    needs generation to accept a scale-1 generator trained at ``scale: 1`` (its input is the HR image itself)."""
    generation = pytest.importorskip('srplugins.tools.dasr_generate')
    opt, model = train_dasr_dsn(tmp_path, monkeypatch, scale)
    model.save(0, 2)
    hr = smooth_images(tmp_path / 'target', 2, (64, 68), seed=8)
    out = str(tmp_path / 'generated')
    generation.generate(
        osp.join(opt['path']['models'], 'dsn_2.pth'), hr, out, tile=32, tile_pad=8, progress=False, force=True)
    sr_opt = parse_recipe(f'options/train/DASR/train_DASR_SR_x{scale}.yml', tmp_path / 'sr', monkeypatch)
    train = dict(
        sr_opt['datasets']['train'],
        dataroot_gt=hr,
        dataroot_lq=osp.join(out, 'lq'),
        dataroot_ddm=osp.join(out, 'ddm'),
        dataroot_lq_real=opt['datasets']['train']['dataroot_lq'],
        gt_size=32)
    dataset = build_dataset(train)
    sample = dataset[0]
    assert len(dataset) == 2 and sample['gt'].shape == (3, 32, 32)
    assert sample['lq'].shape == (3, 32 // scale, 32 // scale) and sample['ddm'].shape == (1, 32 // scale, 32 // scale)


def dasr_generated(tmp_path, scale, count=2, gt_side=48):
    """HR images and a step-2 style output (``lq/<stem>.png`` at HR / scale, ``ddm/<stem>.npy`` at LR size)."""
    hr = smooth_images(tmp_path / 'hr', count, (gt_side, gt_side), seed=3)
    lq, ddm = tmp_path / 'gen' / 'lq', tmp_path / 'gen' / 'ddm'
    lq.mkdir(parents=True)
    ddm.mkdir(parents=True)
    rng = np.random.default_rng(4)
    side = gt_side // scale
    for name in sorted(os.listdir(hr)):
        img = cv2.imread(osp.join(hr, name))
        cv2.imwrite(str(lq / name), cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA))
        np.save(ddm / name.replace('.png', '.npy'), rng.uniform(0.2, 1, (1, 1, side, side)).astype(np.float32))
    return hr, str(lq), str(ddm)


@pytest.mark.parametrize('scale', DASR_SCALES)
def test_dasr_sr_two_iterations_and_validation(tmp_path, monkeypatch, alexnet_weights, vgg19_weights, scale):
    rel = f'options/train/DASR/train_DASR_SR_x{scale}.yml'
    assert first_line(rel).startswith(f'# DASR step 3/3 at x{scale}')
    opt = parse_recipe(rel, tmp_path, monkeypatch)
    assert opt['model_type'] == 'DASRModel' and opt['network_g']['scale'] == scale
    # x2: the official x2 SRN layout (3-channel input, one upsampling stage); x1: basicsr's pixel-unshuffle RRDBNet
    assert opt['network_g']['type'] == {2: 'BSRGANRRDBNet', 1: 'RRDBNet'}[scale]
    opt['network_g'].update(TINY_RRDB)
    opt['network_d']['num_feat'] = 8
    gt_size = 32
    hr, lq, ddm = dasr_generated(tmp_path, scale)
    opt['datasets']['train'].update(
        dataroot_gt=hr,
        dataroot_lq=lq,
        dataroot_ddm=ddm,
        dataroot_lq_real=smooth_images(tmp_path / 'real', 2, (40, 44), seed=5),
        gt_size=gt_size,
        batch_size_per_gpu=BATCH,
        num_worker_per_gpu=0)
    use_tmp_experiment(opt, tmp_path)

    def check(model, data):
        lr = gt_size // scale
        assert model.lq.shape == model.lq_real.shape == (BATCH, 3, lr, lr) and model.ddm.shape == (BATCH, 1, lr, lr)
        assert model.gt.shape == model.gt_unpair.shape == (BATCH, 3, gt_size, gt_size)

    model, logs = two_iterations(opt, check)
    for log in logs:
        assert {'l_g_pix', 'l_g_pix_ll', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log)
    assert model.output.shape == (BATCH, 3, gt_size, gt_size)
    val_hr, val_lr = dasr_val_pairs(tmp_path, scale)
    run_validation(model, opt, dict(opt['datasets']['val'], dataroot_gt=val_hr, dataroot_lq=val_lr))


@pytest.mark.parametrize('scale', DASR_SCALES)
def test_dasr_test_options_evaluate_a_trained_network(tmp_path, monkeypatch, alexnet_weights, scale):
    """The test option file loads the SR stage's checkpoint (as training saves it) and evaluates the paired set."""
    rel = f'options/test/DASR/test_DASR_x{scale}.yml'
    assert first_line(rel).startswith(f'# Evaluate a DASR SR network at x{scale} on the')
    opt = parse_recipe(rel, tmp_path, monkeypatch, is_train=False)
    train_opt = load_yaml(f'options/train/DASR/train_DASR_SR_x{scale}.yml')
    assert opt['network_g'] == train_opt['network_g'] and opt['scale'] == train_opt['scale'] == scale
    assert opt['path']['pretrain_network_g'] == f'experiments/{train_opt["name"]}/models/net_g_latest.pth'
    opt['network_g'].update(TINY_RRDB)
    weights = relocate(opt, 'pretrain_network_g', tmp_path / 'experiments' / train_opt['name'] / 'models')
    state = save_params(opt['network_g'], weights, opt['path']['param_key_g'], seed=6)
    model = build_model(opt)
    assert all(torch.equal(model.net_g.state_dict()[k], v) for k, v in state.items())
    hr, lr = dasr_val_pairs(tmp_path, scale)
    results = run_validation(model, opt, dict(opt['datasets']['test_1'], dataroot_gt=hr, dataroot_lq=lr))
    assert {'psnr', 'ssim', 'psnr_y', 'ssim_y', 'lpips'} <= set(results)


# ---------------------------------------------------------------------------------------------------------------------
# One benchmark layout for the SRGAN and A2N test options

BENCHMARK_OPTIONS = sorted(
    osp.relpath(p, REPO_ROOT) for folder in ('SRGAN', 'A2N')
    for p in glob.glob(osp.join(REPO_ROOT, 'options', 'test', folder, '*.yml')))
BENCHMARK_SETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')


def test_benchmark_options_found():
    assert len([p for p in BENCHMARK_OPTIONS if '/SRGAN/' in p]) == 6
    assert len([p for p in BENCHMARK_OPTIONS if '/A2N/' in p]) == 6


@pytest.mark.parametrize('rel', BENCHMARK_OPTIONS)
def test_benchmark_options_share_the_edsr_layout(rel, tmp_path, monkeypatch):
    """Every benchmark set reads datasets/benchmark/<Set>/HR and LR_bicubic/X<s>/<stem>x<s>.png; a Set5 folder made
    in that layout (HR sides not multiples of the scale) pairs up, with GT cropped to LR size x scale."""
    opt = parse_recipe(rel, tmp_path, monkeypatch, is_train=False)
    scale = opt['scale']
    sets = {d['name']: d for d in opt['datasets'].values()}
    assert {'Set5', 'Set14', 'B100', 'Urban100'} <= set(sets)
    for name, dataset in sets.items():
        if name in BENCHMARK_SETS:
            assert dataset['dataroot_gt'] == f'datasets/benchmark/{name}/HR'
            assert dataset['dataroot_lq'] == f'datasets/benchmark/{name}/LR_bicubic/X{scale}'
        else:  # the official DIV2K layout, same LR naming
            assert name == 'DIV2K_val' and dataset['dataroot_lq'].endswith(f'DIV2K_valid_LR_bicubic/X{scale}')
        assert dataset['filename_tmpl'] == f'{{}}x{scale}'

    from basicsr.utils.matlab_functions import imresize
    set5 = dict(sets['Set5'])
    root = tmp_path / 'root'
    for key in ('dataroot_gt', 'dataroot_lq'):
        set5[key] = str(root / set5[key])
        os.makedirs(set5[key])
    rng = np.random.default_rng(scale)
    for stem, (h, w) in (('baby', (61, 50)), ('bird', (45, 67))):
        hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(osp.join(set5['dataroot_gt'], f'{stem}.png'), hr)
        cropped = hr[:h - h % scale, :w - w % scale].astype(np.float32) / 255
        lr = np.clip(imresize(cropped, 1 / scale) * 255, 0, 255).round().astype(np.uint8)
        cv2.imwrite(osp.join(set5['dataroot_lq'], f'{stem}x{scale}.png'), lr)  # EDSR / make-lr naming
    dataset = build_dataset(set5)
    assert len(dataset) == 2
    for i in range(2):
        sample = dataset[i]
        stem = osp.splitext(osp.basename(sample['gt_path']))[0]
        assert osp.basename(sample['lq_path']) == f'{stem}x{scale}.png'
        assert sample['gt'].shape[1:] == tuple(scale * n for n in sample['lq'].shape[1:])


NEW_OPTION_FILES = [
    f'{REAL_ESRGAN}/train_RealESRNet_x2plus.yml', f'{REAL_ESRGAN}/train_RealESRGAN_x2plus.yml',
    f'{REAL_ESRGAN}/finetune_RealESRGAN_x4plus_pairdata.yml', f'{REAL_ESRGAN}/finetune_RealESRGAN_x2plus_pairdata.yml',
    'options/train/DASR/train_DASR_DSN_x2.yml', 'options/train/DASR/train_DASR_SR_x2.yml',
    'options/train/DASR/train_DASR_DSN_x1.yml', 'options/train/DASR/train_DASR_SR_x1.yml',
    'options/train/DASR/train_DASR_SR_x2_unetsn.yml', 'options/train/DASR/train_DASR_SR_x1_unetsn.yml',
    'options/test/DASR/test_DASR_x2.yml', 'options/test/DASR/test_DASR_x1.yml'
]


@pytest.mark.parametrize('rel', NEW_OPTION_FILES)
def test_new_option_files_describe_themselves_and_name_their_command(rel):
    """First line: a one-line ``# description`` (what a recipe listing shows); the file names its own run command."""
    line = first_line(rel)
    assert re.fullmatch(r'# [A-Z].{20,115}', line), line
    with open(osp.join(REPO_ROOT, rel), encoding='utf-8') as f:
        text = f.read()
    script = 'test.py' if rel.startswith('options/test/') else 'train.py'
    assert f'srplugins/{script} -opt {rel}' in text
    assert yaml.safe_load(text)['name'] in rel.replace('.yml', '') or rel.startswith(REAL_ESRGAN)


def documented_command(rel, tool):
    """The ``<tool> ...`` command line in the header comments of ``rel`` (with its ``\\`` continuations) as argv."""
    with open(osp.join(REPO_ROOT, rel), encoding='utf-8') as f:
        header = [line[1:].strip() for line in f.read().split('\nname:')[0].splitlines() if line.startswith('#')]
    first = next(i for i, line in enumerate(header) if line.startswith(tool + ' '))
    command = [header[first]]
    while command[-1].endswith('\\'):
        command[-1] = command[-1][:-1]
        command.append(header[first + len(command)])
    return shlex.split(' '.join(command))[1:]


@pytest.mark.parametrize('rel', [p for p in BENCHMARK_OPTIONS if p.endswith(('_x2.yml', '_x4_MSE.yml', '_x3.yml'))])
def test_documented_make_lr_command_writes_what_the_test_option_reads(rel, tmp_path, monkeypatch):
    data_tool = pytest.importorskip('srplugins.tools.data')
    opt = parse_recipe(rel, tmp_path, monkeypatch, is_train=False)
    argv = documented_command(rel, 'srplugins-data')
    assert argv[0] == 'make-lr'
    monkeypatch.chdir(tmp_path)
    set5 = next(d for d in opt['datasets'].values() if d['name'] == 'Set5')
    smooth_images(set5['dataroot_gt'], 2, (61, 50), names=['baby.png', 'bird.png'])
    assert data_tool.main(argv) in (0, None)
    dataset = build_dataset(set5)
    assert len(dataset) == 2 and dataset[0]['gt'].shape[1:] == tuple(opt['scale'] * n
                                                                     for n in dataset[0]['lq'].shape[1:])


@pytest.mark.parametrize('scale', [4, 2])
def test_documented_meta_info_command_writes_what_the_finetune_option_reads(scale, tmp_path, monkeypatch):
    data_tool = pytest.importorskip('srplugins.tools.data')
    rel = f'{REAL_ESRGAN}/finetune_RealESRGAN_x{scale}plus_pairdata.yml'
    opt = parse_recipe(rel, tmp_path, monkeypatch)
    argv = documented_command(rel, 'srplugins-data')
    assert argv[:2] == ['meta-info', '--paired']
    monkeypatch.chdir(tmp_path)
    train = opt['datasets']['train']
    names = ['a.png', 'b.png', 'c.png']
    smooth_images(train['dataroot_gt'], 3, (64, 64), names=names)
    smooth_images(train['dataroot_lq'], 3, (64 // scale, 64 // scale), names=names)
    assert data_tool.main(argv) in (0, None)
    dataset = build_dataset(dict(train, gt_size=32))
    assert [osp.basename(p['gt_path']) for p in dataset.paths] == names
    assert dataset[1]['lq'].shape == (3, 32 // scale, 32 // scale)
