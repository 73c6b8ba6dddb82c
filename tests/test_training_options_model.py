"""srplugins' training options (TrainingOptionsMixin) on CPU: amp bf16 / fp16 + GradScaler resume, channels_last,
gradient accumulation and clipping, the training-health guard, atomic saving with network options, and the
validation options (self-ensemble, tiles)."""
import copy
import glob
import logging
import math
import numpy as np
import os
import os.path as osp
import pytest
import re
import torch
from basicsr.archs import build_network
from basicsr.models import build_model

from srplugins.models.training_options import parse_training_options, self_ensemble_forward
from srplugins.utils.health import TrainingHealthError, collapse_reason
from tests.conftest import load_option

TINY_A2N = {
    'type': 'A2N',
    'num_in_ch': 3,
    'num_out_ch': 3,
    'num_feat': 16,
    'num_up_feat': 8,
    'num_block': 2,
    'upscale': 2,
    'img_range': 255.,
    'non_attention_kernel': 3
}
TINY_MSR = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}
TINY_D = {'type': 'SRGANDiscriminator', 'num_in_ch': 3, 'num_feat': 8, 'input_size': 64}


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    @property
    def text(self):
        return '\n'.join(self.lines)


@pytest.fixture
def basicsr_log():
    """Messages of basicsr's root logger (it does not propagate to pytest's caplog)."""
    logger = logging.getLogger('basicsr')
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _opt(tmp_path, model_type='SRPlusModel', network_g=None, gan=False, **train):
    exp = tmp_path / 'exp'
    for sub in ('models', 'states', 'vis'):
        os.makedirs(exp / sub, exist_ok=True)
    opt = {
        'name': 'tiny',
        'model_type': model_type,
        'scale': 2,
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'network_g': copy.deepcopy(network_g or TINY_MSR),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'models': str(exp / 'models'),
            'training_states': str(exp / 'states'),
            'visualization': str(exp / 'vis'),
        },
        'train': {
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [1000],
                'gamma': 0.5
            },
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0,
                'reduction': 'mean'
            },
        },
        'val': {
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2,
                    'test_y_channel': False
                }
            }
        },
    }
    if gan:
        opt['network_d'] = copy.deepcopy(TINY_D)
        opt['train']['optim_d'] = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99]}
        opt['train']['gan_opt'] = {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.1}
    opt['train'].update(train)
    return opt


def _batch(seed, batch=2, lq=32, scale=2):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, lq * scale, lq * scale, generator=gen)
    gt = torch.nn.functional.avg_pool2d(gt, 5, 1, 2)  # some spatial structure
    return {'lq': torch.nn.functional.avg_pool2d(gt, scale), 'gt': gt}


def _build(opt, seed=0):
    torch.manual_seed(seed)
    return build_model(copy.deepcopy(opt))


def _params(model, name='net_g'):
    return {k: v.detach().clone() for k, v in model.get_bare_model(getattr(model, name)).state_dict().items()}


def _max_diff(a, b):
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_option_errors_name_the_option():
    assert parse_training_options({'amp': False})['amp'] == 'off'  # YAML reads `amp: off` as false
    assert parse_training_options({'compile': True})['compile'] == 'default'
    for bad, key in (({
            'amp': 'fp8'
    }, 'train.amp'), ({
            'accum_iter': 0
    }, 'train.accum_iter'), ({
            'grad_clip': -1
    }, 'train.grad_clip'), ({
            'compile': 'fast'
    }, 'train.compile'), ({
            'nonfinite': 'ignore'
    }, 'train.nonfinite'), ({
            'channels_last': 'yes'
    }, 'train.channels_last')):
        with pytest.raises(ValueError, match=re.escape(key)):
            parse_training_options(bad)


def test_precision_line_logged(tmp_path, basicsr_log):
    _build(_opt(tmp_path, amp='bf16', channels_last=True))
    assert 'precision: bf16 autocast, channels_last: True, compile: False' in basicsr_log.text


