"""The command-line scripts work from a fresh interpreter, where nothing has imported srplugins before basicsr.

basicsr 1.4.2 cannot be imported on torchvision >= 0.17 until srplugins' compat layer has run, so every script must
import srplugins before its first basicsr import, in the same scope. The in-process tests cannot see a violation
(conftest imports srplugins first), and isort sorts ``basicsr`` (third party) above ``srplugins`` (first party) unless
an ``# isort: split`` keeps the order: hence a static check of every script plus real runs of two scripts whose basicsr
imports are lazy.
"""
import ast
import cv2
import glob
import math
import numpy as np
import os.path as osp
import pytest
import sys

from tests.conftest import REPO_ROOT, run_command

SCRIPTS = sorted(glob.glob(osp.join(REPO_ROOT, 'scripts', '*.py')))


def _imported_roots(node):
    if isinstance(node, ast.Import):
        return [alias.name.split('.')[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module.split('.')[0]]
    return []


def _basicsr_before_srplugins(body, srplugins_done=False):
    """Lines of the basicsr imports in ``body`` (nested blocks and functions included) not preceded by srplugins'.

    Returns ``(lines, srplugins_done)``; a function body starts from the state of the scope it is defined in.
    """
    bad = []
    for node in body:
        roots = _imported_roots(node)
        if 'basicsr' in roots and not srplugins_done:
            bad.append(node.lineno)
        srplugins_done = srplugins_done or 'srplugins' in roots
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bad += _basicsr_before_srplugins(node.body, srplugins_done)[0]
            continue
        blocks = [getattr(node, name, []) for name in ('body', 'orelse', 'finalbody')]
        blocks += [handler.body for handler in getattr(node, 'handlers', [])]
        for block in blocks:
            if block and isinstance(block[0], ast.stmt):
                lines, srplugins_done = _basicsr_before_srplugins(block, srplugins_done)
                bad += lines
    return bad, srplugins_done


def test_the_static_check_catches_the_wrong_order():
    wrong = ast.parse('def f():\n    from basicsr.utils import imwrite\n    import srplugins\n').body
    right = ast.parse('import srplugins\ndef f():\n    from basicsr.utils import imwrite\n').body
    nested = ast.parse('try:\n    import srplugins\nexcept ImportError:\n    pass\nfrom basicsr import utils\n').body
    assert _basicsr_before_srplugins(wrong)[0] == [2]
    assert _basicsr_before_srplugins(right)[0] == []
    assert _basicsr_before_srplugins(nested)[0] == []


@pytest.mark.parametrize('path', SCRIPTS, ids=osp.basename)
def test_script_imports_srplugins_before_basicsr(path):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    bad = _basicsr_before_srplugins(tree.body)[0]
    assert not bad, (f'{osp.basename(path)} imports basicsr before srplugins at line(s) {bad}: `import basicsr` fails '
                     'on torchvision >= 0.17 until srplugins has applied its compat layer')


def _run(args, cwd):
    return run_command([sys.executable] + list(args), cwd)


def test_make_demo_data_from_a_fresh_interpreter(tmp_path):
    result = _run([osp.join(REPO_ROOT, 'scripts', 'make_demo_data.py'), '--root', str(tmp_path / 'demo')], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    train_hr = sorted(glob.glob(str(tmp_path / 'demo' / 'train' / 'HR' / '*.png')))
    val_hr = sorted(glob.glob(str(tmp_path / 'demo' / 'val' / 'HR' / '*.png')))
    assert len(train_hr) == 4 and len(val_hr) == 2
    for hr_path in train_hr + val_hr:
        hr = cv2.imread(hr_path)
        for scale in (2, 3, 4):
            lr_path = hr_path.replace(osp.join('HR', ''), osp.join('LR_bicubic', f'X{scale}', ''))
            lr = cv2.imread(lr_path)
            assert lr is not None and lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3), lr_path


def test_evaluate_with_bicubic_column_from_a_fresh_interpreter(tmp_path):
    rng = np.random.default_rng(1)
    for name in ('gt', 'sr', 'lr'):
        (tmp_path / name).mkdir()
    gt = np.repeat(rng.integers(20, 200, (24, 20, 1), dtype=np.uint8), 3, axis=2)
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), gt)
    cv2.imwrite(str(tmp_path / 'sr' / 'a.png'), gt + 4)
    cv2.imwrite(str(tmp_path / 'lr' / 'a.png'), cv2.resize(gt, (10, 12), interpolation=cv2.INTER_AREA))
    result = _run([
        osp.join(REPO_ROOT, 'scripts', 'evaluate.py'), '--gt', 'gt', '--lr', 'lr', '--sr', 'M=sr', '--scale', '2',
        '--metrics', 'psnr', 'ssim', '--no_figure', '-o', 'report', '--name', 'r'
    ], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    report = (tmp_path / 'report' / 'r.csv').read_text()
    assert 'Bicubic' in report
    # gray image, +4 in every channel: Y moves by 219 * 4 / 255
    assert f'{20 * math.log10(255. / (219. * 4 / 255.)):.4f}'[:6] in report


def test_dasr_demo_data_step_writes_under_the_current_folder(tmp_path):
    result = _run([osp.join(REPO_ROOT, 'scripts', 'dasr_demo.py'), '--only', 'data'], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    dasr = tmp_path / 'datasets' / 'demo' / 'dasr'
    assert sorted(p.name for p in (dasr / 'target_hr').iterdir()) == ['astronaut.png', 'immunohistochemistry.png']
    assert sorted(p.name for p in (dasr / 'source_lr').iterdir()) == ['hubble_deep_field.png', 'rocket.png']
    assert len(list((dasr / 'val_lr').iterdir())) == 2
    lr = cv2.imread(str(dasr / 'source_lr' / 'rocket.png'))
    hr = cv2.imread(str(tmp_path / 'datasets' / 'demo' / 'train' / 'HR' / 'rocket.png'))
    assert lr.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)


def test_dasr_demo_gray16_data_step_writes_16bit_single_channel_domains(tmp_path):
    """``dasr_demo.py --gray16`` builds the domains the gray16 recipes read, as 16-bit single-channel PNGs."""
    result = _run([osp.join(REPO_ROOT, 'scripts', 'dasr_demo.py'), '--only', 'data', '--gray16'], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    dasr = tmp_path / 'datasets' / 'demo_gray16' / 'dasr'
    assert not (tmp_path / 'datasets' / 'demo').exists()
    for sub in ('source_lr', 'target_hr', 'val_lr'):
        files = sorted((dasr / sub).iterdir())
        assert len(files) == 2, sub
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            assert img.dtype == 'uint16' and img.ndim == 2, (f, img.dtype, img.shape)
    lr = cv2.imread(str(dasr / 'source_lr' / 'rocket.png'), cv2.IMREAD_UNCHANGED)
    clean = cv2.imread(
        str(tmp_path / 'datasets' / 'demo_gray16' / 'train' / 'LR_bicubic' / 'X4' / 'rocket.png'), cv2.IMREAD_UNCHANGED)
    assert lr.shape == clean.shape
    diff = lr.astype(float) - clean.astype(float)
    assert 0 < abs(diff).mean() / 65535 < 0.1  # degraded, not replaced
    assert len(set(lr.ravel().tolist()) - set((lr // 257 * 257).ravel().tolist())) > 0  # values beyond 8 bits
