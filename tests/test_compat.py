"""Each stack fix of srplugins.compat: what breaks without it, and that it works with it."""
import datetime
import importlib
import importlib.abc
import importlib.util
import json
import numpy as np
import os
import pytest
import re
import subprocess
import sys
import textwrap
import torch

from srplugins import compat
from tests.conftest import REPO_ROOT, _subprocess_env, load_script, run_command


def _run_python(code, env=None, timeout=300):
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=REPO_ROOT,
                          env=_subprocess_env(env),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=timeout)
    return proc


def _last_json(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_torchvision_functional_tensor_alias():
    """Without the alias ``import basicsr`` fails on torchvision >= 0.17; with it basicsr imports and works."""
    result = _last_json(
        _run_python("""
        import importlib.util, json
        missing = importlib.util.find_spec('torchvision.transforms.functional_tensor') is None
        try:
            import basicsr  # noqa
            plain = 'ok'
        except ModuleNotFoundError as error:
            plain = str(error)
        print(json.dumps({'missing': missing, 'plain': plain}))
        """))
    if result['missing']:
        assert 'functional_tensor' in result['plain']
    result = _last_json(
        _run_python("""
        import json, torch
        from srplugins import compat
        installed = compat.fix_torchvision_functional_tensor()
        again = compat.fix_torchvision_functional_tensor()
        import basicsr
        from basicsr.data.degradations import rgb_to_grayscale
        from torchvision.transforms.functional import rgb_to_grayscale as public
        x = torch.rand(1, 3, 4, 4)
        print(json.dumps({'installed': installed, 'again': again, 'same': bool(torch.equal(rgb_to_grayscale(x),
                                                                                            public(x)))}))
        """))
    assert result['again'] is False  # idempotent
    assert result['same']


class _FunctionalTensorFinder(importlib.abc.MetaPathFinder):
    """Makes ``torchvision.transforms.functional_tensor`` missing (``present=False``) or present (a marker module)."""
    name = 'torchvision.transforms.functional_tensor'

    def __init__(self, present):
        self.present = present

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        if not self.present:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.rgb_to_grayscale = 'real functional_tensor'


@pytest.mark.parametrize('present', [False, True])
def test_functional_tensor_alias_only_when_missing(monkeypatch, present):
    """The alias is installed exactly when torchvision lacks the module, and a real module is never shadowed."""
    from torchvision.transforms import functional
    name = _FunctionalTensorFinder.name
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, 'meta_path', [_FunctionalTensorFinder(present)] + sys.meta_path)
    try:
        installed = compat.fix_torchvision_functional_tensor()
        module = importlib.import_module(name)
        assert installed is not present
        if present:
            assert module.rgb_to_grayscale == 'real functional_tensor'
        else:
            assert module.rgb_to_grayscale is functional.rgb_to_grayscale
            assert 'srplugins alias' in module.__doc__
            assert compat.fix_torchvision_functional_tensor() is False  # idempotent
    finally:
        sys.modules.pop(name, None)  # monkeypatch restores the alias that srplugins installed at import (if any)

    from tests.pkg_resources_standin import PkgResourcesStandInFinder
    assert sum(isinstance(f, PkgResourcesStandInFinder) for f in sys.meta_path) <= 1  # never installed twice


@pytest.mark.parametrize('argv, expected', [
    (['--local-rank=1', '-opt', 'x.yml'], ['--local_rank=1', '-opt', 'x.yml']),
    (['-opt', 'x.yml', '--local-rank', '3', '--launcher', 'pytorch'
      ], ['-opt', 'x.yml', '--local_rank', '3', '--launcher', 'pytorch']),
    (['--local_rank=0', '-opt', 'x.yml'], ['--local_rank=0', '-opt', 'x.yml']),
    (['-opt', 'my--local-rank=1.yml'], ['-opt', 'my--local-rank=1.yml']),
])
def test_normalize_local_rank_argv(argv, expected):
    assert compat.normalize_local_rank_argv(argv) == expected