def test_compile_option(tmp_path, basicsr_log, monkeypatch):
    model = _build(_opt(tmp_path, compile='reduce-overhead'))
    assert 'compile: True (mode reduce-overhead)' in basicsr_log.text
    assert model.net_g._compiled_call_impl is not None  # compiled in place: keys and checkpoints unchanged
    assert set(model.net_g.state_dict()) == set(build_network(copy.deepcopy(TINY_MSR)).state_dict())
    monkeypatch.setattr(torch._dynamo, 'is_dynamo_supported', lambda: False)
    with pytest.raises(ValueError, match=r'train\.compile: torch\.compile is not supported'):
        _build(_opt(tmp_path, compile=True))


def test_bf16_demo_recipe_close_to_fp32(tmp_path, demo_data):
    """The A2N demo recipe (smaller A2N) on demo crops: bf16 losses finite and within a few % of fp32; weights and
    validation output stay float32."""
    import cv2
    recipe = load_option('options/demo/demo_A2N_x2.yml')
    names = sorted(glob.glob(osp.join(demo_data, 'train', 'HR', '*.png')))[:2]
    gts, lqs = [], []
    for name in names:
        hr = cv2.imread(name)[:64, :64, ::-1] / 255.
        lr = cv2.imread(name.replace(osp.join('train', 'HR'), osp.join('train', 'LR_bicubic', 'X2')))[:32, :32, ::-1]
        gts.append(torch.from_numpy(hr.copy()).permute(2, 0, 1).float())
        lqs.append(torch.from_numpy(lr / 255.).permute(2, 0, 1).float())
    data = {'lq': torch.stack(lqs), 'gt': torch.stack(gts)}
    runs = {}
    for amp in ('off', 'bf16'):
        opt = _opt(tmp_path, network_g=TINY_A2N, amp=amp)
        opt['train']['optim_g'] = copy.deepcopy(recipe['train']['optim_g'])
        opt['train']['pixel_opt'] = copy.deepcopy(recipe['train']['pixel_opt'])
        model = _build(opt)
        losses = []
        for it in range(1, 6):
            model.feed_data(data)
            model.optimize_parameters(it)
            losses.append(model.get_current_log()['l_pix'])
        runs[amp] = (losses, model)
    fp32, bf16 = runs['off'][0], runs['bf16'][0]
    assert all(math.isfinite(v) for v in bf16)
    for a, b in zip(fp32, bf16):
        assert abs(a - b) <= 0.05 * a, (fp32, bf16)
    model = runs['bf16'][1]
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    model.feed_data(data)
    model.test()
    assert model.output.dtype == torch.float32
    model.save_network(model.net_g, 'net_g', 5)
    saved = torch.load(osp.join(opt['path']['models'], 'net_g_5.pth'), weights_only=True)
    assert all(v.dtype == torch.float32 for v in saved['params'].values() if v.is_floating_point())


def test_fp16_grad_scalers_survive_resume_exactly(tmp_path):
    """G and D have their own CPU GradScaler; a resumed model continues with the same scales and the same weights."""
    opt = _opt(tmp_path, model_type='SRGANPlusModel', gan=True, amp='fp16')
    model = _build(opt)
    scalers = model._grad_scalers
    assert set(scalers) == {'optimizer_g', 'optimizer_d'} and scalers['optimizer_g'] is not scalers['optimizer_d']
    for it in (1, 2):
        model.feed_data(_batch(it))
        model.optimize_parameters(it)
    # distinct, non-default scales and growth counters, so a resume that loses them cannot pass
    scalers['optimizer_g'].update(1024.)
    scalers['optimizer_d'].update(32.)
    model.save(epoch=0, current_iter=2)
    state = torch.load(osp.join(opt['path']['training_states'], '2.state'), weights_only=True)
    assert state['grad_scalers']['optimizer_g']['scale'] == 1024.
    assert state['grad_scalers']['optimizer_d']['scale'] == 32.

    resumed_opt = copy.deepcopy(opt)
    resumed_opt['path']['pretrain_network_g'] = osp.join(opt['path']['models'], 'net_g_2.pth')
    resumed_opt['path']['pretrain_network_d'] = osp.join(opt['path']['models'], 'net_d_2.pth')
    resumed = _build(resumed_opt, seed=123)
    resumed.resume_training(state)
    for name in ('optimizer_g', 'optimizer_d'):
        assert resumed._grad_scalers[name].state_dict() == scalers[name].state_dict()
    for m in (model, resumed):
        m.feed_data(_batch(3))
        m.optimize_parameters(3)
    for net in ('net_g', 'net_d'):
        a, b = _params(model, net), _params(resumed, net)
        assert all(torch.equal(a[k], b[k]) for k in a), net
    assert resumed._grad_scalers['optimizer_g'].get_scale() == scalers['optimizer_g'].get_scale()


