#!/usr/bin/env python
"""Training parity: srplugins' training step against the official training code, iteration by iteration.

Usage::

    python scripts/parity.py METHOD --ref PATH [--iters N] [--seed S] [--json FILE] [--plot FILE] [--data DIR]

``METHOD`` is one of ``a2n``, ``bsrgan``, ``realesrnet``, ``realesrgan``, ``srgan`` (this file) and ``dasr_dsn``,
``dasr_sr`` (``scripts/parity_dasr.py``, dispatched to when present). ``PATH`` is the root of a ``git clone`` of the
official repository (haoyuc/A2N, cszn/KAIR, xinntao/Real-ESRGAN, ShuhangGu/DASR; ignored for ``srgan``, which has
no official code and is checked against the paper's formulas written out here).

For each method both sides are built (the official objects from the code at PATH, imported at run time and patched
only where the official code cannot run on today's stack or on CPU; every patch is named with its reason in the
method's function), given the same initial weights (converted between key layouts), the same batches and the same
random draws, and trained for N iterations. Every iteration prints every loss term of both sides and the largest
absolute parameter difference of every network after the step. The last line is exactly ``PARITY <METHOD>: PASS
...`` or ``PARITY <METHOD>: FAIL ...``: PASS means every loss term equal to 1e-5 relative and every parameter equal to
1e-5 absolute after every iteration (in float64 where the official code allows it; the report says the dtype).

Pretrained backbones (VGG19 for perceptual losses; AlexNet + LPIPS linear layers) are replaced on both sides by the
same randomly initialised files written to a temporary folder (:func:`write_random_backbones`): nothing is
downloaded.

Contract of a method (also used by ``scripts/parity_dasr.py``, which exposes ``METHODS = {'dasr_dsn': run_dsn,
'dasr_sr': run_sr}``)::

    run(ref: str, iters: int, seed: int, data: str | None, workdir: str, curves: bool) -> {
        'dtype': 'float64' | 'float32',
        'notes': [str, ...],                                  # patches, deliberate differences, caveats
        'iters': [{'losses': {term: [ours, official]}, 'params': {net_name: max_abs_diff}}, ...],
        'curves': {'ours': {term: [per iter]}, 'official': {term: [per iter]}},   # when curves
        'val_psnr': {'ours': float, 'official': float},                           # when curves
    }

Shared helpers (importable as ``from parity import ...`` with ``scripts/`` on ``sys.path``): :func:`float64`,
:func:`write_random_backbones`, :func:`use_lpips_linear`, :func:`load_recipe`, :func:`prepare_opt`,
:func:`convert_keys`, :func:`invert_renames`, :func:`max_param_diff`, :func:`demo_data`, :func:`BatchSampler`,
:func:`psnr_y`, :func:`add_ref_path`, :func:`patched`.
"""
import argparse
import contextlib
import copy
import inspect
import io
import json
import math
import os
import os.path as osp
import sys
import tempfile
from collections import OrderedDict

import srplugins  # noqa: F401  (stack fixes before basicsr / official code import basicsr)

# isort: split

SCRIPTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(SCRIPTS_DIR)
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-5

# METHOD name -> run function; this file's methods register with @method, parity_dasr's are merged by all_methods()
METHODS = OrderedDict()

# METHOD -> {variant: what it changes}. A variant runs one documented difference between srplugins and the official
# training instead of the parity default (the official behaviour), to measure its effect (``--variant``; FAIL is the
# expected verdict: the figures are the effect). The run function receives ``variant=NAME``.
VARIANTS = {
    'a2n': {
        'recipe_loss_scale':
        "srplugins with the shipped recipe's L1 on [0, 1] (weight 1) instead of weight 255 "
        '(the official 0..255 scale)',
    },
    'dasr_dsn': {
        'pre_step_copy':
        "official G_d adversarial term from a copy of D taken before D's step (the loop's evident "
        'intent) instead of recomputing it with the updated D (srplugins)',
        'torch_1_1':
        'the official line as torch 1.1 ran it (pre-step activations, post-step weights) instead of '
        'recomputing fake_tex with the updated D (srplugins)',
        'gan_bce_with_logits':
        "srplugins' GAN terms by basicsr GANLoss vanilla (BCE-with-logits) instead of the recipe's SigmoidLogGANLoss "
        '(the official -log(sigmoid + 1e-8))',
    },
}

# progress of the running method (a tqdm bar on stderr, set by main(); None when the functions are called directly)
_PROGRESS = {'bar': None}


def progress_step():
    """Advance the progress bar by one training iteration (both sides); a no-op without a bar."""
    if _PROGRESS['bar'] is not None:
        _PROGRESS['bar'].update(1)


def method(name):
    """Register ``fn`` as the parity run of ``name`` (see the module docstring for the contract)."""

    def deco(fn):
        METHODS[name] = fn
        return fn

    return deco


def all_methods():
    """This file's methods plus ``scripts/parity_dasr.py``'s ``METHODS`` when that file exists."""
    methods = OrderedDict(METHODS)
    if osp.isfile(osp.join(SCRIPTS_DIR, 'parity_dasr.py')):
        if SCRIPTS_DIR not in sys.path:
            sys.path.insert(0, SCRIPTS_DIR)
        import parity_dasr
        methods.update(parity_dasr.METHODS)
    return methods


# --------------------------------------------------------------------------------------------------------------------
# report and verdict
# --------------------------------------------------------------------------------------------------------------------
def rel_diff(ours, official):
    """|ours - official| relative to the larger magnitude (0 when both are 0; inf when one is missing or not finite)."""
    if ours is None or official is None:
        return math.inf
    ours, official = float(ours), float(official)
    if not (math.isfinite(ours) and math.isfinite(official)):
        return 0.0 if ours == official else math.inf
    scale = max(abs(ours), abs(official))
    return 0.0 if scale == 0 else abs(ours - official) / scale


def worst_figures(result):
    """Worst loss relative difference and worst parameter difference over all iterations.

    Returns:
        dict: ``loss`` = (rel_diff, term, iter) and ``param`` = (abs_diff, net, iter); iterations count from 1;
        (0.0, None, None) when there is nothing of that kind.
    """
    worst_loss, worst_param = (0.0, None, None), (0.0, None, None)
    for i, rec in enumerate(result['iters'], 1):
        for term, (ours, official) in rec['losses'].items():
            d = rel_diff(ours, official)
            if d > worst_loss[0]:
                worst_loss = (d, term, i)
        for net, diff in rec['params'].items():
            diff = float(diff)
            if not math.isfinite(diff):
                diff = math.inf
            if diff > worst_param[0]:
                worst_param = (diff, net, i)
    return {'loss': worst_loss, 'param': worst_param}


def verdict(name, result, rtol=LOSS_RTOL, atol=PARAM_ATOL):
    """The verdict of a method's result.

    PASS needs at least one iteration, every loss term of every iteration within ``rtol`` (relative) and every
    network's largest parameter difference within ``atol`` (absolute). A loss term present on one side only counts as
    a failure (the dict holds the pair, so this shows as a NaN on the missing side).

    Returns:
        tuple[bool, str]: (passed, the line ``PARITY <NAME>: PASS|FAIL ...``).
    """
    iters = result.get('iters') or []
    worst = worst_figures(result)
    (lw, lterm, liter), (pw, pnet, piter) = worst['loss'], worst['param']
    ok = bool(iters) and lw <= rtol and pw <= atol
    missing = [(i, t) for i, rec in enumerate(iters, 1) for t, pair in rec['losses'].items()
               if any(v is None for v in pair)]
    ok = ok and not missing
    detail = (f'{len(iters)} iters, {result.get("dtype", "?")}, worst loss rel diff {lw:.3g}' +
              (f' ({lterm}, iter {liter})' if lterm else '') + f', worst param abs diff {pw:.3g}' +
              (f' ({pnet}, iter {piter})' if pnet else ''))
    if not iters:
        detail = 'no iterations ran'
    if missing:
        detail += f', loss terms missing on one side: {missing[:3]}'
    return ok, f'PARITY {name.upper()}: {"PASS" if ok else "FAIL"} {detail} (tolerances: loss {rtol:g} relative, ' \
        f'params {atol:g} absolute)'