@pytest.mark.slow
def test_basicsr_parser_rejects_hyphen_and_accepts_normalised(tmp_path):
    """basicsr's own parse_options exits on ``--local-rank=0`` and accepts the normalised form."""
    opt = tmp_path / 'x.yml'
    opt.write_text('name: x\nmodel_type: SRModel\nscale: 2\nnum_gpu: 0\nmanual_seed: 0\ndatasets: {}\n'
                   'path: {}\n')
    code = f"""
    import sys, json
    import srplugins
    from basicsr.utils.options import parse_options
    sys.argv = ['train.py', ARGV, '-opt', {str(opt)!r}]
    try:
        opt, args = parse_options({str(tmp_path)!r}, is_train=False)
        print(json.dumps({{'ok': True}}))
    except SystemExit as error:
        print(json.dumps({{'ok': False, 'code': error.code}}))
    """
    plain = _last_json(_run_python(code.replace('ARGV', repr('--local-rank=0'))))
    assert plain == {'ok': False, 'code': 2}
    fixed = _last_json(_run_python(code.replace('ARGV', repr(compat.normalize_local_rank_argv(['--local-rank=0'])[0]))))
    assert fixed == {'ok': True}


def test_init_dist_and_ddp_on_cpu():
    """basicsr's init_dist / model_to_device need CUDA; the patched ones give a gloo group and a CPU DDP model."""
    if torch.cuda.is_available():
        pytest.skip('this test proves the CPU path; a GPU is present')
    env = {'RANK': '0', 'WORLD_SIZE': '1', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '29611'}
    result = _last_json(
        _run_python(
            """
        import json
        import torch
        import srplugins
        from srplugins import compat
        from basicsr.utils import dist_util
        from basicsr.models.base_model import BaseModel
        import basicsr.utils.options as options
        out = {}
        try:
            dist_util._init_dist_pytorch('gloo')
            out['original_init'] = 'ok'
        except Exception as error:
            out['original_init'] = type(error).__name__
        out['patched_in_options'] = options.init_dist is compat.init_dist
        compat.set_dist_params({'timeout': 60})
        options.init_dist('pytorch')
        import torch.distributed as dist
        out['backend'] = dist.get_backend()
        from basicsr.models import build_model
        opt = {'name': 'ddp', 'model_type': 'SRModel', 'is_train': False, 'dist': True, 'num_gpu': 0, 'scale': 2,
               'network_g': {'type': 'MSRResNet', 'num_feat': 4, 'num_block': 1, 'upscale': 2},
               'path': {'pretrain_network_g': None}, 'val': None}
        model = build_model(opt)
        try:
            compat._ORIGINALS['model_to_device'](model, torch.nn.Linear(2, 2))
            out['original_ddp'] = 'ok'
        except Exception as error:
            out['original_ddp'] = type(error).__name__
        out['ddp'] = type(model.net_g).__name__
        out['device_ids'] = model.net_g.device_ids
        y = model.net_g(torch.rand(1, 3, 8, 8))
        out['shape'] = list(y.shape)
        dist.destroy_process_group()
        print(json.dumps(out))
        """,
            env=env))
    assert result['original_init'] == 'ZeroDivisionError'
    assert result['patched_in_options']
    assert result['backend'] == 'gloo'
    assert result['original_ddp'] == 'RuntimeError'  # basicsr: device_ids=[torch.cuda.current_device()]
    assert result['ddp'] == 'DistributedDataParallel'
    assert result['device_ids'] is None
    assert result['shape'] == [1, 3, 16, 16]


def test_init_dist_rejects_nccl_without_cuda():
    if torch.cuda.is_available():
        pytest.skip('needs a machine without CUDA')
    with pytest.raises(ValueError, match='gloo'):
        compat.init_dist('pytorch', backend='nccl')