def test_channels_last_equals_plain(tmp_path):
    """Same output, losses and gradients of G and D (one GAN iteration) in channels_last as in the plain layout.

    Compared after one step: Adam's normalised update turns float-rounding differences of near-zero gradients into
    lr-sized weight differences, which says nothing about the memory format."""
    results = []
    for channels_last in (False, True):
        opt = _opt(tmp_path, model_type='SRGANPlusModel', gan=True, channels_last=channels_last)
        # batch norm on a batch of 2 amplifies rounding differences: the spectral-norm U-Net (Real-ESRGAN) instead
        opt['network_d'] = {'type': 'UNetSNDiscriminator', 'num_in_ch': 3, 'num_feat': 8}
        model = _build(opt)
        model.feed_data(_batch(1))
        model.optimize_parameters(1)
        if channels_last:
            conv = next(m for m in model.net_g.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
            assert model.output.is_contiguous(memory_format=torch.channels_last)
        grads = {
            f'{name}.{k}': p.grad.detach().clone()
            for name in ('net_g', 'net_d')
            for k, p in getattr(model, name).named_parameters()
        }
        results.append((model.output.detach().clone(), model.get_current_log(), grads))
    (out0, log0, grads0), (out1, log1, grads1) = results
    assert float((out0 - out1).abs().max()) < 1e-5
    for k, v in log0.items():
        assert abs(v - log1[k]) < 1e-5, k
    for k, g in grads0.items():
        assert float((g - grads1[k]).abs().max()) <= 1e-4 * float(g.abs().max()) + 1e-8, k


def test_accumulation_equals_one_large_batch(tmp_path):
    """accum_iter 2 over two batches of 2 == one step on the batch of 4 (MSRResNet has no batch norm)."""
    big = _batch(7, batch=4)
    halves = [{k: v[:2] for k, v in big.items()}, {k: v[2:] for k, v in big.items()}]
    accum = _build(_opt(tmp_path, accum_iter=2))
    start = _params(accum)
    accum.feed_data(halves[0])
    accum.optimize_parameters(1)
    assert _max_diff(start, _params(accum)) == 0  # no step inside the accumulation window
    accum.feed_data(halves[1])
    accum.optimize_parameters(2)
    plain = _build(_opt(tmp_path))
    plain.feed_data(big)
    plain.optimize_parameters(1)
    assert _max_diff(start, _params(plain)) > 1e-4
    assert _max_diff(_params(accum), _params(plain)) < 1e-6


def test_grad_clip_bounds_the_gradient_norm(tmp_path):
    model = _build(_opt(tmp_path, grad_clip=1e-3))
    model.feed_data(_batch(1))
    model.optimize_parameters(1)
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.net_g.parameters()]) if hasattr(
        torch.nn.utils, 'get_total_norm') else torch.norm(
            torch.stack([p.grad.norm() for p in model.net_g.parameters()]))
    assert float(norm) <= 1e-3 * (1 + 1e-4)


def _blow_up_opt(tmp_path, **train):
    opt = _opt(tmp_path, network_g=TINY_A2N, **train)
    opt['train']['optim_g']['lr'] = 1e30
    return opt


def test_nonfinite_stop_raises_at_first_bad_step_and_keeps_weights(tmp_path, basicsr_log):
    model = _build(_blow_up_opt(tmp_path))
    data = _batch(1)
    with pytest.raises(TrainingHealthError) as err:
        for it in range(1, 10):
            before = _params(model)
            model.feed_data(data)
            model.optimize_parameters(it)
    assert isinstance(err.value, RuntimeError)
    match = re.match(r'non-finite loss at iter (\d+): l_pix=(inf|nan)', str(err.value))
    assert match, str(err.value)
    assert int(match.group(1)) == it and it >= 2  # lr 1e30: the first step is finite, the next forward overflows
    assert match.group(0) in basicsr_log.text
    assert all(torch.equal(before[k], v) for k, v in _params(model).items())  # the bad step did not step
    assert all(bool(torch.isfinite(v).all()) for v in _params(model).values())


