"""Shared fixtures: offline pretrained files, the demo dataset, and running the real entry points in a subprocess.

Everything is local: backbone "pretrained" files are random-init torchvision state dicts written to a temporary folder
named by ``SRPLUGINS_PRETRAINED_DIR``; the demo data comes from scikit-image's bundled photographs.
"""
import copy
import importlib.util
import os
import os.path as osp
import pytest
import subprocess
import sys
import torch
import yaml

import srplugins  # noqa: F401  (stack fixes + registration before basicsr is used by any test)
from srplugins import compat
from tests import pkg_resources_standin

# The test process acts as srplugins' entry points do: policies (offline VGG lookup, checkpoint scale check, resume
# rules) on. tests/test_compat.py checks in fresh interpreters that a plain `import srplugins` leaves them off.
compat.apply_policies()
pkg_resources_standin.install()  # pytorch_wavelets (reference of the DASR tests) on setuptools >= 81

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def has_facexlib():
    try:
        return importlib.util.find_spec('facexlib') is not None
    except (ImportError, ValueError):
        return False


# tests of the optional face extra
needs_facexlib = pytest.mark.skipif(not has_facexlib(), reason='facexlib (optional extra "face") is not installed')

# one thread: the tests use tiny tensors, where extra threads only add overhead (and thrash on a busy machine)
torch.set_num_threads(1)


def load_script(name):
    """The module of ``scripts/<name>.py`` (the scripts folder is not a package), loaded once per session."""
    if name not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, 'scripts', f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(name, module)  # `import <name>` inside another script gets this same module
        spec.loader.exec_module(module)
        _SCRIPTS[name] = module
    return _SCRIPTS[name]


_SCRIPTS = {}


@pytest.fixture
def isolate_backbone_env():
    """Restore ``SRPLUGINS_PRETRAINED_DIR``, ``TORCH_HOME`` and torch.hub's directory after the test: the parity runs
    point every loader at their random backbone files (``parity.write_random_backbones``) for the rest of their
    process, which must not leak into the tests that follow."""
    keys = ('SRPLUGINS_PRETRAINED_DIR', 'TORCH_HOME')
    saved_env = {k: os.environ.get(k) for k in keys}
    saved_hub = torch.hub._hub_dir
    yield
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    torch.hub._hub_dir = saved_hub


@pytest.fixture(scope='session')
def pretrained_dir(tmp_path_factory):
    """Empty folder set as ``SRPLUGINS_PRETRAINED_DIR`` for the whole session."""
    folder = tmp_path_factory.mktemp('pretrained')
    old = os.environ.get('SRPLUGINS_PRETRAINED_DIR')
    os.environ['SRPLUGINS_PRETRAINED_DIR'] = str(folder)
    yield folder
    if old is None:
        os.environ.pop('SRPLUGINS_PRETRAINED_DIR', None)
    else:
        os.environ['SRPLUGINS_PRETRAINED_DIR'] = old


def _write_torchvision_weights(folder, arch):
    import torchvision

    from srplugins.utils.pretrained import torchvision_weight_filename
    path = osp.join(str(folder), torchvision_weight_filename(arch))
    if not osp.isfile(path):
        torch.manual_seed(0)
        net = getattr(torchvision.models, arch)(weights=None)
        torch.save(net.state_dict(), path + '.tmp')
        os.replace(path + '.tmp', path)
    return path


@pytest.fixture(scope='session')
def vgg19_weights(pretrained_dir):
    """Random-init torchvision vgg19 weights at ``$SRPLUGINS_PRETRAINED_DIR/vgg19-dcbb9e9d.pth``."""
    return _write_torchvision_weights(pretrained_dir, 'vgg19')


@pytest.fixture(scope='session')
def vgg16_weights(pretrained_dir):
    """Random-init torchvision vgg16 weights at ``$SRPLUGINS_PRETRAINED_DIR/vgg16-397923af.pth``."""
    return _write_torchvision_weights(pretrained_dir, 'vgg16')


@pytest.fixture(scope='session')
def alexnet_weights(pretrained_dir):
    """Random-init torchvision alexnet weights at ``$SRPLUGINS_PRETRAINED_DIR/alexnet-owt-7be5be79.pth``."""
    return _write_torchvision_weights(pretrained_dir, 'alexnet')


@pytest.fixture(scope='session')
def demo_data():
    """Absolute path of ``datasets/demo`` in the repository, built (idempotently) by scripts/make_demo_data.py."""
    return load_script('make_demo_data').build(osp.join(REPO_ROOT, 'datasets', 'demo'), verbose=False)


def load_option(path):
    """An option file as a plain dict (``path`` relative to the repository root or absolute)."""
    with open(osp.join(REPO_ROOT, path), encoding='utf-8') as f:
        return yaml.safe_load(f)


def _subprocess_env(extra_env=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONUNBUFFERED'] = '1'
    if extra_env:
        env.update(extra_env)
    return env


def run_command(args, cwd, timeout=300, env=None):
    """Run ``args`` in a subprocess (repository on PYTHONPATH, one OMP thread), stdout and stderr merged."""
    return subprocess.run(
        list(args),
        cwd=str(cwd),
        env=_subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def write_option(opt, folder, filename='opt.yml'):
    """Write an option dict as YAML into ``folder`` and return the path."""
    path = osp.join(str(folder), filename)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(copy.deepcopy(opt), f, sort_keys=False)
    return path


@pytest.fixture
def run_train():
    """Run ``python srplugins/train.py -opt <opt> [extra args]`` in a subprocess with ``cwd=tmp_path``.

    ``opt`` is an option file path or a dict (written to ``tmp_path/opt.yml``). Relative ``dataroot_*`` paths resolve
    against ``tmp_path``: pass absolute paths (e.g. from the ``demo_data`` fixture). Returns the CompletedProcess
    (stdout and stderr merged in ``.stdout``).
    """

    def _run(opt, tmp_path, extra_args=(), launcher=None, timeout=900, env=None, script='train.py'):
        opt_path = write_option(opt, tmp_path) if isinstance(opt, dict) else opt
        cmd = [sys.executable]
        if launcher is not None:
            cmd += list(launcher)
        cmd += [osp.join(REPO_ROOT, 'srplugins', script), '-opt', str(opt_path)] + list(extra_args)
        return run_command(cmd, tmp_path, timeout=timeout, env=env)

    return _run


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty lookup (env folder, cwd and hub cache all under tmp_path) and no network: a download fails."""
    folder = tmp_path / 'pretrained'
    folder.mkdir()
    monkeypatch.setenv('SRPLUGINS_PRETRAINED_DIR', str(folder))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.chdir(tmp_path)

    def no_download(url, *args, **kwargs):
        raise AssertionError(f'download attempted: {url}')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    if has_facexlib():
        import facexlib.utils.misc
        monkeypatch.setattr(facexlib.utils.misc, 'download_url_to_file', no_download)
    return folder