def format_iteration(i, rec):
    """Lines for one iteration: every loss term on both sides and every network's parameter difference."""
    lines = [f'iter {i}:']
    for term, (ours, official) in rec['losses'].items():
        lines.append(f'  {term:<14s} ours {_fmt(ours)}  official {_fmt(official)}  rel diff {_fmt_d(ours, official)}')
    for net, diff in rec['params'].items():
        lines.append(f'  {net:<14s} max |param diff| {float(diff):.3e}')
    return lines


def _fmt(v):
    return 'missing'.rjust(22) if v is None else f'{float(v):22.15e}'


def _fmt_d(a, b):
    return 'n/a' if a is None or b is None else f'{rel_diff(a, b):.3e}'


def report(name, result, stream=None):
    """Print notes, every iteration and the verdict (last line). Returns the verdict tuple."""
    stream = stream or sys.stdout
    print(f'== parity {name}: {len(result.get("iters", []))} iterations in {result.get("dtype", "?")}', file=stream)
    for note in result.get('notes', []):
        print(f'note: {note}', file=stream)
    for i, rec in enumerate(result.get('iters', []), 1):
        print('\n'.join(format_iteration(i, rec)), file=stream)
    if result.get('val_psnr'):
        v = result['val_psnr']
        print(f'validation PSNR (Y): ours {v["ours"]:.4f} dB, official {v["official"]:.4f} dB', file=stream)
    ok, line = verdict(name, result)
    print(line, file=stream)
    stream.flush()
    return ok, line