def test_nonfinite_skip_then_stop_after_max_skips(tmp_path, basicsr_log):
    model = _build(_blow_up_opt(tmp_path, nonfinite='skip', max_skips=2))
    data = _batch(1)
    model.feed_data(data)
    model.optimize_parameters(1)
    after_first = _params(model)
    model.feed_data(data)
    model.optimize_parameters(2)
    model.feed_data(data)
    model.optimize_parameters(3)
    assert basicsr_log.text.count('iteration skipped') == 2
    with pytest.raises(TrainingHealthError, match=r'non-finite loss at iter 4: l_pix=.*train\.max_skips=2'):
        model.feed_data(data)
        model.optimize_parameters(4)
    assert all(torch.equal(after_first[k], v) for k, v in _params(model).items())
    model.save_training_state(0, 3)
    assert torch.load(osp.join(tmp_path, 'exp', 'states', '3.state'), weights_only=True)['health_skips'] == 3


def test_saving_refuses_a_nonfinite_network(tmp_path):
    model = _build(_opt(tmp_path))
    with torch.no_grad():
        next(model.net_g.parameters())[0].fill_(float('nan'))
    with pytest.raises(TrainingHealthError, match=r'refusing to save net_g_4\.pth: network net_g'):
        model.save_network(model.net_g, 'net_g', 4)
    assert os.listdir(osp.join(tmp_path, 'exp', 'models')) == []


def test_saved_network_records_options_and_loads_with_basicsr(tmp_path):
    opt = _opt(tmp_path, model_type='SRGANPlusModel', gan=True, ema_decay=0.9)
    model = _build(opt)
    model.save(epoch=0, current_iter=-1)
    folder = opt['path']['models']
    assert sorted(os.listdir(folder)) == ['net_d_latest.pth', 'net_g_latest.pth']  # no temp files left
    saved = torch.load(osp.join(folder, 'net_g_latest.pth'), weights_only=True)
    assert type(saved['network_opt']) is dict and saved['network_opt'] == TINY_MSR and saved['scale'] == 2
    assert set(saved) == {'params', 'params_ema', 'network_opt', 'scale'}
    assert torch.load(osp.join(folder, 'net_d_latest.pth'), weights_only=True)['network_opt'] == TINY_D
    # basicsr's own loader (BaseModel.load_network) reads the file into a fresh network
    fresh = build_network(copy.deepcopy(TINY_MSR))
    model.load_network(fresh, osp.join(folder, 'net_g_latest.pth'), True, 'params_ema')
    ema = model.net_g_ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in fresh.state_dict().items())


