"""The real entry points in subprocesses: CPU training, exact resume, 2-process DDP (launch and torchrun), demo."""
import cv2
import numpy as np
import os
import os.path as osp
import pytest
import re
import subprocess
import sys
import time
import torch

from tests.conftest import REPO_ROOT, load_option, run_command, write_option


def _tiny_paired_data(folder, scale=2, num=4, size=32):
    """num HR images of size x size and their bicubic LR (deterministic content)."""
    rng = np.random.default_rng(0)
    for sub in ('HR', 'LR'):
        os.makedirs(osp.join(folder, sub), exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(num):
        base = (np.sin(xx / (2 + i)) + np.cos(yy / (3 + i))) * 60 + 128
        img = np.clip(np.stack([base, base[::-1], base.T], axis=2) + rng.normal(0, 8, (size, size, 3)), 0, 255)
        img = img.astype(np.uint8)
        cv2.imwrite(osp.join(folder, 'HR', f'{i:03d}.png'), img)
        lr = cv2.resize(img, (size // scale, size // scale), interpolation=cv2.INTER_AREA)
        cv2.imwrite(osp.join(folder, 'LR', f'{i:03d}.png'), lr)
    return folder


def _tiny_paired_dataset(data, **extra):
    """basicsr PairedImageDataset over the tiny HR / LR folders made by ``_tiny_paired_data``."""
    return dict(
        {
            'type': 'PairedImageDataset',
            'dataroot_gt': osp.join(data, 'HR'),
            'dataroot_lq': osp.join(data, 'LR'),
            'filename_tmpl': '{}',
            'io_backend': {
                'type': 'disk'
            },
        }, **extra)


def _tiny_option(data, name, total_iter, scale=2, batch_size=2):
    dataset = _tiny_paired_dataset(data)
    return {
        'name': name,
        'model_type': 'SRModel',
        'scale': scale,
        'num_gpu': 0,
        'manual_seed': 10,
        'datasets': {
            # gt_size = image size and no flips: the data is deterministic, so a resumed run must equal a straight one
            'train':
            dict(
                dataset,
                name='tiny',
                gt_size=32,
                use_hflip=False,
                use_rot=False,
                num_worker_per_gpu=0,
                batch_size_per_gpu=batch_size,
                dataset_enlarge_ratio=1,
                prefetch_mode=None),
            'val':
            dict(dataset, name='tiny_val'),
        },
        'network_g': {
            'type': 'MSRResNet',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 8,
            'num_block': 1,
            'upscale': scale
        },
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None
        },
        'train': {
            'ema_decay': 0.9,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [3],
                'gamma': 0.5
            },
            'total_iter': total_iter,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0,
                'reduction': 'mean'
            },
        },
        'val': {
            'val_freq': 2,
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2,
                    'test_y_channel': True
                }
            }
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 2,
            'use_tb_logger': False,
            'wandb': {
                'project': None,
                'resume_id': None
            }
        },
        'dist_params': {
            'backend': 'gloo',
            'port': 29500
        },
    }


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _assert_state_equal(a, b, where='state'):
    """Recursive equality of checkpoint / training-state structures (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_state_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_state_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


def _random_crop_option(data, name, total_iter):
    """4 images, batch 1, random 16-pixel crops and flips, one DataLoader worker: the resumed epoch must continue."""
    opt = _tiny_option(data, name, total_iter, batch_size=1)
    opt['datasets']['train'].update(gt_size=16, use_hflip=True, use_rot=True, num_worker_per_gpu=1)
    opt['val']['val_freq'] = 3
    opt['logger']['save_checkpoint_freq'] = 3
    return opt


@pytest.mark.slow
def test_killed_save_resumes_exactly_from_the_previous_state(tmp_path, run_train):
    """9 iterations; the save of 9 killed (state 0 bytes, networks gone); --auto_resume from 6 gives the same files.

    4 images per epoch at batch 1: iteration 6 is in the middle of the second epoch; random crops and flips are drawn
    in a DataLoader worker, so the position in the epoch, the epoch's worker seeds and the RNG states must be restored,
    not replayed from the epoch's start (basicsr) nor re-drawn after re-seeding.
    """
    data = _tiny_paired_data(str(tmp_path / 'data'), num=4)
    opt = _random_crop_option(data, 'tiny_sr', 9)
    proc = run_train(opt, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    exp = tmp_path / 'experiments' / 'tiny_sr'
    straight = {
        name: _load(exp / folder / name)
        for folder, name in [('training_states', '9.state'), ('models', 'net_g_9.pth'), ('models', 'net_g_latest.pth')]
    }
    saved_state = _load(exp / 'training_states' / '6.state')
    (exp / 'training_states' / '9.state').write_bytes(b'')  # a kill -9 during the save of iteration 9
    (exp / 'models' / 'net_g_9.pth').unlink()
    (exp / 'models' / 'net_g_latest.pth').unlink()
    proc = run_train(opt, tmp_path, extra_args=['--auto_resume'])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert re.search(r'skipping the unreadable training state \S*9\.state', proc.stdout), proc.stdout[-3000:]
    assert 'Resuming training from epoch: 1, iter: 6.' in proc.stdout, proc.stdout[-3000:]
    assert re.search(r'iter:\s+7, lr:', proc.stdout) and not re.search(r'iter:\s+6, lr:', proc.stdout)
    assert not any(p.name.startswith('tiny_sr_archived') for p in (tmp_path / 'experiments').iterdir())
    _assert_state_equal(_load(exp / 'training_states' / '6.state'), saved_state)
    # networks, and the state: epoch, iteration, optimizer, scheduler, loop position and RNG states
    _assert_state_equal(_load(exp / 'training_states' / '9.state'), straight['9.state'], '9.state')
    for name in ('net_g_9.pth', 'net_g_latest.pth'):
        _assert_state_equal(_load(exp / 'models' / name), straight[name], name)
    # log polish: ETA never negative, best iteration within the run, final validation not repeated
    assert 'eta: -' not in proc.stdout
    assert 'Best: ' in proc.stdout and not re.search(r'@ 1[01] iter', proc.stdout)
    assert proc.stdout.count('Validation tiny_val') == 1  # iteration 9 is the last: no extra final validation


def test_auto_resume_without_states_warns(tmp_path, run_train):
    """The warning reaches stdout, warnings and the log file; the run logs as usual (train_*.log, INFO lines)."""
    data = _tiny_paired_data(str(tmp_path / 'data'))
    proc = run_train(_tiny_option(data, 'tiny_fresh', 1), tmp_path, extra_args=['--auto_resume'])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'WARNING: --auto_resume: no training state' in proc.stdout
    assert 'UserWarning: --auto_resume: no training state' in proc.stdout
    exp = tmp_path / 'experiments' / 'tiny_fresh'
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    logs = sorted(exp.glob('train_tiny_fresh_*.log'))
    assert len(logs) == 1, sorted(p.name for p in exp.iterdir())
    log = logs[0].read_text()
    assert re.search(r'WARNING: --auto_resume: no training state .* starting from iteration 0', log)
    assert 'Validation tiny_val' in log and re.search(r'# psnr: \d+\.\d+', log)
    assert 'Bicubic baseline on tiny_val' in log
    assert log.count('no training state') == 1 and proc.stdout.count('INFO: Validation tiny_val') == 1


def test_corrupt_pretrain_file_is_a_clear_error(tmp_path, run_train):
    """A truncated ``path.pretrain_network_g`` stops training with exit status 2 and one line naming the file and the
    option, not torch's unpickling traceback."""
    data = _tiny_paired_data(str(tmp_path / 'data'))
    pretrain = tmp_path / 'net_x2.pth'
    pretrain.write_bytes(b'PK\x03\x04' + bytes(100))  # the start of a zip file, cut off
    opt = _tiny_option(data, 'tiny_corrupt', 1)
    opt['path']['pretrain_network_g'] = str(pretrain)
    proc = run_train(opt, tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert f'error: path.pretrain_network_g = {pretrain}: truncated or not a checkpoint' in proc.stdout
    assert 'Traceback' not in proc.stdout


def test_missing_option_file_is_a_clear_error(tmp_path, run_train):
    proc = run_train(str(tmp_path / 'nope.yml'), tmp_path)
    assert proc.returncode != 0
    assert 'nope.yml' in proc.stdout and 'option file not found' in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize('launcher', ['launch', 'torchrun'])
def test_two_process_cpu_ddp(tmp_path, run_train, launcher):
    """2 processes on CPU (gloo) through the real launchers: trains, validates, rank 0 writes checkpoints."""
    if torch.cuda.is_available():
        pytest.skip('CPU distributed test')
    data = _tiny_paired_data(str(tmp_path / 'data'))
    opt = _tiny_option(data, f'tiny_ddp_{launcher}', 2)
    opt['num_gpu'] = 'auto'
    port = str(29650 + (os.getpid() % 200) + (0 if launcher == 'launch' else 1))
    if launcher == 'launch':
        prefix = ['-m', 'torch.distributed.launch', '--nproc_per_node=2', f'--master_port={port}']
    else:
        prefix = ['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}']
    proc = run_train(opt, tmp_path, extra_args=['--launcher', 'pytorch'], launcher=prefix)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'World size (gpu number): 2' in proc.stdout
    assert 'Validation tiny_val' in proc.stdout
    assert 'Bicubic baseline on tiny_val' in proc.stdout
    models = tmp_path / 'experiments' / opt['name'] / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth', 'net_g_latest.pth']


def test_demo_smoke(tmp_path, run_train, demo_data):
    """The README's default demo (A2N x2) through srplugins/train.py, shrunk to a few iterations and one val image."""
    os.symlink(osp.join(REPO_ROOT, 'datasets'), tmp_path / 'datasets')
    opt = load_option('options/demo/demo_A2N_x2.yml')
    assert opt['network_g']['type'] == 'A2N'
    val_dir = tmp_path / 'val_one'  # the smallest held-out image (the README run validates on all of them)
    for sub, source in (('HR', opt['datasets']['val']['dataroot_gt']), ('LR', opt['datasets']['val']['dataroot_lq'])):
        os.makedirs(val_dir / sub)
        os.symlink(osp.join(REPO_ROOT, source, 'chelsea.png'), val_dir / sub / 'chelsea.png')
    opt['datasets']['val']['dataroot_gt'] = str(val_dir / 'HR')
    opt['datasets']['val']['dataroot_lq'] = str(val_dir / 'LR')
    opt['train']['total_iter'] = 4
    opt['val']['val_freq'] = 4
    opt['logger']['print_freq'] = 2
    opt['datasets']['train']['num_worker_per_gpu'] = 0
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    proc = run_train(write_option(opt, tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'Network: A2N, with parameters' in proc.stdout
    assert re.search(r'\]\[epoch:\s*\d+, iter:\s+4, lr:', proc.stdout), proc.stdout[-3000:]
    tail = proc.stdout[proc.stdout.rindex('Validation demo_val'):]
    assert re.search(r'# psnr: \d+\.\d+\s+Best: .*\n\s+# ssim: 0\.\d+', tail)
    assert re.search(r'Bicubic baseline on demo_val .*\n\s+# psnr: \d+\.\d+\s+# ssim: 0\.\d+', tail)


def _tiny_test_option(data, checkpoint, bicubic_baseline=True):
    dataset = _tiny_paired_dataset(data, name='tiny_test_set')
    return {
        'name': 'tiny_test',
        'model_type': 'SRModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'test_1': dataset
        },
        'network_g': {
            'type': 'MSRResNet',
            'num_feat': 8,
            'num_block': 1,
            'upscale': 2
        },
        'path': {
            'pretrain_network_g': str(checkpoint),
            'param_key_g': 'params',
            'strict_load_g': True
        },
        'val': {
            'save_img': True,
            'suffix': 'sr',
            'bicubic_baseline': bicubic_baseline,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2,
                    'test_y_channel': True
                }
            }
        }
    }


