"""The wheel works without the checkout: built from the repository, installed with ``pip install --no-deps --target``,
and run from an empty folder with only the install target on PYTHONPATH (issue 16 point 4, the README quick start).

Every console command answers ``-h``; ``srplugins-recipes`` lists and copies the shipped option files;
``srplugins-data demo`` writes the demo data that the copied demo option reads (its relative ``dataroot_*`` paths
resolve against the same folder); a 10-iteration demo training runs and saves a checkpoint; ``srplugins-preview``
writes a sheet. Also: LICENSE and the recipes are in the wheel.
"""
import glob
import os
import os.path as osp
import pytest
import shutil
import subprocess
import sys
import time
import yaml
import zipfile

from tests.conftest import REPO_ROOT

COMMANDS = ('srplugins-train', 'srplugins-test', 'srplugins-infer', 'srplugins-convert', 'srplugins-evaluate',
            'srplugins-dasr-generate', 'srplugins-data', 'srplugins-recipes', 'srplugins-preview')

HELP_ALL = """
import contextlib, importlib.metadata, io, sys
target, commands = sys.argv[1], sys.argv[2:]
dist = importlib.metadata.distribution('srplugins')
assert str(dist.locate_file('')).startswith(target), dist.locate_file('')
points = {ep.name: ep for ep in dist.entry_points if ep.group == 'console_scripts'}
for command in commands:
    sys.argv = [command, '-h']
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            points[command].load()()
            code = 'no exit'
        except SystemExit as exit:
            code = exit.code
        except Exception as err:  # e.g. an entry point whose module is missing: reported, the others still run
            code = repr(err)
    ok = code in (0, None) and 'usage:' in out.getvalue()
    print(f'== {command}: ' + ('ok' if ok else f'FAILED (exit {code})\\n' + out.getvalue()[-1000:]), flush=True)
"""


def _source_copy(dst):
    """The checkout's tracked and untracked-but-not-ignored files (no stale build/, datasets/, experiments/)."""
    try:
        files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'],
                               cwd=REPO_ROOT,
                               check=True,
                               stdout=subprocess.PIPE).stdout.decode().split('\0')
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(
            REPO_ROOT,
            dst,
            symlinks=True,
            ignore=shutil.ignore_patterns('.git', 'build', 'dist', '*.egg-info', 'datasets', 'experiments', 'results',
                                          'tb_logger', '__pycache__'))
        return dst
    for rel in filter(None, files):
        src = osp.join(REPO_ROOT, rel)
        if not osp.lexists(src):  # deleted but not yet committed
            continue
        os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
        if osp.islink(src):
            os.symlink(os.readlink(src), osp.join(dst, rel))
        else:
            shutil.copy2(src, osp.join(dst, rel))
    return dst


def _env(target):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    env.update(
        PYTHONPATH=str(target),
        PATH=osp.join(str(target), 'bin') + os.pathsep + env.get('PATH', ''),
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1')
    return env


def _run(args, cwd, env, timeout=600):
    return subprocess.run(
        args, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_commands_work_from_an_empty_folder_without_the_checkout(tmp_path):
    start = time.time()
    src, wheels, target, work = (tmp_path / n for n in ('src', 'wheels', 'site', 'work'))
    _source_copy(str(src))
    build = _run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w',
         str(wheels),
         str(src)], tmp_path, dict(os.environ))
    assert build.returncode == 0, build.stdout[-3000:]
    wheel = glob.glob(str(wheels / 'srplugins-*.whl'))
    assert len(wheel) == 1
    names = zipfile.ZipFile(wheel[0]).namelist()
    assert any(n.endswith('/licenses/LICENSE') or n.endswith('.dist-info/LICENSE') for n in names)
    assert 'srplugins/recipes/demo/demo_A2N_x2.yml' in names
    assert 'srplugins/recipes/train/RealESRGAN/train_RealESRGAN_x4plus.yml' in names
    install = _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
                    str(target), wheel[0]], tmp_path, dict(os.environ))
    assert install.returncode == 0, install.stdout[-3000:]
    work.mkdir()
    env = _env(target)
    where = _run([sys.executable, '-c', 'import srplugins; print(srplugins.__file__)'], work, env)
    assert where.stdout.strip().startswith(str(target)), where.stdout  # the installed copy, not the checkout

    # every command is installed and answers -h: the entry points of the installed distribution, called as the
    # console scripts call them, in one interpreter (each command alone costs the torch import, see the report)
    for command in COMMANDS:
        assert osp.isfile(osp.join(str(target), 'bin', command)), command
    helps = _run([sys.executable, '-c', HELP_ALL, str(target)] + list(COMMANDS), work, env)
    assert helps.returncode == 0, helps.stdout[-5000:]
    for command in COMMANDS:
        assert f'== {command}: ok' in helps.stdout, helps.stdout[-5000:]

    # the README quick start: recipes, demo data, a short demo training
    listing = _run(['srplugins-recipes', 'list'], work, env)
    assert listing.returncode == 0 and 'demo_A2N_x2' in listing.stdout and 'train_RealESRGAN_x4plus' in listing.stdout
    assert _run(['srplugins-recipes', 'copy', 'demo_A2N_x2'], work, env).returncode == 0
    demo = _run(['srplugins-data', 'demo'], work, env)
    assert demo.returncode == 0, demo.stdout[-3000:]
    opt = yaml.safe_load((work / 'demo_A2N_x2.yml').read_text())
    for dataset in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            assert glob.glob(str(work / dataset[key] / '*.png')), (key, dataset[key])  # relative to the same folder
    train = _run([
        'srplugins-train', '-opt', 'demo_A2N_x2.yml', '--force_yml', 'train:total_iter=10', 'val:val_freq=10',
        'logger:print_freq=5', 'logger:save_checkpoint_freq=10', 'datasets:train:batch_size_per_gpu=2'
    ], work, env)
    assert train.returncode == 0, train.stdout[-3000:]
    assert (work / 'experiments' / 'demo_A2N_x2' / 'models' / 'net_g_10.pth').is_file()
    sheet = _run([
        'srplugins-preview', 'bsrgan', '-i', 'datasets/demo/val/HR/chelsea.png', '-n', '2', '--size', '96', '-o',
        'sheet.png'
    ], work, env)
    assert sheet.returncode == 0, sheet.stdout[-3000:]
    assert (work / 'sheet.png').is_file() and (work / 'sheet.json').is_file()
    print(f'wheel test took {time.time() - start:.0f} s')