class _DistCalls:
    """Records what ``init_dist`` asks of torch.cuda / torch.distributed (CUDA simulated, nothing initialised)."""

    def __init__(self, monkeypatch, cuda, device_count=4):
        import torch.distributed as dist
        import torch.multiprocessing as mp
        self.set_device, self.init_process_group, self.start_method = [], [], []
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: device_count)
        monkeypatch.setattr(torch.cuda, 'set_device', self.set_device.append)
        monkeypatch.setattr(dist, 'init_process_group', lambda **kwargs: self.init_process_group.append(kwargs))
        monkeypatch.setattr(mp, 'get_start_method', lambda allow_none=False: None)
        monkeypatch.setattr(mp, 'set_start_method', self.start_method.append)
        monkeypatch.setitem(compat._STATE, 'dist_params', {})


def _init_dist_from_option(tmp_path, monkeypatch, dist_params, env):
    """What ``srplugins/train.py -opt X --launcher pytorch`` does: read X's dist_params, then basicsr's init_dist."""
    import basicsr.utils.options as options

    from srplugins.utils.entry import _prepare
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if 'LOCAL_RANK' not in env:
        monkeypatch.delenv('LOCAL_RANK', raising=False)
    opt = {'name': 'd', 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 'auto', 'datasets': {}, 'path': {}}
    if dist_params is not None:
        opt['dist_params'] = dist_params
    path = tmp_path / 'opt.yml'
    path.write_text(json.dumps(opt))  # JSON is YAML
    monkeypatch.setattr(sys, 'argv', ['train.py'])
    _prepare(['-opt', str(path), '--launcher', 'pytorch'])
    options.init_dist('pytorch')