@pytest.mark.slow
def test_test_entry_point(tmp_path, run_train):
    """``python srplugins/test.py -opt X``: loads the checkpoint, validates, writes images and logs the baseline."""
    from basicsr.archs.srresnet_arch import MSRResNet
    data = _tiny_paired_data(str(tmp_path / 'data'), num=2)
    checkpoint = tmp_path / 'tiny_x2.pth'
    torch.manual_seed(0)
    torch.save({'params': MSRResNet(num_feat=8, num_block=1, upscale=2).state_dict()}, checkpoint)
    proc = run_train(_tiny_test_option(data, checkpoint), tmp_path, script='test.py')
    assert proc.returncode == 0, proc.stdout[-4000:]
    results = tmp_path / 'results' / 'tiny_test'
    images = sorted(p.name for p in (results / 'visualization' / 'tiny_test_set').iterdir())
    assert images == ['000_sr.png', '001_sr.png']
    logs = sorted(results.glob('test_tiny_test_*.log'))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert 'Loading MSRResNet model from ' + str(checkpoint) in log
    assert 'Testing tiny_test_set...' in log
    assert re.search(r'Validation tiny_test_set\n\s+# psnr: \d+\.\d+', log), log[-2000:]
    assert re.search(r'Bicubic baseline on tiny_test_set \(x2, .*\n\s+# psnr: \d+\.\d+', log), log[-2000:]
    # a file named for another scale is refused, naming the option
    wrong = tmp_path / 'tiny_x3.pth'
    os.replace(checkpoint, wrong)
    proc = run_train(_tiny_test_option(data, wrong, bicubic_baseline=False), tmp_path, script='test.py')
    assert proc.returncode != 0
    assert 'path.pretrain_network_g = ' + str(wrong) + ': the file name says x3' in proc.stdout