def _rot_flip_reference(net, x):
    """Independent x8 reference: 4 rotations x optional mirror, built with numpy's rot90 / fliplr."""
    arr = x[0].permute(1, 2, 0).numpy()
    outs = []
    for k in range(4):
        for mirror in (False, True):
            t = np.rot90(arr, k)
            t = np.fliplr(t) if mirror else t
            y = net(torch.from_numpy(t.copy()).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            y = np.fliplr(y) if mirror else y
            outs.append(np.rot90(y, -k))
    return torch.from_numpy(np.mean(outs, axis=0).copy()).permute(2, 0, 1)[None]


def test_self_ensemble_matches_reference_and_is_used_in_validation(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        out = self_ensemble_forward(net, x)
        assert torch.allclose(out, _rot_flip_reference(net, x), atol=1e-6)
        assert not torch.allclose(out, net(x), atol=1e-2)  # the ensemble is not the plain output
    # an equivariant network (nearest upsampling): ensemble == plain
    up = torch.nn.Upsample(scale_factor=2)
    assert torch.allclose(self_ensemble_forward(up, x), up(x), atol=1e-7)

    opt = _opt(tmp_path)
    opt['val']['self_ensemble'] = True
    model = _build(opt)
    model.feed_data({'lq': x})
    model.test()
    with torch.no_grad():
        assert torch.allclose(model.output, self_ensemble_forward(model.net_g, x), atol=1e-6)
    assert model.net_g.training


def test_tiled_validation_equals_whole_image(tmp_path):
    opt = _opt(tmp_path)
    model = _build(opt)
    x = torch.rand(1, 3, 40, 56)
    model.feed_data({'lq': x})
    model.test()
    whole = model.output.clone()
    model.opt['val'].update(tile=16, tile_pad=16)
    model.feed_data({'lq': x})
    model.test()
    assert model.output.shape == whole.shape
    assert float((model.output - whole).abs().max()) < 1e-5


def test_collapse_reason():
    assert collapse_reason(torch.zeros(3, 8, 8)).startswith('all black')
    assert collapse_reason(torch.full((3, 8, 8), 0.5)).startswith('constant')
    assert collapse_reason(torch.rand(3, 8, 8)) is None


def test_blown_up_a2n_demo_stops_without_nonfinite_checkpoint(tmp_path, run_train, demo_data):
    """The A2N demo recipe (on SRPlusModel, bf16 + channels_last from the command line) with lr 1e30 through
    srplugins/train.py: logs the precision line, stops with the non-finite line, exit non-zero, and every network file
    it left is finite."""
    opt = load_option('options/demo/demo_A2N_x2.yml')
    opt['model_type'] = 'SRPlusModel'
    opt['network_g'] = copy.deepcopy(TINY_A2N)
    for phase in ('train', 'val'):
        ds = opt['datasets'][phase]
        for key in ('dataroot_gt', 'dataroot_lq'):
            ds[key] = osp.join(demo_data, osp.relpath(ds[key], osp.join('datasets', 'demo')))
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=1, num_worker_per_gpu=0)
    opt['datasets']['val']['dataroot_gt'] = opt['datasets']['val']['dataroot_lq'] = None
    del opt['datasets']['val']
    opt['val']['val_freq'] = 1000
    opt['val']['bicubic_baseline'] = False
    opt['train'].update(total_iter=6)
    opt['train']['optim_g']['lr'] = 1e30
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1)
    proc = run_train(opt, tmp_path, extra_args=['--force_yml', 'train:amp=bf16', 'train:channels_last=true'])
    assert 'precision: bf16 autocast, channels_last: True, compile: False' in proc.stdout, proc.stdout[-3000:]
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert re.search(r'non-finite loss at iter \d+: l_pix=(inf|nan)', proc.stdout), proc.stdout[-3000:]
    for path in glob.glob(str(tmp_path / 'experiments' / '*' / 'models' / '*.pth')):
        params = torch.load(path, weights_only=True)['params']
        assert all(bool(torch.isfinite(v).all()) for v in params.values()), path


def test_validation_reports_collapsed_outputs_by_name(tmp_path, basicsr_log):
    import cv2
    from basicsr.data import build_dataloader, build_dataset
    for sub, size in (('HR', 32), ('LR', 16)):
        os.makedirs(tmp_path / sub)
        cv2.imwrite(str(tmp_path / sub / 'black.png'), np.zeros((size, size, 3), np.uint8))
        cv2.imwrite(
            str(tmp_path / sub / 'photo.png'),
            np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    ds_opt = {
        'name': 'tiny_val',
        'type': 'PairedImageDataset',
        'phase': 'val',
        'scale': 2,
        'dataroot_gt': str(tmp_path / 'HR'),
        'dataroot_lq': str(tmp_path / 'LR'),
        'filename_tmpl': '{}',
        'io_backend': {
            'type': 'disk'
        }
    }
    model = _build(_opt(tmp_path))  # MSRResNet with zero biases: a black input gives an exactly black output
    loader = build_dataloader(build_dataset(ds_opt), ds_opt, num_gpu=0, dist=False)
    model.validation(loader, current_iter=3, tb_logger=None, save_img=False)
    assert re.search(r'Validation tiny_val at iter 3: output of black collapsed \(all black', basicsr_log.text)
    assert 'output of photo' not in basicsr_log.text