def to_jsonable(obj):
    """Plain JSON types (floats for tensors / numpy numbers; non-finite floats as strings)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    try:
        value = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if isinstance(obj, int) and not isinstance(obj, bool):
        return int(obj)
    return value if math.isfinite(value) else str(value)


def plot(name, result, path):
    """One PNG: every loss term of both sides per iteration, the largest differences per iteration (log scale, with
    the PASS tolerances) and the validation PSNR of both sides; panels on a grid of at most four columns."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import textwrap

    curves = result.get('curves') or {'ours': {}, 'official': {}}
    if not curves.get('ours'):  # fall back to the per-iteration records
        curves = {'ours': {}, 'official': {}}
        for rec in result.get('iters', []):
            for term, (ours, official) in rec['losses'].items():
                curves['ours'].setdefault(term, []).append(ours)
                curves['official'].setdefault(term, []).append(official)
    terms = list(curves['ours'])
    psnr = result.get('val_psnr')
    iters = result.get('iters') or []
    reference = 'paper formulas' if name == 'srgan' else 'official'  # srgan has no official code
    panels = len(terms) + (1 if iters else 0) + (1 if psnr else 0)
    ncols = max(1, min(4, panels))
    nrows = max(1, math.ceil(panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows + 0.6), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.axis('off')
    for ax, term in zip(flat, terms):
        ours, official = curves['ours'][term], curves['official'].get(term, [])
        ax.plot(range(1, len(official) + 1), official, color='tab:orange', lw=2.5, alpha=0.6, label=reference)
        ax.plot(range(1, len(ours) + 1), ours, color='tab:blue', lw=1, ls='--', label='srplugins')
        ax.set_title(term)
        ax.set_xlabel('iteration')
        ax.legend(fontsize=8)
    k = len(terms)
    if iters:  # the figures the verdict is made of, per iteration; exact zeros drawn at the floor
        floor = 1e-18
        loss_d = [max([rel_diff(a, b) for a, b in rec['losses'].values()] or [0.]) for rec in iters]
        param_d = [max([float(v) for v in rec['params'].values()] or [0.]) for rec in iters]
        ax = flat[k]
        x = range(1, len(iters) + 1)
        ax.semilogy(x, [max(v, floor) for v in loss_d], color='tab:green', lw=1, label='largest loss rel. diff')
        ax.semilogy(x, [max(v, floor) for v in param_d], color='tab:red', lw=1, label='largest param abs. diff')
        ax.axhline(LOSS_RTOL, color='tab:green', ls=':', lw=1)
        ax.axhline(PARAM_ATOL, color='tab:red', ls=':', lw=1)
        ax.set_ylim(floor / 3, max(1.0, max(loss_d + param_d) * 3))
        ax.set_title(f'srplugins vs {reference} per iteration', fontsize=10)
        ax.set_xlabel(f'iteration (dotted: tolerances; 0 drawn at {floor:g})', fontsize=8)
        ax.legend(fontsize=7)
        k += 1
    if psnr:
        ax = flat[k]
        bars = ax.bar(['srplugins', reference], [psnr['ours'], psnr['official']], color=['tab:blue', 'tab:orange'])
        for bar, v in zip(bars, (psnr['ours'], psnr['official'])):
            ax.annotate(f'{v:.4f}', (bar.get_x() + bar.get_width() / 2, v), ha='center', va='bottom')
        low = min(psnr['ours'], psnr['official'])
        ax.set_ylim(low - 2, max(psnr['ours'], psnr['official']) + 1)
        ax.set_title('validation PSNR-Y (dB) after training', fontsize=10)
    ok, line = verdict(name, result)
    if result.get('variant'):
        line = f'[variant {result["variant"]}: a documented difference, FAIL expected] ' + line
    fig.suptitle(textwrap.fill(line, int(28 * ncols)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def float64(enabled=True):
    """Default dtype float64 inside the block (new modules / tensors), restored afterwards."""
    import torch
    old = torch.get_default_dtype()
    if enabled:
        torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def patched(obj, attr, value):
    """``setattr(obj, attr, value)`` inside the block, the original restored afterwards (run-time patch)."""
    missing = object()
    old = getattr(obj, attr, missing)
    setattr(obj, attr, value)
    try:
        yield old if old is not missing else None
    finally:
        if old is missing:
            delattr(obj, attr)
        else:
            setattr(obj, attr, old)


def add_ref_path(*paths):
    """Put official code folders first on ``sys.path`` (each must exist: a clear error names it otherwise)."""
    for path in reversed(paths):
        if not osp.isdir(path):
            raise FileNotFoundError(f'--ref: expected the folder {path} of the official checkout; it does not exist')
        path = osp.abspath(path)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


LPIPS_ALEX_CHANNELS = (64, 192, 384, 256, 256)


def write_random_backbones(folder, seed=0, set_env=True, archs=('vgg19', 'alexnet')):
    """Write random-init backbone files and point every loader (ours, basicsr, torchvision, official code) at them.

    Files (torchvision's names, so torchvision's cache lookup and srplugins' offline lookup both find them):

    * ``vgg19-dcbb9e9d.pth``: torchvision ``vgg19`` state dict (random init from ``seed``);
    * ``alexnet-owt-7be5be79.pth``: torchvision ``alexnet`` state dict (random init from ``seed + 1``);
    * ``lpips_alex_v0.1.pth``: LPIPS linear layers ``lin{k}.model.1.weight`` (1, C, 1, 1), non-negative as the
      calibrated ones are (uniform [0, 0.1) from ``seed + 2``).

    They are written to ``folder`` and to ``folder/torch_home/hub/checkpoints`` (torch.hub's cache, where
    torchvision's ``pretrained=True`` looks before downloading) and ``folder/experiments/pretrained_models`` (basicsr's
    relative VGG path, usable by changing into ``folder``) as hard links (copies where links fail). With
    ``set_env``, for the rest of the process: ``SRPLUGINS_PRETRAINED_DIR=folder``, ``TORCH_HOME=folder/torch_home``
    and ``torch.hub.set_dir`` to its ``hub`` (an earlier ``set_dir`` in the process would hide ``TORCH_HOME``).
    ``archs`` limits the torchvision files written (the LPIPS file comes with ``'alexnet'``); each architecture keeps
    its own seed offset, so a file is the same whichever others are written.

    Returns:
        dict: ``vgg19``, ``alexnet``, ``lpips_alex`` file paths and ``torch_home``.
    """
    import shutil
    import torch
    import torchvision

    os.makedirs(folder, exist_ok=True)
    hub = osp.join(folder, 'torch_home', 'hub', 'checkpoints')
    exp = osp.join(folder, 'experiments', 'pretrained_models')
    os.makedirs(hub, exist_ok=True)
    os.makedirs(exp, exist_ok=True)
    paths = {}
    gen_state = torch.random.get_rng_state()
    try:
        for i, (arch, fname) in enumerate((('vgg19', 'vgg19-dcbb9e9d.pth'), ('alexnet', 'alexnet-owt-7be5be79.pth'))):
            if arch not in archs:
                continue
            torch.manual_seed(seed + i)
            with default_dtype(torch.float32):
                net = getattr(torchvision.models, arch)(weights=None)
            path = osp.join(folder, fname)
            torch.save(net.state_dict(), path)
            for extra in (hub, exp):
                target = osp.join(extra, fname)
                if osp.exists(target):
                    os.remove(target)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
            paths[arch] = path
        if 'alexnet' in archs:
            gen = torch.Generator().manual_seed(seed + 2)
            lin = OrderedDict(
                (f'lin{k}.model.1.weight', torch.rand(1, c, 1, 1, generator=gen, dtype=torch.float32) * 0.1)
                for k, c in enumerate(LPIPS_ALEX_CHANNELS))
            paths['lpips_alex'] = osp.join(folder, 'lpips_alex_v0.1.pth')
            torch.save(lin, paths['lpips_alex'])
    finally:
        torch.random.set_rng_state(gen_state)
    paths['torch_home'] = osp.join(folder, 'torch_home')
    if set_env:
        os.environ['SRPLUGINS_PRETRAINED_DIR'] = folder
        os.environ['TORCH_HOME'] = paths['torch_home']
        # an earlier torch.hub.set_dir in the process would hide TORCH_HOME
        torch.hub.set_dir(osp.join(paths['torch_home'], 'hub'))
    return paths


@contextlib.contextmanager
def use_lpips_linear(path):
    """Make every ``lpips.LPIPS(...)`` built in the block load its linear layers from ``path`` (not the wheel's)."""
    import lpips
    original = lpips.LPIPS.__init__

    def init(self, *args, **kwargs):
        if kwargs.get('model_path') is None:
            kwargs['model_path'] = path
        original(self, *args, **kwargs)

    with patched(lpips.LPIPS, '__init__', init):
        yield


def load_recipe(path, batch=None, patch=None, width=None, overrides=None):
    """A shipped option file (``options/...``), parsed, with only the stated shrinking applied.

    Args:
        path (str): Option file, absolute or relative to the repository root.
        batch (int | None): ``datasets.train.batch_size_per_gpu``.
        patch (int | None): ``datasets.train.gt_size`` (HR patch).
        width (int | None): ``network_g.num_feat``.
        overrides (dict | None): Further changes by dotted key, e.g. ``{'network_d.num_feat': 16}``; every key's
            parent must exist (a typo raises KeyError naming it).

    Returns:
        dict: The options (plain nested dicts), with a ``'shrunk'`` entry listing what changed (``key: old -> new``).
    """
    import yaml
    full = path if osp.isabs(path) else osp.join(REPO_ROOT, path)
    if not osp.isfile(full):
        raise FileNotFoundError(f'recipe {path} not found (looked for {full})')
    with open(full, encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    changes = OrderedDict()
    if batch is not None:
        changes['datasets.train.batch_size_per_gpu'] = batch
    if patch is not None:
        changes['datasets.train.gt_size'] = patch
    if width is not None:
        changes['network_g.num_feat'] = width
    changes.update(overrides or {})
    shrunk = []
    for key, value in changes.items():
        *parents, leaf = key.split('.')
        node = opt
        for p in parents:
            if not isinstance(node, dict) or p not in node:
                raise KeyError(f'{path}: no option {key!r} (missing {p!r})')
            node = node[p]
        shrunk.append(f'{key}: {node.get(leaf)!r} -> {value!r}')
        node[leaf] = value
    opt['shrunk'] = shrunk
    return opt


def prepare_opt(opt, workdir, is_train=True):
    """Complete a parsed recipe as basicsr's ``parse_options`` would, for a CPU, single-process, in-memory run.

    Sets ``is_train``, ``dist=False``, ``rank=0``, ``world_size=1``, ``num_gpu=0``, ``auto_resume=False``, no
    pretrained/resume paths, and the experiment folders under ``workdir``. Returns a new dict.
    """
    opt = copy.deepcopy(opt)
    opt.pop('shrunk', None)
    opt.update(is_train=is_train, dist=False, rank=0, world_size=1, num_gpu=0, auto_resume=False, root_path=workdir)
    for phase, dataset in opt.get('datasets', {}).items():
        dataset['phase'] = phase.split('_')[0]
        dataset.setdefault('scale', opt.get('scale'))
    exp = osp.join(workdir, 'experiments', opt.get('name', 'parity'))
    path = opt.setdefault('path', {})
    for key in list(path):
        if key.startswith('pretrain_network') or key == 'resume_state':
            path[key] = None
    path.update(
        experiments_root=exp,
        models=osp.join(exp, 'models'),
        training_states=osp.join(exp, 'training_states'),
        log=exp,
        visualization=osp.join(exp, 'visualization'))
    opt.setdefault('logger', {})['use_tb_logger'] = False
    return opt


def convert_keys(state_dict, renames):
    """Rename state-dict keys by ordered substring replacements; a ``module.`` prefix is stripped first.

    Args:
        state_dict (Mapping[str, Tensor]): Source layout.
        renames (Sequence[tuple[str, str]]): ``(old, new)`` substring pairs, applied in order to every key.

    Returns:
        OrderedDict: Same tensors (not copied) under the new keys.

    Raises:
        ValueError: If two keys map to the same new key.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key[7:] if key.startswith('module.') else key
        for old, rep in renames:
            new = new.replace(old, rep)
        if new in out:
            raise ValueError(f'key conversion maps two keys to {new!r} (second: {key!r})')
        out[new] = value
    return out


def invert_renames(renames):
    """The ``renames`` that undo ``renames`` (pairs swapped, order reversed)."""
    return [(new, old) for old, new in reversed(list(renames))]


def max_param_diff(ours, official, renames=()):
    """Largest absolute difference over all parameters of two networks (official keys converted by ``renames``).

    Args:
        ours (nn.Module | Mapping[str, Tensor]): srplugins' network (or its named parameters).
        official (nn.Module | Mapping[str, Tensor]): The official network (or named parameters).
        renames: Conversion from the official key layout to ours (see :func:`convert_keys`).

    Returns:
        float: The largest ``|ours - official|``; ``inf`` when the parameter sets or shapes differ.
    """
    a = dict(ours.named_parameters()) if hasattr(ours, 'named_parameters') else dict(ours)
    b = convert_keys(dict(official.named_parameters()) if hasattr(official, 'named_parameters') else official, renames)
    a = {k[7:] if k.startswith('module.') else k: v for k, v in a.items()}
    if set(a) != set(b):
        return math.inf
    worst = 0.0
    for key, value in a.items():
        other = b[key]
        if value.shape != other.shape:
            return math.inf
        worst = max(worst, (value.detach().double() - other.detach().double()).abs().max().item())
    return worst


def load_converted(module, state_dict, renames=()):
    """Copy ``state_dict`` (other key layout, converted by ``renames``) into ``module`` with strict key checking.

    Parameters and buffers are copied in ``module``'s dtype.
    """
    module.load_state_dict(convert_keys(state_dict, renames), strict=True)
    return module


def demo_data(workdir, data=None):
    """The data folder: ``data`` if given (must hold ``train/HR``), else the embedded demo set built under workdir."""
    if data:
        if not osp.isdir(osp.join(data, 'train', 'HR')):
            raise FileNotFoundError(f'--data {data}: expected the demo layout with {data}/train/HR and {data}/val/HR '
                                    '(see scripts/make_demo_data.py)')
        return data
    sys.path.insert(0, SCRIPTS_DIR)
    import make_demo_data
    return make_demo_data.build(osp.join(workdir, 'demo'), verbose=False)


def _read_rgb(path):
    import cv2
    import numpy as np
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return np.ascontiguousarray(img[:, :, ::-1]).astype(np.float64) / 255.


class BatchSampler:
    """Random aligned (LR, HR) crops from ``<data>/train/{HR,LR_bicubic/X<scale>}``, the same for both sides.

    Crops are drawn with a ``numpy.random.Generator`` seeded by ``seed``; flips / rotations are not applied (the
    step, not the data pipeline, is under test). Tensors are RGB, (B, 3, h, w), in [0, 1], float64.

    Args:
        data (str): Demo-layout folder.
        scale (int): Upscale factor (selects the LR folder).
        batch (int): Batch size B.
        lq_patch (int): LR crop side h = w; the HR crop is ``lq_patch * scale``.
        seed (int): Seed of the crop positions.
        lq_from_hr (bool): Return only HR crops (``lq`` None), for methods that degrade HR themselves.
    """

    def __init__(self, data, scale, batch, lq_patch, seed=0, lq_from_hr=False):
        import numpy as np
        hr_dir = osp.join(data, 'train', 'HR')
        names = sorted(n for n in os.listdir(hr_dir) if n.endswith('.png'))
        if not names:
            raise FileNotFoundError(f'no PNG images in {hr_dir}')
        self.hr = [_read_rgb(osp.join(hr_dir, n)) for n in names]
        self.lq = None if lq_from_hr else [
            _read_rgb(osp.join(data, 'train', 'LR_bicubic', f'X{scale}', n)) for n in names
        ]
        self.scale, self.batch, self.lq_patch = scale, batch, lq_patch
        self.rng = np.random.default_rng(seed)

    def __call__(self):
        import numpy as np
        import torch
        s, p = self.scale, self.lq_patch
        lqs, gts = [], []
        for _ in range(self.batch):
            k = int(self.rng.integers(len(self.hr)))
            h, w = self.hr[k].shape[0] // s, self.hr[k].shape[1] // s
            y, x = int(self.rng.integers(h - p + 1)), int(self.rng.integers(w - p + 1))
            gts.append(self.hr[k][y * s:(y + p) * s, x * s:(x + p) * s])
            if self.lq is not None:
                lqs.append(self.lq[k][y:y + p, x:x + p])

        def stack(imgs):
            return torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).copy())

        return (stack(lqs) if lqs else None), stack(gts)


def val_pairs(data, scale, max_side=None):
    """Validation (LR, HR) tensors (1, 3, h, w) float64 in [0, 1] from ``<data>/val``; optionally centre-cropped so
    the HR side is at most ``max_side`` (keeps CPU validation short)."""
    import torch
    hr_dir = osp.join(data, 'val', 'HR')
    pairs = []
    for n in sorted(n for n in os.listdir(hr_dir) if n.endswith('.png')):
        hr = _read_rgb(osp.join(hr_dir, n))
        lq = _read_rgb(osp.join(data, 'val', 'LR_bicubic', f'X{scale}', n))
        if max_side:
            h, w = min(lq.shape[0], max_side // scale), min(lq.shape[1], max_side // scale)
            y, x = (lq.shape[0] - h) // 2, (lq.shape[1] - w) // 2
            lq = lq[y:y + h, x:x + w]
            hr = hr[y * scale:(y + h) * scale, x * scale:(x + w) * scale]
        pairs.append(tuple(torch.from_numpy(a.transpose(2, 0, 1).copy())[None] for a in (lq, hr)))
    return pairs


def psnr_y(sr, hr, crop_border):
    """PSNR on the Y channel (BT.601, basicsr's ``calculate_psnr(test_y_channel=True)``) of [0, 1] RGB tensors,
    after rounding to 8 bit as a saved image would be."""
    import torch
    sr = (sr.clamp(0, 1) * 255).round().double()
    hr = (hr.clamp(0, 1) * 255).round().double()

    def y(img):
        return 16. + (65.481 * img[:, 0] + 128.553 * img[:, 1] + 24.966 * img[:, 2]) / 255.

    d = y(sr) - y(hr)
    if crop_border:
        d = d[..., crop_border:-crop_border, crop_border:-crop_border]
    mse = torch.mean(d**2).item()
    return math.inf if mse == 0 else 10. * math.log10(255.**2 / mse)


def mean_val_psnr(forward, pairs, crop_border):
    """Mean :func:`psnr_y` of ``forward(lq)`` over ``pairs`` (no grad)."""
    import torch
    with torch.no_grad():
        values = [psnr_y(forward(lq), hr, crop_border) for lq, hr in pairs]
    return sum(values) / len(values)


def val_psnr_both(data, scale, ours, official):
    """``result['val_psnr']`` of a run: :func:`mean_val_psnr` of both sides' forwards on the validation pairs of
    ``data`` (HR side at most 192, crop border ``scale``)."""
    pairs = val_pairs(data, scale, max_side=192)
    return {'ours': mean_val_psnr(ours, pairs, scale), 'official': mean_val_psnr(official, pairs, scale)}


def snapshot(module):
    """Detached copies of a module's parameters (to show later how far training moved them)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def moved_note(name, module, snap):
    """A note saying how far ``module``'s parameters moved from ``snap``: proof the comparison is not vacuous."""
    moved = max((v.detach() - snap[k]).abs().max().item() for k, v in module.named_parameters())
    return f'{name}: largest parameter change over the run {moved:.3e} (both sides trained, not frozen)'


def new_record():
    return {'losses': OrderedDict(), 'params': OrderedDict()}


def add_curves(result, rec):
    """Append an iteration's losses to ``result['curves']`` (created on first use)."""
    curves = result.setdefault('curves', {'ours': OrderedDict(), 'official': OrderedDict()})
    for term, (ours, official) in rec['losses'].items():
        curves['ours'].setdefault(term, []).append(ours)
        curves['official'].setdefault(term, []).append(official)


def finish_iteration(result, rec, curves, keep_every=None):
    """Store ``rec`` in ``result['iters']`` (and its losses in the curves)."""
    result['iters'].append(rec)
    progress_step()
    if curves:
        add_curves(result, rec)


# --------------------------------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------------------------------
def build_ours(opt):
    """srplugins' model (basicsr ``build_model``) from a prepared option dict, on CPU."""
    from basicsr.models import build_model
    return build_model(opt)


def _set_seeds(seed):
    import numpy as np
    import random
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _argv(argv):
    old = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = old


def _purge_modules(*names):
    """Forget cached modules whose top-level name is in ``names`` (official repos reuse generic names such as
    ``model``, ``loss``, ``utils``, ``models``: each method imports its own)."""
    for key in list(sys.modules):
        if key.split('.')[0] in names:
            del sys.modules[key]


A2N_RECIPE = 'options/train/A2N/train_A2N_x2.yml'


@method('a2n')
def run_a2n(ref, iters, seed, data, workdir, curves, official_loss_scale=True, batch=2, lq_patch=24, variant=None):
    """A2N x2: official ``code/trainer.py`` ``Trainer.train()`` (EDSR framework) vs srplugins' recipe (SRModel + A2N).

    The official epoch loop runs unchanged over a loader of ``iters`` batches; between two batches (i.e. after the
    official step) srplugins' ``optimize_parameters`` runs on the same batch and both networks are compared.

    Official side: ``option.py`` parsed from the README's x2 command (``--scale 2 --patch_size 128 --reset --chop
    --batch_size 32 --lr 5e-4``) plus ``--cpu`` and the shrunk batch / patch; ``model.Model`` (AAN, nf 40, unf 24,
    nb 16 hard-coded), ``loss.Loss`` (``1*L1``), ``utility.make_optimizer`` / ``make_scheduler`` through ``Trainer``.
    Data in 0..255 (``rgb_range`` 255), loss on that scale.

    Ours: ``options/train/A2N/train_A2N_x2.yml`` (batch and HR patch shrunk), data in [0, 1]. With
    ``official_loss_scale`` the recipe's ``pixel_opt.loss_weight`` becomes 255, which makes our loss (and gradients)
    the official ones on the 0..255 scale; with the recipe's weight 1 the two differ only by that constant factor,
    which Adam cancels up to its ``eps``. ``variant='recipe_loss_scale'`` (``--variant``) is ``official_loss_scale``
    False: the recipe as shipped, to measure that difference.
    """
    import torch
    if variant not in (None, 'recipe_loss_scale'):
        raise ValueError(f'a2n: unknown variant {variant!r}; expected one of {sorted(VARIANTS["a2n"])}')
    if variant == 'recipe_loss_scale':
        official_loss_scale = False
    torch.set_num_threads(min(2, torch.get_num_threads()))
    code = osp.join(ref, 'code')
    add_ref_path(code)
    notes = [
        'official: code/trainer.py Trainer.train() run unchanged over an in-memory loader of the same batches '
        '(code/data is not imported: code/dataloader.py imports private torch.utils.data symbols gone from today\'s '
        'torch; the batch pipeline is not part of the step)',
        'official args: README x2 command + --cpu (model/loss/trainer pick the device from args.cpu), batch '
        f'{batch}, LR patch {lq_patch}; data in 0..255 as rgb_range 255',
        'official: scheduler.step() before the epoch (old-PyTorch order) leaves lr 5e-4 for 200 epochs; '
        'skip rule (loss > skip_threshold * error_last) cannot trigger in the first epoch (error_last = 1e8)',
        'patch: sys.argv replaced while importing code/option.py (it parses the command line at import)',
        'official ckp (utility.checkpoint) is a stub with dir / write_log: the real one creates experiment folders '
        'and log files',
    ]
    _purge_modules('option', 'template', 'utility', 'model', 'loss', 'trainer', 'data', 'dataloader')
    data = demo_data(workdir, data)
    with float64():
        _set_seeds(seed)
        with _argv([
                'main.py', '--scale', '2', '--patch_size',
                str(2 * lq_patch), '--reset', '--chop', '--batch_size',
                str(batch), '--lr', '5e-4', '--cpu', '--save',
                osp.join(workdir, 'a2n_official')
        ]):
            import option
        args = option.args
        import loss as off_loss
        import model as off_model
        import trainer as off_trainer

        class Ckp:
            dir = osp.join(workdir, 'a2n_official')
            log = torch.Tensor()

            def write_log(self, text, refresh=False):
                pass

        ckp = Ckp()
        official = off_model.Model(args, ckp)
        official_loss = off_loss.Loss(args, ckp)

        overrides = {'train.pixel_opt.loss_weight': 255.} if official_loss_scale else {}
        recipe = load_recipe(A2N_RECIPE, batch=batch, patch=2 * lq_patch, overrides=overrides)
        notes.append('ours: ' + A2N_RECIPE + ' shrunk: ' + '; '.join(recipe['shrunk']))
        if official_loss_scale:
            notes.append('ours: pixel_opt.loss_weight 255 reproduces the official L1 on the 0..255 scale (the recipe '
                         'keeps 1 on [0, 1]; Adam makes the two nearly identical: see docs/A2N.md)')
        else:
            notes.append('ours: the recipe as shipped (L1 on [0, 1], weight 1); our l_pix is reported x255 so the two '
                         'curves share the official 0..255 scale; the parameters differ only through Adam eps')
        ours = build_ours(prepare_opt(recipe, workdir))
        load_converted(ours.net_g, official.model.state_dict())
        start = snapshot(ours.net_g)
        sampler = BatchSampler(data, 2, batch, lq_patch, seed=seed)
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        off_values = []
        official_loss.register_forward_hook(lambda mod, inp, out: off_values.append(out.item()))

        class Loader:
            """The official loop's ``loader_train``: after each yielded batch resumes, the official step is done."""
            dataset = range(iters * batch)  # only its length is read, by the official progress log every print_every

            def __len__(self):
                return iters

            def __iter__(self):
                for it in range(1, iters + 1):
                    lq, gt = sampler()
                    yield lq * 255., gt * 255., None, 0
                    ours.feed_data({'lq': lq, 'gt': gt})
                    ours.optimize_parameters(it)
                    ours_loss = ours.log_dict['l_pix'] * (1. if official_loss_scale else 255.)
                    rec = new_record()
                    rec['losses']['l_pix'] = [ours_loss, off_values[-1]]
                    rec['params']['net_g'] = max_param_diff(ours.net_g, official.model)
                    finish_iteration(result, rec, curves)

        class Loaders:
            loader_train = Loader()
            loader_test = []

        tr = off_trainer.Trainer(args, Loaders(), official, official_loss, ckp)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            tr.train()
        notes.append(moved_note('net_g', ours.net_g, start))
        if curves:
            official.eval()
            ours.net_g.eval()
            result['val_psnr'] = val_psnr_both(data, 2, ours.net_g, lambda x: official.model(x * 255.) / 255.)
    return result


@contextlib.contextmanager
def default_dtype(dtype):
    """Default dtype ``dtype`` inside the block."""
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def load_official_module(path, name, suffix='official'):
    """Import one official source file under the module name ``name``, its basicsr registrations renamed.

    The official files register their classes in basicsr's registries under names that basicsr, srplugins or the
    pip-installed ``realesrgan`` may already own (an assertion on a second registration). While the file runs, every
    ``register()`` of basicsr's registries adds the suffix ``_<suffix>`` (e.g. ``RealESRGANModel_official``), and a
    name registered by an earlier run in the same process is replaced.

    Returns:
        module
    """
    import importlib.util
    from basicsr.utils import registry as reg
    if not osp.isfile(path):
        raise FileNotFoundError(f'--ref: expected the official file {path}; it does not exist')
    registries = [v for v in vars(reg).values() if isinstance(v, reg.Registry)]
    originals = {id(r): r.register for r in registries}

    def make(r):

        def register(obj=None, suffix=None):

            def deco(o):
                r._obj_map.pop(f'{o.__name__}_{suffix_name}', None)
                originals[id(r)](o, suffix=suffix_name)
                return o

            return deco if obj is None else deco(obj)

        return register

    suffix_name = suffix
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with contextlib.ExitStack() as stack:
        for r in registries:
            stack.enter_context(patched(r, 'register', make(r)))
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def net_diffs(pairs, renames=()):
    """``{name: max_param_diff}`` over parameters and floating buffers (e.g. spectral-norm ``weight_u``)."""
    out = OrderedDict()
    for name, (ours, official) in pairs.items():
        a = OrderedDict(ours.named_parameters())
        a.update((k, v) for k, v in ours.named_buffers() if v.is_floating_point())
        b = OrderedDict(official.named_parameters())
        b.update((k, v) for k, v in official.named_buffers() if v.is_floating_point())
        out[name] = max_param_diff(a, b, renames)
    return out


def log_dict_losses(ours, official):
    """Every term of both models' ``log_dict`` (a term on one side only shows as None on the other)."""
    keys = list(official.log_dict) + [k for k in ours.log_dict if k not in official.log_dict]
    return OrderedDict((k, [ours.log_dict.get(k), official.log_dict.get(k)]) for k in keys)


def _realesrgan_batches(recipe, data, crop, batch, seed):
    """GT crops + blur / sinc kernels from srplugins' ``RealESRGANGTDataset`` (recipe's kernel options, the demo HR
    images, ``crop_pad_size`` = ``crop``), one fixed sequence for both sides."""
    import numpy as np
    import random
    import torch
    from torch.utils.data.dataloader import default_collate

    from srplugins.data.realesrgan_dataset import RealESRGANGTDataset
    dopt = copy.deepcopy(recipe['datasets']['train'])
    dopt.update(dataroot_gt=osp.join(data, 'train', 'HR'), meta_info=None, crop_pad_size=crop, phase='train')
    dataset = RealESRGANGTDataset(dopt)
    state = (random.getstate(), np.random.get_state())
    random.seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)

    def draw():
        items = [dataset[int(rng.integers(len(dataset)))] for _ in range(batch)]
        return {k: v for k, v in default_collate(items).items() if isinstance(v, torch.Tensor)}

    return draw, state


def run_realesrgan_family(ref, iters, seed, data, workdir, curves, gan):
    """Real-ESRNet (``gan=False``) / Real-ESRGAN (``gan=True``) step: xinntao/Real-ESRGAN's model classes (the files
    at ``ref``) against srplugins' ``RealESRNetAnyDeviceModel`` / ``RealESRGANAnyDeviceModel`` from the shipped
    recipes, both on the same GT batches and kernels, with the same seeds before ``feed_data`` (the second-order
    degradation and the training-pair pool draw from python ``random``, numpy and torch)."""
    import numpy as np
    import random
    import torch
    torch.set_num_threads(min(2, torch.get_num_threads()))
    kind = 'realesrgan' if gan else 'realesrnet'
    official_file = osp.join(ref, 'realesrgan', 'models', f'{kind}_model.py')
    official_opt_file = osp.join(ref, 'options', f'train_{kind}_x4plus.yml')
    recipe_file = f'options/train/RealESRGAN/train_{"RealESRGAN" if gan else "RealESRNet"}_x4plus.yml'
    shrink = dict(batch=2, patch=None, width=16)
    overrides = {'gt_size': 64, 'network_g.num_block': 2, 'network_g.num_grow_ch': 8}
    if gan:
        overrides['network_d.num_feat'] = 16
    crop = 96  # GT crop fed to the degradation (official: 400); >= what resize_range[0] = 0.15 + 21-tap blur need
    notes = [
        f'official: {official_file} (model), {official_opt_file} (options), networks from basicsr (RRDBNet) and '
        f'{osp.join(ref, "realesrgan", "archs", "discriminator_arch.py")} (UNetDiscriminatorSN)',
        'shrunk on both sides: batch 2, gt_size 64 (LQ 16), GT crop before degradation 96 (official 400), '
        'RRDBNet num_feat 16 / num_block 2 / num_grow_ch 8' + (', UNet D num_feat 16' if gan else ''),
        'patch: torch.nn.Module.cuda and torch.Tensor.cuda are the identity while the official model is built and '
        'fed (its __init__ calls DiffJPEG().cuda(), USMSharp().cuda(); the pair pool allocates with .cuda())',
        'patch: the official jpeger output is made contiguous (basicsr filter2D .view() fails on CPU on the '
        'channels-last tensor DiffJPEG returns; srplugins does the same in ContiguousDiffJPEG)',
        'patch: the official files\' basicsr registrations get the suffix _official (names owned by basicsr / '
        'srplugins / the pip package otherwise)',
        'both sides: VGG19 (perceptual loss) from the same random file through basicsr VGGFeatureExtractor',
        'degradation (feed_data) runs in float32 on both sides (DiffJPEG\'s tables are float32); lq / gt / gt_usm are '
        'then cast to float64 for the step; the degraded batches are compared (data:lq, data:gt)',
    ]
    data = demo_data(workdir, data)
    write_random_backbones(osp.join(workdir, 'backbones'), seed, archs=('vgg19', ))
    _set_seeds(seed)
    with float64():
        module = load_official_module(official_file, f'official_{kind}_model')
        official_cls = getattr(module, 'RealESRGANModel' if gan else 'RealESRNetModel')
        if gan:
            load_official_module(  # registers UNetDiscriminatorSN_official
                osp.join(ref, 'realesrgan', 'archs', 'discriminator_arch.py'), 'official_realesrgan_discriminator_arch')
        off_recipe = load_recipe(official_opt_file, **shrink, overrides=dict(overrides))
        off_opt = prepare_opt(off_recipe, osp.join(workdir, 'official'))
        if gan:
            off_opt['network_d']['type'] = 'UNetDiscriminatorSN_official'
        off_opt['datasets']['train']['gt_size'] = 64
        recipe = load_recipe(recipe_file, **shrink, overrides=dict(overrides))
        notes.append('ours: ' + recipe_file + ' shrunk: ' + '; '.join(recipe['shrunk']))
        opt = prepare_opt(recipe, osp.join(workdir, 'ours'))
        import torch.nn as nn
        with patched(nn.Module, 'cuda', lambda self, *a, **k: self):
            official = official_cls(off_opt)
        ours = build_ours(opt)
        official.jpeger.forward = _contiguous(official.jpeger.forward)
        for model in (official, ours):  # degradation tools in float32 (their inputs are float32)
            model.usm_sharpener.float()
            model.jpeger.float()
        nets = ['net_g', 'net_g_ema'] + (['net_d'] if gan else [])
        for name in nets:
            load_converted(getattr(ours, name), getattr(official, name).state_dict())
        starts = {name: snapshot(getattr(ours, name)) for name in nets}
        draw, _state = _realesrgan_batches(recipe, data, crop, 2, seed)
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        for it in range(1, iters + 1):
            with default_dtype(torch.float32):
                batch = draw()
            fed = {}
            for side, model in (('official', official), ('ours', ours)):
                random.seed(seed * 100003 + it)
                np.random.seed(seed * 100003 + it)
                torch.manual_seed(seed * 100003 + it)
                with default_dtype(torch.float32), patched(torch.Tensor, 'cuda', lambda self, *a, **k: self):
                    model.feed_data({k: v.clone() for k, v in batch.items()})
                for attr in ('lq', 'gt', 'gt_usm'):
                    if hasattr(model, attr):
                        setattr(model, attr, getattr(model, attr).double())
                fed[side] = (model.lq, model.gt)
            with warnings_off():
                official.optimize_parameters(it)
                ours.optimize_parameters(it)
            rec = new_record()
            rec['losses'] = log_dict_losses(ours, official)
            rec['params']['data:lq'] = (fed['ours'][0] - fed['official'][0]).abs().max().item()
            rec['params']['data:gt'] = (fed['ours'][1] - fed['official'][1]).abs().max().item()
            rec['params'].update(net_diffs({name: (getattr(ours, name), getattr(official, name)) for name in nets}))
            finish_iteration(result, rec, curves)
        notes.extend(moved_note(name, getattr(ours, name), starts[name]) for name in nets)
        if curves:
            result['val_psnr'] = val_psnr_both(data, 4, ours.net_g_ema.eval(), official.net_g_ema.eval())
    return result


def _contiguous(forward):

    def wrapped(*args, **kwargs):
        return forward(*args, **kwargs).contiguous()

    return wrapped


@contextlib.contextmanager
def warnings_off():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


@method('realesrnet')
def run_realesrnet(ref, iters, seed, data, workdir, curves):
    """Real-ESRNet step (L1 to the USM-sharpened GT, EMA): see :func:`run_realesrgan_family`."""
    return run_realesrgan_family(ref, iters, seed, data, workdir, curves, gan=False)


@method('realesrgan')
def run_realesrgan(ref, iters, seed, data, workdir, curves):
    """Real-ESRGAN step (L1 + perceptual + GAN, U-Net SN D, EMA): see :func:`run_realesrgan_family`."""
    return run_realesrgan_family(ref, iters, seed, data, workdir, curves, gan=True)


BSRGAN_RECIPE = 'options/train/BSRGAN/train_BSRGAN_x4_kair.yml'


@method('bsrgan')
def run_bsrgan(ref, iters, seed, data, workdir, curves, batch=2, lq_patch=16):
    """BSRGAN GAN stage: KAIR ``models/model_gan.py`` ``ModelGAN`` (``options/train_bsrgan_x4_gan.json``) vs
    srplugins' ``BSRGANModel`` (``options/train/BSRGAN/train_BSRGAN_x4_kair.yml``).

    Both get the same (L, H) batch: KAIR degrades in its dataset (``data/dataset_blindsr.py``), outside the step, so
    the batches are the demo set's bicubic pairs. Per step the discriminator is called three times on both sides in
    the same order (D(E) for G, D(H), D(E.detach())), so the spectral-norm power iterations (``weight_u``) advance
    alike; ``weight_u`` / ``weight_v`` are compared with the parameters.
    """
    import torch
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from srplugins.checkpoints.bsrgan_keys import _RENAMES as RRDB_RENAMES
    json_file = osp.join(ref, 'options', 'train_bsrgan_x4_gan.json')
    notes = [
        f'official: {osp.join(ref, "models", "model_gan.py")} ModelGAN(opt) + init_train(); opt = '
        f'utils/utils_option.parse({json_file}) as a NoneDict, gpu_ids None (CPU: model_base picks cuda iff gpu_ids '
        'is not None), path.root in the scratch folder',
        f'shrunk on both sides: batch {batch}, LQ patch {lq_patch} (HR {lq_patch * 4}; official 72 / 288 from the '
        'dataset), RRDBNet nf 16 / nb 2 / gc 8, U-Net D base 16',
        'same (L, H) batches on both sides: bicubic demo pairs (KAIR\'s BSRGAN degradation runs in its dataset, '
        'outside the step)',
        'official loss names: G_loss = l_g_pix, F_loss = l_g_percep, D_loss = l_g_gan, D_real = out_d_real, D_fake = '
        'out_d_fake; l_d_real / l_d_fake (not logged by KAIR) are read from its D_lossfn calls',
        'both sides: VGG19 from the same random file (KAIR: torchvision vgg19(pretrained=True) from the torch.hub '
        'cache; ours: basicsr VGGFeatureExtractor through srplugins\' offline lookup)',
        'keys: KAIR RRDBNet -> basicsr RRDBNet by srplugins.checkpoints.bsrgan_keys; Discriminator_UNet keys are '
        'UNetSNDiscriminator\'s; DataParallel\'s module. prefix (KAIR model_to_device) stripped',
    ]
    _purge_modules('models', 'utils', 'data')
    add_ref_path(ref)
    data = demo_data(workdir, data)
    write_random_backbones(osp.join(workdir, 'backbones'), seed, archs=('vgg19', ))
    _set_seeds(seed)
    with float64():
        from utils import utils_option
        with contextlib.redirect_stdout(io.StringIO()):
            kopt = utils_option.parse(json_file, is_train=True)
        kopt['gpu_ids'] = None
        kopt['dist'] = False
        kopt['path']['root'] = osp.join(workdir, 'kair')
        kopt['path']['models'] = osp.join(workdir, 'kair', 'models')
        kopt['netG'].update(nf=16, nb=2, gc=8)
        kopt['netD'].update(base_nc=16)
        kopt = utils_option.dict_to_nonedict(kopt)
        from models.model_gan import ModelGAN
        with contextlib.redirect_stdout(io.StringIO()):
            official = ModelGAN(kopt)
            official.init_train()
        recipe = load_recipe(
            BSRGAN_RECIPE,
            batch=batch,
            width=16,
            overrides={
                'network_g.num_block': 2,
                'network_g.num_grow_ch': 8,
                'network_d.num_feat': 16
            })
        notes.append('ours: ' + BSRGAN_RECIPE + ' shrunk: ' + '; '.join(recipe['shrunk']))
        ours = build_ours(prepare_opt(recipe, osp.join(workdir, 'ours')))
        load_converted(ours.net_g, official.netG.state_dict(), RRDB_RENAMES)
        load_converted(ours.net_g_ema, official.netE.state_dict(), RRDB_RENAMES)
        load_converted(ours.net_d, official.netD.state_dict())
        pairs = {
            'net_g': (ours.net_g, official.netG),
            'net_g_ema': (ours.net_g_ema, official.netE),
            'net_d': (ours.net_d, official.netD)
        }
        starts = {name: snapshot(o) for name, (o, _) in pairs.items()}
        d_calls = []
        official.D_lossfn.register_forward_hook(lambda mod, inp, out: d_calls.append(out.item()))
        sampler = BatchSampler(data, 4, batch, lq_patch, seed=seed)
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        for it in range(1, iters + 1):
            lq, gt = sampler()
            official.feed_data({'L': lq, 'H': gt})
            ours.feed_data({'lq': lq, 'gt': gt})
            d_calls.clear()
            with warnings_off():  # KAIR steps its schedulers before the optimizers (old-PyTorch order)
                official.update_learning_rate(it)
            official.optimize_parameters(it)
            ours.optimize_parameters(it)
            k = official.log_dict
            rec = new_record()
            for term, off in (('l_g_pix', k['G_loss']), ('l_g_percep', k['F_loss']), ('l_g_gan', k['D_loss']),
                              ('l_d_real', d_calls[1]), ('out_d_real', float(k['D_real'])), ('l_d_fake', d_calls[2]),
                              ('out_d_fake', float(k['D_fake']))):
                rec['losses'][term] = [ours.log_dict.get(term), off]
            rec['params'].update(net_diffs(pairs, RRDB_RENAMES))
            finish_iteration(result, rec, curves)
        notes.extend(moved_note(name, o, starts[name]) for name, (o, _) in pairs.items())
        if curves:
            result['val_psnr'] = val_psnr_both(data, 4, ours.net_g_ema.eval(), official.netE.eval())
    _purge_modules('models', 'utils', 'data')
    return result


SRGAN_RECIPE = 'options/train/SRGAN/train_SRGAN_x4_VGG54.yml'


@method('srgan')
def run_srgan(ref, iters, seed, data, workdir, curves, batch=2, gt_size=48):
    """SRGAN (no official code): basicsr ``SRGANModel`` with srplugins' ``SRResNet`` / ``SRGANDiscriminator`` and
    ``VGGContentLoss`` from ``options/train/SRGAN/train_SRGAN_x4_VGG54.yml``, against the paper's formulas written
    out here (Ledig et al. 2017, Eq. 3-5 and Sec. 3.2), on copies of the same networks:

    * content: ``w * mean((phi(G(x)) - phi(y))**2)``, phi = torchvision VGG19 ``features[:36]`` (up to relu5_4,
      "VGG54"), input ImageNet-normalised, w = the recipe's perceptual_weight (20.4, see
      srplugins/losses/srgan_loss.py);
    * adversarial (generator): ``1e-3 * mean(-log D(G(x)))`` with D = sigmoid(logit);
    * discriminator: ``mean(-log D(y)) + mean(-log(1 - D(G(x))))`` (the two halves back-propagated one after the
      other, as basicsr does; their gradients add up to the sum's);
    * Adam(lr 1e-4, betas (0.9, 0.999)) for both, G step then D step (k = 1), no EMA.

    Both D's BatchNorm layers see the same batches in the same order (D(G(x)) in the G step, then D(y), then
    D(G(x).detach())), so running statistics are compared with the parameters.
    """
    import torch
    import torch.nn.functional as F
    import torchvision
    torch.set_num_threads(min(2, torch.get_num_threads()))
    notes = [
        'reference: the paper\'s losses written out in scripts/parity.py (run_srgan) on deep copies of the same '
        'initial G and D, own torch.optim.Adam optimizers, own VGG19 feature extractor (torchvision features[:36])',
        f'shrunk: batch {batch}, HR patch {gt_size} (= network_d.input_size; paper 96), SRResNet num_feat 16 / '
        'num_block 2, D num_feat 16',
        'both sides: VGG19 from the same random file',
    ]
    if ref:
        notes.append('--ref is ignored for srgan (no official code)')
    data = demo_data(workdir, data)
    paths = write_random_backbones(osp.join(workdir, 'backbones'), seed, archs=('vgg19', ))
    _set_seeds(seed)
    with float64():
        recipe = load_recipe(
            SRGAN_RECIPE,
            batch=batch,
            patch=gt_size,
            width=16,
            overrides={
                'network_g.num_block': 2,
                'network_d.num_feat': 16,
                'network_d.input_size': gt_size
            })
        notes.append('ours: ' + SRGAN_RECIPE + ' shrunk: ' + '; '.join(recipe['shrunk']))
        train = recipe['train']
        content_weight = float(train['perceptual_opt']['perceptual_weight'])
        adv_weight = float(train['gan_opt']['loss_weight'])
        if list(train['perceptual_opt']['layer_weights']) != ['relu5_4'] or adv_weight != 1e-3:
            raise ValueError(f'{SRGAN_RECIPE}: expected VGG54 (relu5_4) content loss and adversarial weight 1e-3')
        ours = build_ours(prepare_opt(recipe, osp.join(workdir, 'ours')))
        ref_g, ref_d = copy.deepcopy(ours.net_g), copy.deepcopy(ours.net_d)
        vgg = torchvision.models.vgg19(weights=None)
        vgg.load_state_dict(torch.load(paths['vgg19'], map_location='cpu', weights_only=True))
        phi = vgg.features[:36].eval()  # conv1_1 ... relu5_4
        for p in phi.parameters():
            p.requires_grad = False
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

        def features(img):
            return phi((img - mean) / std)

        def adam(params):
            cfg = train['optim_g']
            return torch.optim.Adam(params, lr=cfg['lr'], betas=tuple(cfg['betas']), weight_decay=0)

        opt_g, opt_d = adam(ref_g.parameters()), adam(ref_d.parameters())
        pairs = {'net_g': (ours.net_g, ref_g), 'net_d': (ours.net_d, ref_d)}
        starts = {name: snapshot(o) for name, (o, _) in pairs.items()}
        sampler = BatchSampler(data, 4, batch, gt_size // 4, seed=seed)
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        for it in range(1, iters + 1):
            lq, gt = sampler()
            ours.feed_data({'lq': lq, 'gt': gt})
            ours.optimize_parameters(it)
            # the paper's step, written out
            for p in ref_d.parameters():
                p.requires_grad = False
            opt_g.zero_grad()
            sr = ref_g(lq)
            content = content_weight * torch.mean((features(sr) - features(gt))**2)
            adversarial = adv_weight * torch.mean(-F.logsigmoid(ref_d(sr)))  # -log D(G(x)), D = sigmoid
            (content + adversarial).backward()
            opt_g.step()
            for p in ref_d.parameters():
                p.requires_grad = True
            opt_d.zero_grad()
            logit_real = ref_d(gt)
            d_real = torch.mean(-F.logsigmoid(logit_real))  # -log D(y)
            d_real.backward()
            logit_fake = ref_d(sr.detach())
            d_fake = torch.mean(-F.logsigmoid(-logit_fake))  # -log(1 - D(G(x)))
            d_fake.backward()
            opt_d.step()
            rec = new_record()
            for term, value in (('l_g_percep', content), ('l_g_gan', adversarial), ('l_d_real', d_real),
                                ('out_d_real', logit_real.detach().mean()), ('l_d_fake', d_fake),
                                ('out_d_fake', logit_fake.detach().mean())):
                rec['losses'][term] = [ours.log_dict.get(term), value.item()]
            rec['params'].update(net_diffs(pairs))
            finish_iteration(result, rec, curves)
        notes.extend(moved_note(name, o, starts[name]) for name, (o, _) in pairs.items())
        if curves:
            result['val_psnr'] = val_psnr_both(data, 4, ours.net_g.eval(), ref_g.eval())
    return result


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('method', help='a2n, dasr_dsn, dasr_sr, bsrgan, realesrnet, realesrgan or srgan')
    parser.add_argument('--ref', default=None, help='root of the official checkout (git clone); unused for srgan')
    parser.add_argument('--iters', type=int, default=3, help='training iterations on each side (default 3)')
    parser.add_argument('--seed', type=int, default=0, help='seed of weights, batches and random draws (default 0)')
    parser.add_argument('--json', default=None, help='write the full result (all figures) to this JSON file')
    parser.add_argument('--plot', default=None, help='draw both sides\' loss curves and validation PSNR to this PNG')
    parser.add_argument('--data', default=None, help='data folder in the demo layout (default: build the demo set)')
    parser.add_argument('--workdir', default=None, help='scratch folder (default: a temporary folder, removed)')
    parser.add_argument(
        '--batch',
        type=int,
        default=None,
        help='batch of both sides, for the methods whose run takes it (default 2 everywhere); an iteration costs '
        'about its size')
    listing = '; '.join(f'{m}: ' + ', '.join(f'{k} ({v})' for k, v in vs.items()) for m, vs in VARIANTS.items())
    parser.add_argument(
        '--variant',
        default=None,
        help='run one documented difference instead of the official behaviour, to measure its effect (the verdict is '
        'then expected to FAIL; the figures are the effect). ' + listing)
    return parser.parse_args(argv)


def main(argv=None):
    # a method file doing `from parity import ...` must get this module, not a second copy of it
    sys.modules.setdefault('parity', sys.modules[__name__])
    args = parse_args(argv)
    methods = all_methods()
    if args.method not in methods:
        known = sorted(set(methods) | {'dasr_dsn', 'dasr_sr'})
        extra = '' if args.method not in ('dasr_dsn', 'dasr_sr') else ' (scripts/parity_dasr.py is missing)'
        print(f'unknown METHOD {args.method!r}{extra}; expected one of {", ".join(known)}', file=sys.stderr)
        return 2
    if args.iters < 1:
        print('--iters must be at least 1', file=sys.stderr)
        return 2
    if args.ref is None and args.method != 'srgan':
        print(f'--ref PATH (root of the official checkout) is required for {args.method}', file=sys.stderr)
        return 2
    if args.variant is not None and args.variant not in VARIANTS.get(args.method, {}):
        known = ', '.join(VARIANTS.get(args.method, {})) or 'none'
        print(f'--variant {args.variant!r} is not a variant of {args.method}; its variants: {known}', file=sys.stderr)
        return 2
    curves = args.plot is not None
    kwargs = {} if args.variant is None else {'variant': args.variant}
    if args.batch is not None:
        if 'batch' not in inspect.signature(methods[args.method]).parameters or args.batch < 1:
            print(f'--batch {args.batch}: not an option of {args.method} or below 1', file=sys.stderr)
            return 2
        kwargs['batch'] = args.batch
    from tqdm import tqdm
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix=f'parity_{args.method}_'))
        os.makedirs(workdir, exist_ok=True)
        _PROGRESS['bar'] = stack.enter_context(
            tqdm(total=args.iters, desc=f'parity {args.method}', unit='iter', file=sys.stderr, mininterval=5))
        try:
            result = methods[args.method](args.ref, args.iters, args.seed, args.data, workdir, curves, **kwargs)
        finally:
            _PROGRESS['bar'] = None
    if args.variant is not None:
        result['variant'] = args.variant
        result.setdefault('notes', []).append(f'variant {args.variant}: {VARIANTS[args.method][args.variant]} '
                                              '(not the parity default: the differences measure its effect)')
    ok, _ = report(args.method, result)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(to_jsonable(dict(result, method=args.method, passed=ok)), f, indent=1)
    if args.plot:
        plot(args.method, result, args.plot)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
