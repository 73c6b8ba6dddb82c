"""Each stack fix of srplugins.compat: what breaks without it, and that it works with it."""
import json
import numpy as np
import os
import pytest
import subprocess
import sys
import textwrap
import torch

from srplugins import compat
from tests.conftest import REPO_ROOT, _subprocess_env


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


def test_pkg_resources_stand_in_only_when_missing():
    """With pkg_resources blocked (setuptools >= 81) and pytorch_wavelets present, the stand-in serves files."""
    if compat._module_exists('pytorch_wavelets'):
        code = """
        import json, sys
        sys.modules['pkg_resources'] = None  # what setuptools >= 81 looks like: import fails
        del sys.modules['pkg_resources']
        import importlib.machinery
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == 'pkg_resources':
                    raise ModuleNotFoundError("No module named 'pkg_resources'")
        sys.meta_path.insert(0, Block())
        try:
            import pytorch_wavelets  # noqa
            plain = 'ok'
        except ModuleNotFoundError as error:
            plain = str(error)
        for name in [m for m in sys.modules if m.startswith('pytorch_wavelets')]:
            del sys.modules[name]
        sys.meta_path.pop(0)
        sys.meta_path.insert(0, Block())
        import srplugins  # applies the import fixes
        stand_in = (sys.modules['pkg_resources'].__doc__ or '').startswith('srplugins stand-in')
        from pytorch_wavelets import DWTForward
        import torch
        low, high = DWTForward(J=1, wave='haar', mode='reflect')(torch.rand(1, 1, 4, 4))
        print(json.dumps({'plain': plain, 'stand_in': stand_in, 'low': list(low.shape)}))
        """
        result = _last_json(_run_python(code))
        assert 'pkg_resources' in result['plain']
        assert result['stand_in'] is True
        assert result['low'] == [1, 1, 2, 2]
    # when pkg_resources is importable (or pytorch_wavelets absent) nothing is installed
    if compat._module_exists('pkg_resources') or not compat._module_exists('pytorch_wavelets'):
        assert compat.fix_pkg_resources_for_pytorch_wavelets() is False


@pytest.mark.parametrize('argv, expected', [
    (['--local-rank=1', '-opt', 'x.yml'], ['--local_rank=1', '-opt', 'x.yml']),
    (['-opt', 'x.yml', '--local-rank', '3', '--launcher', 'pytorch'
      ], ['-opt', 'x.yml', '--local_rank', '3', '--launcher', 'pytorch']),
    (['--local_rank=0', '-opt', 'x.yml'], ['--local_rank=0', '-opt', 'x.yml']),
    (['-opt', 'my--local-rank=1.yml'], ['-opt', 'my--local-rank=1.yml']),
])
def test_normalize_local_rank_argv(argv, expected):
    assert compat.normalize_local_rank_argv(argv) == expected


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


def test_checkpoint_scale_in_file_name():
    compat.check_checkpoint_scale('experiments/aan_x2.pt', 2)
    compat.check_checkpoint_scale('net_g_5000.pth', 3)
    compat.check_checkpoint_scale('RealESRGAN_x4plus.pth', 4)
    with pytest.raises(ValueError, match=r'x3.*scale.*2'):
        compat.check_checkpoint_scale('pretrained/aan_x3.pt', 2)


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