def test_init_dist_yaml_backend_and_timeout_with_cuda(tmp_path, monkeypatch):
    """YAML ``dist_params.backend: gloo`` wins over CUDA's nccl; ``timeout`` is seconds; LOCAL_RANK picks the GPU."""
    calls = _DistCalls(monkeypatch, cuda=True)
    dist_params = {'backend': 'gloo', 'port': 29500, 'timeout': 90}
    env = {'RANK': '6', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1'}
    _init_dist_from_option(tmp_path, monkeypatch, dist_params, env)
    assert calls.init_process_group == [{'backend': 'gloo', 'timeout': datetime.timedelta(seconds=90)}]
    assert calls.set_device == [1]  # basicsr: RANK % device_count = 2
    assert calls.start_method == ['spawn']  # as basicsr with CUDA


def test_init_dist_nccl_with_cuda_and_local_rank(tmp_path, monkeypatch):
    calls = _DistCalls(monkeypatch, cuda=True)
    _init_dist_from_option(tmp_path, monkeypatch, None, {'RANK': '6', 'WORLD_SIZE': '8', 'LOCAL_RANK': '3'})
    assert calls.init_process_group == [{'backend': 'nccl'}]  # no timeout given: torch's default
    assert calls.set_device == [3]
    # without LOCAL_RANK (a launcher that sets only RANK): basicsr's RANK % device_count
    calls = _DistCalls(monkeypatch, cuda=True)
    _init_dist_from_option(tmp_path, monkeypatch, {'timeout': '30'}, {'RANK': '6', 'WORLD_SIZE': '8'})
    assert calls.init_process_group == [{'backend': 'nccl', 'timeout': datetime.timedelta(seconds=30)}]
    assert calls.set_device == [2]


def test_init_dist_without_cuda_picks_gloo(tmp_path, monkeypatch):
    calls = _DistCalls(monkeypatch, cuda=False, device_count=0)
    _init_dist_from_option(tmp_path, monkeypatch, {'port': 29500}, {'RANK': '1', 'WORLD_SIZE': '2', 'LOCAL_RANK': '1'})
    assert calls.init_process_group == [{'backend': 'gloo'}]
    assert calls.set_device == [] and calls.start_method == []  # no GPU to select; fork kept on CPU
    with pytest.raises(ValueError, match='gloo'):
        compat.init_dist('pytorch', backend='nccl')


def test_dist_params_must_be_mapping():
    with pytest.raises(ValueError, match='dist_params'):
        compat.set_dist_params(['gloo'])
    compat.set_dist_params(None)


class _RandomDataset(torch.utils.data.Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.float64(np.random.rand())


def _two_epochs(worker_init):
    import basicsr.data
    original = basicsr.data.worker_init_fn
    basicsr.data.worker_init_fn = worker_init
    try:
        torch.manual_seed(0)
        loader = basicsr.data.build_dataloader(
            _RandomDataset(), {
                'phase': 'train',
                'num_worker_per_gpu': 1,
                'batch_size_per_gpu': 4
            },
            num_gpu=0,
            dist=False,
            sampler=None,
            seed=0)
        return [sorted(batch.tolist()) for _, batch in zip(range(2), _epochs(loader))]
    finally:
        basicsr.data.worker_init_fn = original


def _epochs(loader):
    while True:
        yield next(iter(loader))


def test_worker_randomness_differs_between_epochs():
    """basicsr's worker_init_fn repeats the numpy stream every epoch; the patched one does not (and is seeded)."""
    from basicsr.data import worker_init_fn as patched
    assert patched is compat.worker_init_fn
    original = compat._ORIGINALS['worker_init_fn']
    first, second = _two_epochs(original)
    assert first == second  # the bug: the same "random" draws every epoch
    first, second = _two_epochs(patched)
    assert first != second
    assert _two_epochs(patched) == [first, second]  # reproducible from the seed


@pytest.mark.parametrize('name, scale', [
    ('aan_x2.pt', 2),
    ('experiments/pretrained_models/A2N/aan_x3.pt', 3),
    ('net_g_x3_latest.pth', 3),
    ('RealESRGAN_x4plus.pth', 4),
    ('A2N_SRx4_DIV2K.pth', 4),
    ('x2_model.pth', 2),
    ('A2N_X2.PTH', 2),
    ('net_g_5000.pth', None),
    ('max4.pth', None),
    ('net_x16.pth', None),
    ('', None),
    (None, None),
])
def test_scale_from_filename(name, scale):
    from srplugins import checkpoints
    assert compat.scale_from_filename(name) == scale
    assert checkpoints.scale_from_filename(name) == scale


def test_scale_from_filename_refuses_two_scales():
    from srplugins import checkpoints
    for name in ('A2N_x2_to_x4.pth', 'model_x2_x3.pt'):
        with pytest.raises(ValueError, match='x2, x[34]'):
            compat.scale_from_filename(name)
        assert compat.scale_from_filename(name, strict=False) is None
        assert checkpoints.scale_from_filename(name) is None  # detection guesses nothing from such a name
    assert compat.scale_from_filename('net_x2_ema_x2.pth') == 2  # the same scale twice is one scale


def test_eval_a2n_official_uses_the_shared_parser():
    eval_a2n_official = load_script('eval_a2n_official')
    eval_a2n_official.check_scale_in_name('aan_x2.pt', 2)
    eval_a2n_official.check_scale_in_name('weights.pt', 3)
    with pytest.raises(ValueError, match='x3 but --scale is 2'):
        eval_a2n_official.check_scale_in_name('net_g_x3_latest.pth', 2)
    with pytest.raises(ValueError, match='different scales'):
        eval_a2n_official.check_scale_in_name('A2N_x2_to_x4.pth', 4)


def test_checkpoint_scale_in_file_name():
    compat.check_checkpoint_scale('experiments/aan_x2.pt', 2)
    compat.check_checkpoint_scale('net_g_5000.pth', 3)
    compat.check_checkpoint_scale('RealESRGAN_x4plus.pth', 4)
    with pytest.raises(ValueError, match=r'x3.*scale.*2'):
        compat.check_checkpoint_scale('pretrained/aan_x3.pt', 2)
    with pytest.raises(ValueError, match=r'path.pretrain_network_g = A2N_x2_to_x4.pth: .*different scales'):
        compat.check_checkpoint_scale('A2N_x2_to_x4.pth', 4)


def test_load_network_reports_scale_mismatch_and_missing_file(tmp_path):
    from basicsr.archs.srresnet_arch import MSRResNet
    from basicsr.models import build_model
    path = tmp_path / 'msrresnet_x3.pth'
    torch.save({'params': MSRResNet(num_feat=4, num_block=1, upscale=2).state_dict()}, path)
    opt = {
        'name': 'x',
        'model_type': 'SRModel',
        'is_train': False,
        'dist': False,
        'num_gpu': 0,
        'scale': 2,
        'network_g': {
            'type': 'MSRResNet',
            'num_feat': 4,
            'num_block': 1,
            'upscale': 2
        },
        'path': {
            'pretrain_network_g': str(path),
            'strict_load_g': True
        },
        'val': None
    }
    with pytest.raises(ValueError, match='x3'):
        build_model(opt)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'missing_x2.pth')
    with pytest.raises(FileNotFoundError, match='missing_x2.pth'):
        build_model(opt)
    good = tmp_path / 'msrresnet_x2.pth'
    os.replace(path, good)
    opt['path']['pretrain_network_g'] = str(good)
    model = build_model(opt)
    saved = torch.load(good, weights_only=True)['params']
    for key, value in model.net_g.state_dict().items():
        assert torch.equal(value, saved[key])


def test_load_network_reads_pretrain_files_with_weights_only(tmp_path):
    """basicsr's ``load_network`` reads ``path.pretrain_network_*`` with ``torch.load(weights_only=True)``: a truncated
    or random file is an error naming the file and its option, a pickled object other than tensors / containers is
    refused."""
    import argparse
    from basicsr.models import build_model

    from srplugins.checkpoints import CheckpointReadError
    opt = _gan_option(tmp_path, 'srresnet_x2.pth', 'vgg_d.pth')
    good = tmp_path / 'srresnet_x2.pth'
    data = good.read_bytes()
    truncated = tmp_path / 'truncated_x2.pth'
    truncated.write_bytes(data[:len(data) // 2])
    opt['path']['pretrain_network_g'] = str(truncated)
    with pytest.raises(
            CheckpointReadError, match=r'^path.pretrain_network_g = .*truncated_x2.pth: truncated or not a '
            'checkpoint'):
        build_model(opt)
    opt['path']['pretrain_network_g'] = str(good)
    random_d = tmp_path / 'random_d.pth'
    random_d.write_bytes(np.random.default_rng(0).bytes(4096))
    opt['path']['pretrain_network_d'] = str(random_d)
    with pytest.raises(
            CheckpointReadError, match=r'^path.pretrain_network_d = .*random_d.pth: truncated or not a '
            'checkpoint'):
        build_model(opt)
    opt['path']['pretrain_network_d'] = str(tmp_path / 'vgg_d.pth')
    # a valid pickle holding an object outside torch's weights-only allow-list: refused, never unpickled
    unsafe = tmp_path / 'unsafe_x2.pth'
    state = torch.load(good, weights_only=True)
    torch.save(dict(state, args=argparse.Namespace(lr=1e-4)), unsafe)
    assert isinstance(torch.load(unsafe, weights_only=False)['args'], argparse.Namespace)
    opt['path']['pretrain_network_g'] = str(unsafe)
    with pytest.raises(CheckpointReadError, match=r'^path.pretrain_network_g = .*unsafe_x2.pth holds pickled objects'):
        build_model(opt)
    # an accepted file is loaded by basicsr as before (param_key, strict)
    opt['path']['pretrain_network_g'] = str(good)
    model = build_model(opt)
    assert all(torch.equal(v, state['params'][k]) for k, v in model.net_g.state_dict().items())


def _gan_option(tmp_path, g_name, d_name, scale=2):
    from basicsr.archs.discriminator_arch import VGGStyleDiscriminator
    from basicsr.archs.srresnet_arch import MSRResNet
    torch.save({'params': MSRResNet(num_feat=4, num_block=1, upscale=scale).state_dict()}, tmp_path / g_name)
    torch.save({'params': VGGStyleDiscriminator(num_in_ch=3, num_feat=4, input_size=128).state_dict()},
               tmp_path / d_name)
    return {
        'name': 'gan',
        'model_type': 'SRGANModel',
        'is_train': True,
        'dist': False,
        'num_gpu': 0,
        'scale': scale,
        'network_g': {
            'type': 'MSRResNet',
            'num_feat': 4,
            'num_block': 1,
            'upscale': scale
        },
        'network_d': {
            'type': 'VGGStyleDiscriminator',
            'num_in_ch': 3,
            'num_feat': 4,
            'input_size': 128
        },
        'path': {
            'pretrain_network_g': str(tmp_path / g_name),
            'strict_load_g': True,
            'pretrain_network_d': str(tmp_path / d_name),
            'strict_load_d': True
        },
        'train': {
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-4
            },
            'optim_d': {
                'type': 'Adam',
                'lr': 1e-4
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [10],
                'gamma': 0.5
            },
            'total_iter': 10,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0
            },
            'gan_opt': {
                'type': 'GANLoss',
                'gan_type': 'vanilla',
                'loss_weight': 0.1
            },
        },
        'val': None
    }


def test_discriminator_checkpoints_are_scale_free(tmp_path):
    """``pretrain_network_d`` named ``_x4`` loads into a x2 GAN; the generator is still checked, by its own option."""
    from basicsr.models import build_model
    model = build_model(_gan_option(tmp_path, 'srresnet_x2.pth', 'vgg_d_x4.pth'))
    saved = torch.load(tmp_path / 'vgg_d_x4.pth', weights_only=True)['params']
    assert all(torch.equal(v, saved[k]) for k, v in model.net_d.state_dict().items())
    with pytest.raises(ValueError, match=r'^path.pretrain_network_g = .*srresnet_x3.pth: the file name says x3'):
        build_model(_gan_option(tmp_path, 'srresnet_x3.pth', 'vgg_d.pth'))


def test_missing_discriminator_file_names_its_option(tmp_path):
    from basicsr.models import build_model
    opt = _gan_option(tmp_path, 'srresnet_x2.pth', 'vgg_d.pth')
    opt['path']['pretrain_network_d'] = str(tmp_path / 'missing_d.pth')
    with pytest.raises(FileNotFoundError, match=r'^path.pretrain_network_d = .*missing_d.pth'):
        build_model(opt)


# ---------------------------------------------------------------------------------------------------------------------
# stack fixes vs policies (issue 15 point 3)
# ---------------------------------------------------------------------------------------------------------------------
_POLICY_PROBE = r'''
import json, sys
import srplugins  # isort: split
import basicsr.train
from basicsr.archs.vgg_arch import VGGFeatureExtractor
from basicsr.models.base_model import BaseModel
import basicsr.data, basicsr.utils.options
from srplugins import compat
if sys.argv[1] == 'entry':
    compat.apply_policies()
print(json.dumps({
    'scale_check': hasattr(BaseModel.load_network, '__wrapped__'),
    'vgg_lookup': hasattr(VGGFeatureExtractor.__init__, '__wrapped__'),
    'resume_policy': basicsr.train.load_resume_state is compat.load_resume_state,
    'resume_on_device': basicsr.train.load_resume_state is compat.load_resume_state_on_device,
    'init_dist': basicsr.utils.options.init_dist is compat.init_dist,
    'ddp_wrapper': BaseModel.model_to_device is compat._model_to_device,
    'worker_seeds': basicsr.data.worker_init_fn is compat.worker_init_fn,
    'torchvision_alias': 'torchvision.transforms.functional_tensor' in sys.modules,
    'pkg_resources_stand_in': any('StandIn' in type(f).__name__ for f in sys.meta_path),
}))
'''


@pytest.mark.parametrize('mode', ['import', 'entry'])
def test_import_applies_stack_fixes_only_and_entry_points_add_policies(tmp_path, mode):
    """A plain ``import srplugins`` (another basicsr program) gets the stack fixes; the policies come with the entry."""
    proc = run_command([sys.executable, '-c', _POLICY_PROBE, mode], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for fix in ('init_dist', 'ddp_wrapper', 'worker_seeds', 'torchvision_alias'):
        assert result[fix], fix
    policies = mode == 'entry'
    assert result['scale_check'] is policies and result['vgg_lookup'] is policies
    assert result['resume_policy'] is policies and result['resume_on_device'] is not policies
    assert result['pkg_resources_stand_in'] is False  # test-only now: no shipped code imports pytorch_wavelets


def test_stack_fix_resume_keeps_basicsr_rules_on_cpu(tmp_path, monkeypatch):
    """Without policies, resume is basicsr's (newest state by name, cwd-relative), only loaded onto the CPU."""
    monkeypatch.chdir(tmp_path)
    states = tmp_path / 'experiments' / 'x' / 'training_states'
    states.mkdir(parents=True)
    torch.save({'epoch': 0, 'iter': 3, 'optimizers': [], 'schedulers': []}, states / '3.state')
    opt = {'auto_resume': True, 'name': 'x', 'path': {'resume_state': None, 'models': 'm'}, 'num_gpu': 0}
    state = compat.load_resume_state_on_device(opt)
    assert state['iter'] == 3 and opt['path']['resume_state'].endswith('3.state')


def _state_folder(tmp_path, iters, network_ok=True):
    root = tmp_path / 'run'
    states = root / 'experiments' / 'r' / 'training_states'
    models = root / 'experiments' / 'r' / 'models'
    states.mkdir(parents=True)
    models.mkdir(parents=True)
    for it in iters:
        torch.save({'epoch': 0, 'iter': it, 'optimizers': [], 'schedulers': []}, states / f'{it}.state')
        torch.save({'params': {'w': torch.ones(1)}}, models / f'net_g_{it}.pth')
    opt = {
        'auto_resume': True,
        'name': 'r',
        'root_path': str(root),
        'num_gpu': 0,
        'network_g': {
            'type': 'X'
        },
        'path': {
            'resume_state': None,
            'training_states': str(states),
            'models': str(models)
        }
    }
    return opt, states, models


@pytest.mark.parametrize('broken', ['empty_state', 'truncated_state', 'truncated_network'])
def test_auto_resume_skips_an_unreadable_newest_state(tmp_path, broken):
    opt, states, models = _state_folder(tmp_path, [2, 4])
    if broken == 'empty_state':
        victim = states / '4.state'
        victim.write_bytes(b'')
    else:
        victim = states / '4.state' if broken == 'truncated_state' else models / 'net_g_4.pth'
        data = victim.read_bytes()
        victim.write_bytes(data[:len(data) // 2])
    with pytest.warns(UserWarning, match=re.escape(str(victim))):
        state = compat.load_resume_state(opt)
    assert state['iter'] == 2 and opt['path']['resume_state'] == str(states / '2.state')
    assert opt['path']['pretrain_network_g'] == str(models / 'net_g_2.pth')


def test_explicit_resume_state_that_is_truncated_names_the_option(tmp_path):
    opt, states, _ = _state_folder(tmp_path, [2])
    (states / '2.state').write_bytes(b'PK\x03\x04 not really')
    opt['auto_resume'] = False
    opt['path']['resume_state'] = str(states / '2.state')
    with pytest.raises(ValueError, match=r'path\.resume_state = .*2\.state.*truncated or not a checkpoint'):
        compat.load_resume_state(opt)