@pytest.mark.parametrize('script', ['srplugins-train', 'srplugins-test'])
def test_installed_console_scripts(tmp_path, script):
    """The console scripts of an installed srplugins (skipped when they are not on PATH)."""
    import shutil

    from tests.conftest import run_command
    exe = shutil.which(script)
    if exe is None:
        pytest.skip(f'{script} is not on PATH (srplugins not installed with pip)')
    proc = run_command([exe, '-h'], tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert '-opt' in proc.stdout and '--auto_resume' in proc.stdout and '--launcher' in proc.stdout


def test_console_module_entry(tmp_path):
    """``python -m srplugins.train -h`` shows basicsr's options (the module entry point works)."""
    from tests.conftest import run_command
    proc = run_command([sys.executable, '-m', 'srplugins.train', '-h'], tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert '--auto_resume' in proc.stdout and '--launcher' in proc.stdout


def test_num_threads_option():
    from srplugins.utils.entry import _set_num_threads
    old = torch.get_num_threads()
    try:
        _set_num_threads(1)
        assert torch.get_num_threads() == 1
        _set_num_threads(None)
        assert torch.get_num_threads() == 1
        for bad in (0, -2, 1.5, '2', True):
            with pytest.raises(ValueError, match='num_threads'):
                _set_num_threads(bad)
    finally:
        torch.set_num_threads(old)


@pytest.mark.slow
def test_test_options_skip_missing_sets_and_force_yml_removes_keys(tmp_path, run_train):
    """A test option listing a set that is not on disk evaluates the others; ``--force_yml key=~`` removes a key."""
    from basicsr.archs.srresnet_arch import MSRResNet
    data = _tiny_paired_data(str(tmp_path / 'data'), num=1)
    checkpoint = tmp_path / 'tiny_x2.pth'
    torch.save({'params': MSRResNet(num_feat=8, num_block=1, upscale=2).state_dict()}, checkpoint)
    opt = _tiny_test_option(data, checkpoint, bicubic_baseline=False)
    opt['datasets']['test_2'] = _tiny_paired_dataset(str(tmp_path / 'Set14'), name='Set14')
    proc = run_train(opt, tmp_path, script='test.py')
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert re.search(r'WARNING: test set Set14 \(datasets\.test_2\) skipped: folder not found \(dataroot_gt = \S*Set14',
                     proc.stdout), proc.stdout[-3000:]
    assert re.search(r'Validation tiny_test_set\n\s+# psnr: \d+\.\d+', proc.stdout)
    proc = run_train(opt, tmp_path, script='test.py', extra_args=['--force_yml', 'datasets:test_2=~'])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'Set14' not in proc.stdout and 'Validation tiny_test_set' in proc.stdout


@pytest.mark.slow
def test_option_problems_are_reported_before_training(tmp_path, run_train):
    """A misspelled key is a warning with the closest key; a batch larger than the data is an error, exit 2."""
    data = _tiny_paired_data(str(tmp_path / 'data'), num=2)
    opt = _tiny_option(data, 'tiny_opts', 2, batch_size=4)
    opt['train']['ema_decy'] = 0.999
    proc = run_train(opt, tmp_path)
    assert proc.returncode == 2, proc.stdout[-4000:]
    assert 'unknown option key train.ema_decy (did you mean ema_decay?)' in proc.stdout
    assert re.search(r'error: option datasets\.train\.batch_size_per_gpu = 4 is larger than the samples', proc.stdout)
    assert 'Traceback' not in proc.stdout
    assert not list((tmp_path / 'experiments' / 'tiny_opts' / 'models').iterdir())
    proc = run_train(opt, tmp_path, extra_args=['--strict_options'])
    assert proc.returncode == 2 and 'error: unknown option key(s): train.ema_decy' in proc.stdout


_HEALTH_STOP = r'''
import sys, types
import srplugins  # isort: split
try:
    from srplugins.utils.health import TrainingHealthError
except ImportError:  # stand-in until the training-health guard exists
    class TrainingHealthError(RuntimeError):
        pass
    module = types.ModuleType('srplugins.utils.health')
    module.TrainingHealthError = TrainingHealthError
    sys.modules['srplugins.utils.health'] = module
from basicsr.models.sr_model import SRModel


def optimize_parameters(self, current_iter):
    raise TrainingHealthError(f'non-finite loss at iter {current_iter}: l_pix=inf')


SRModel.optimize_parameters = optimize_parameters
from srplugins.utils.entry import run_train
run_train(sys.argv[1:])
'''


def test_training_health_stop_exits_3_with_the_message(tmp_path):
    data = _tiny_paired_data(str(tmp_path / 'data'), num=1)
    opt_path = write_option(_tiny_option(data, 'tiny_health', 2, batch_size=1), tmp_path)
    proc = subprocess.run([sys.executable, '-c', _HEALTH_STOP, '-opt', opt_path],
                          cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1'),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert 'Training stopped: non-finite loss at iter 1: l_pix=inf' in proc.stderr
    assert 'Traceback' not in proc.stderr


_FROZEN_RANK = r'''
import os, sys, time
import srplugins  # isort: split
from basicsr.models.sr_model import SRModel

original = SRModel.optimize_parameters


def optimize_parameters(self, current_iter):
    if current_iter == 2 and os.environ.get('RANK') == '1':
        time.sleep(120)  # a frozen rank
    return original(self, current_iter)


SRModel.optimize_parameters = optimize_parameters
from srplugins.utils.entry import run_train
run_train(sys.argv[1:])
'''


@pytest.mark.slow
def test_frozen_ddp_rank_ends_the_run_after_dist_params_timeout(tmp_path, run_train):
    if torch.cuda.is_available():
        pytest.skip('CPU distributed test')
    data = _tiny_paired_data(str(tmp_path / 'data'))
    opt = _tiny_option(data, 'tiny_frozen', 4)
    opt['dist_params']['timeout'] = 5
    script = tmp_path / 'frozen.py'
    script.write_text(_FROZEN_RANK)
    port = str(29450 + os.getpid() % 100)
    start = time.time()
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}', str(script)]
    cmd += ['-opt', write_option(opt, tmp_path), '--launcher', 'pytorch']
    proc = run_command(cmd, tmp_path, timeout=110)
    assert proc.returncode != 0
    assert time.time() - start < 100
    assert 'The wait is bounded by the option dist_params.timeout (now 5 s)' in proc.stdout, proc.stdout[-4000:]


@pytest.mark.slow
def test_two_nodes_one_process_each_through_torchrun(tmp_path):
    """``torchrun --nnodes 2 --node_rank i`` with a static rendezvous on 127.0.0.1: two 'nodes' train 2 iterations."""
    if torch.cuda.is_available():
        pytest.skip('CPU distributed test')
    data = _tiny_paired_data(str(tmp_path / 'data'))
    opt = _tiny_option(data, 'tiny_2nodes', 2)
    opt['num_gpu'] = 'auto'
    opt_path = write_option(opt, tmp_path)
    port = str(29350 + os.getpid() % 100)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    train = [osp.join(REPO_ROOT, 'srplugins', 'train.py'), '-opt', opt_path, '--launcher', 'pytorch']
    nodes = []
    for rank in (0, 1):
        torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', f'--node_rank={rank}']
        torchrun += ['--nproc_per_node=1', '--master_addr=127.0.0.1', f'--master_port={port}']
        nodes.append(
            subprocess.Popen(
                torchrun + train,
                cwd=str(tmp_path),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True))
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, out in zip(nodes, outputs):
        assert node.returncode == 0, out[-4000:]
    assert 'World size (gpu number): 2' in outputs[0]
    models = tmp_path / 'experiments' / 'tiny_2nodes' / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth', 'net_g_latest.pth']
