"""Training parity of srplugins' DASR models against the official ShuhangGu/DASR code (``dasr_dsn``, ``dasr_sr``).

Used by ``scripts/parity.py dasr_dsn|dasr_sr --ref <checkout of github.com/ShuhangGu/DASR>`` (this module only holds
the DASR-specific parts; the CLI, printing, verdict, json and plot live in ``scripts/parity.py``).

What is compared, step by step, in float64:

* ``dasr_dsn``: the official down-sampling stage (``codes/DSN``: ``model.De_resnet``, ``model.Discriminator``,
  ``loss.GeneratorLoss``, ``loss.discriminator_loss`` and the iteration of ``train.py``) against
  ``DASRDownsamplerModel`` built from ``options/train/DASR/train_DASR_DSN_x4_AIM2019.yml``. The official command line
  is parsed by the official ``argparse`` block of ``train.py`` with the recipe's values (the README command:
  ``--generator DeResnet --discriminator FSD --norm_layer Instance --filter wavelet --cat_or_sum cat``).
* ``dasr_sr``: the official ``codes/SRN/models/DASR_model.py`` ``DASR_Model`` (its own ``feed_data`` and
  ``optimize_parameters``, unmodified) built from ``options/train/train_DASR_auto_reproduce_aim2019.json`` against
  ``DASRModel`` built from ``options/train/DASR/train_DASR_SR_x4_AIM2019.yml``.

Shrinking (same on both sides, stated in the notes): batch size and patch size for both stages; for the SR stage also
the generator width ``num_feat`` (official ``nf``; ``num_grow_ch`` stays 32, which the official ``RRDBNet``
hard-codes). The DSN networks and the SR discriminator keep their full width (the official code hard-codes it).

Patches applied to the official code (nothing else is changed; each is needed on today's stack or on CPU):

1. ``skimage.measure.compare_ssim`` is set to ``skimage.metrics.structural_similarity``: PerceptualSimilarity's
   ``models/util.py`` imports the former at module level; scikit-image removed it in 0.19.
2. ``pkg_resources`` is replaced by a small module with ``resource_stream`` when setuptools no longer ships it:
   ``pytorch_wavelets`` (imported at module level by DSN ``model.py`` / ``loss.py`` and SRN ``DASR_model.py`` /
   ``architecture.py``) imports it at package import.
3. ``IPython.embed`` gets a stub module when IPython is not installed (PerceptualSimilarity imports it, unused).
4. ``torch.nn.Module.cuda`` is the identity while official objects are built and stepped: DSN ``loss.py`` calls
   ``.cuda()`` unconditionally (``color_filter.cuda()`` at construction, a new ``DWTForward().cuda()`` in every
   wavelet colour loss), which fails on a CPU-only machine.
5. DSN ``train.py`` is module-level code (data loaders, tensorboard, the epoch loop): its ``argparse`` block is
   executed from the official source to get the official ``opt``, and the body of one iteration (``train.py``
   "Estimate scores" .. ``optimizer_g.step()``) is reproduced from the objects it builds, line by line, in
   :func:`official_dsn_step`.
6. Modern-torch blocker of that iteration: the official generator loss back-propagates through ``fake_tex``, whose
   graph holds the discriminator weights that ``optimizer_d.step()`` has just changed in place; torch >= 1.5 raises
   "modified by an inplace operation". Choice here: **recompute** ``fake_tex = model_d(fake_img)`` with the updated
   discriminator before the generator loss (the fix srplugins implements). The two other choices (a pre-step copy
   of the discriminator; torch-1.1 semantics through identity ``saved_tensors_hooks``) are run once from the same
   state and their effect reported in a note (:func:`dsn_blocker_effect`, docs/DASR.md).
7. SRN: the option files name the unregistered model ``DASR_FS_ESRGAN_patchGAN`` (``models/__init__.py`` knows
   only ``DASR``), so ``DASR_Model`` is instantiated directly; ``gpu_ids=None`` (CPU: ``base_model.py``),
   ``val_lpips=False`` (a second LPIPS for validation only), ``network_G.scale`` set as ``options.parse`` does, and
   ``train.fs_kernel_size`` set to 5 because the AIM2019 JSON lacks it and ``DASR_Model`` builds a Gaussian
   ``FilterHigh(kernel_size=None)`` (a TypeError; that filter only draws visualisations).

Pretrained backbones: LPIPS' AlexNet and linear layers are the random files of ``parity.write_random_backbones``
(torchvision's hub cache and ``SRPLUGINS_PRETRAINED_DIR``), loaded by both sides; the official ``PNetLin`` gets the
random linear layers after it loaded the checkout's ``weights/v0.1/alex.pth`` (a fixed path in its code).

Shared helpers (float64, random backbones, recipe loading / shrinking, demo data, PSNR-Y) come from
``scripts/parity.py``, imported at run time.
"""
import argparse
import ast
import contextlib
import copy
import importlib.resources
import json
import numpy as np
import os
import os.path as osp
import re
import sys
import types
from collections import OrderedDict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPTS = osp.join(ROOT, 'scripts')
DSN_RECIPE = 'options/train/DASR/train_DASR_DSN_x4_AIM2019.yml'
SR_RECIPE = 'options/train/DASR/train_DASR_SR_x4_AIM2019.yml'
SR_OFFICIAL_JSON = 'codes/SRN/options/train/train_DASR_auto_reproduce_aim2019.json'

# shrinking of the recipes (both sides): DSN batch / HR crop; SR batch per domain / HR crop / generator width.
# LPIPS-alex needs images of at least 31 px (conv1 k11 s4 and two 3x3/2 max-pools): DSN LR 32, SR HR 64.
DSN_SHRINK = {'batch_size': 2, 'gt_size': 128}
SR_SHRINK = {'batch_size': 2, 'gt_size': 64, 'num_feat': 16}  # num_grow_ch stays 32: official RRDBNet hard-codes gc

# top-level module names of the official code bases (DSN: model, loss, utils, data_loader; SRN: models, utils,
# options, data); they clash with each other, so each import happens with these names cleared and restored after.
OFFICIAL_TOP_MODULES = ('model', 'loss', 'utils', 'data_loader', 'models', 'options', 'data', 'PerceptualSimilarity')


# ----------------------------------------------------------------------------------------------------------------
# key conversion (official old-ESRGAN RRDB layout <-> basicsr RRDBNet)
# ----------------------------------------------------------------------------------------------------------------
def _rrdb_tail_indices(state, prefix):
    """Indices ``i`` of the ``<prefix>model.<i>.weight`` convs after the trunk (upconvs, HR conv, last conv)."""
    idx = sorted({
        int(m.group(1))
        for k in state
        for m in [re.match(re.escape(prefix) + r'model\.(\d+)\.weight$', k)] if m and int(m.group(1)) >= 2
    })
    return idx


def rrdb_official_to_basicsr(state):
    """Official SRN ``RRDBNet`` (old ESRGAN layout) state dict -> basicsr ``RRDBNet`` keys.

    ``model.0`` -> ``conv_first``; ``model.1.sub.{b}.RDB{r}.conv{c}.0`` -> ``body.{b}.rdb{r}.conv{c}``;
    ``model.1.sub.{nb}`` -> ``conv_body``; the remaining convs ``model.{i}`` in order -> ``conv_up1``, ``conv_up2``,
    ``conv_hr``, ``conv_last`` (nearest-neighbour ``upconv`` x4 variant, as ``define_G('RRDB_net')`` builds).

    Args:
        state (dict[str, Tensor]): Official state dict.

    Returns:
        OrderedDict[str, Tensor]: Same tensors under basicsr names, same order.
    """
    blocks = {int(m.group(1)) for k in state for m in [re.match(r'model\.1\.sub\.(\d+)\.RDB', k)] if m}
    if not blocks or 'model.0.weight' not in state:
        raise ValueError('Not an official old-ESRGAN RRDBNet state dict (no model.0 / model.1.sub.<b>.RDB keys).')
    trunk = max(blocks) + 1
    tail = _rrdb_tail_indices(state, '')
    if len(tail) != 4:
        raise ValueError(f'Expected 4 convs after the trunk (x4 upconv variant), got model.{tail}.')
    names = dict(zip(tail, ('conv_up1', 'conv_up2', 'conv_hr', 'conv_last')))
    out = OrderedDict()
    for key, value in state.items():
        m = re.match(r'model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$', key)
        if m:
            out[f'body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}'] = value
            continue
        m = re.match(r'model\.1\.sub\.(\d+)\.(weight|bias)$', key)
        if m and int(m.group(1)) == trunk:
            out[f'conv_body.{m.group(2)}'] = value
            continue
        m = re.match(r'model\.(\d+)\.(weight|bias)$', key)
        if m and int(m.group(1)) == 0:
            out[f'conv_first.{m.group(2)}'] = value
            continue
        if m and int(m.group(1)) in names:
            out[f'{names[int(m.group(1))]}.{m.group(2)}'] = value
            continue
        raise ValueError(f'Unexpected key {key!r} in an official RRDBNet state dict.')
    return out


def rrdb_basicsr_to_official(state):
    """basicsr ``RRDBNet`` (x4) state dict -> official SRN layout; inverse of :func:`rrdb_official_to_basicsr`.

    The official ``Sequential`` indices are ``model.3`` / ``model.6`` (upconvs, each followed by an activation and
    preceded by an upsample), ``model.8`` (HR conv) and ``model.10`` (last conv).
    """
    blocks = {int(m.group(1)) for k in state for m in [re.match(r'body\.(\d+)\.rdb', k)] if m}
    if not blocks or 'conv_first.weight' not in state or 'conv_up2.weight' not in state:
        raise ValueError('Not a basicsr x4 RRDBNet state dict (conv_first / body.<b>.rdb / conv_up2 keys).')
    trunk = max(blocks) + 1
    names = {
        'conv_first': 'model.0',
        'conv_body': f'model.1.sub.{trunk}',
        'conv_up1': 'model.3',
        'conv_up2': 'model.6',
        'conv_hr': 'model.8',
        'conv_last': 'model.10'
    }
    out = OrderedDict()
    for key, value in state.items():
        m = re.match(r'body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$', key)
        if m:
            out[f'model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{m.group(4)}'] = value
            continue
        head, _, leaf = key.rpartition('.')
        if head not in names or leaf not in ('weight', 'bias'):
            raise ValueError(f'Unexpected key {key!r} in a basicsr RRDBNet state dict.')
        out[f'{names[head]}.{leaf}'] = value
    return out


def max_abs_diff(ours, official):
    """Largest absolute difference over the floating tensors two state dicts share by name.

    Raises:
        ValueError: When the floating tensors' names or shapes differ (a key-conversion error, not a training
            difference).
    """
    a = {k: v for k, v in ours.items() if v.is_floating_point()}
    b = {k: v for k, v in official.items() if v.is_floating_point()}
    if set(a) != set(b):
        raise ValueError(f'state dicts differ in keys: only ours {sorted(set(a) - set(b))[:5]}, only official '
                         f'{sorted(set(b) - set(a))[:5]}')
    worst = 0.0
    for key in a:
        if a[key].shape != b[key].shape:
            raise ValueError(f'{key}: shape {tuple(a[key].shape)} vs {tuple(b[key].shape)}')
        worst = max(worst, (a[key].double() - b[key].double()).abs().max().item() if a[key].numel() else 0.0)
    return worst


# ----------------------------------------------------------------------------------------------------------------
# official argparse of DSN train.py
# ----------------------------------------------------------------------------------------------------------------
def official_dsn_parser(train_py_source):
    """The ``argparse.ArgumentParser`` that DSN ``train.py`` builds, executed from its source (the statements from
    ``parser = argparse.ArgumentParser(...)`` up to, not including, ``opt = parser.parse_args()``)."""
    tree = ast.parse(train_py_source)
    body, started = [], False
    for node in tree.body:
        text = ast.unparse(node)
        if text.startswith('parser = argparse.ArgumentParser'):
            started = True
        if started:
            if 'parse_args' in text:
                break
            body.append(node)
    if not body:
        raise ValueError('DSN train.py: no "parser = argparse.ArgumentParser(...)" block found.')
    namespace = {'argparse': argparse}
    exec(compile(ast.Module(body=body, type_ignores=[]), 'codes/DSN/train.py', 'exec'), namespace)  # noqa: S102
    return namespace['parser']


def dsn_flags_from_recipe(opt, batch_size, crop_size):
    """Official DSN command-line flags equivalent to a ``DASRDownsamplerModel`` recipe (already shrunk)."""
    net_g, net_d, train = opt['network_g'], opt['network_d'], opt['train']
    flags = [
        '--generator', 'DeResnet' if net_g.get('scale', 4) > 1 else 'DSGAN', '--upscale_factor',
        str(max(1, net_g.get('scale', 4))), '--num_res_blocks',
        str(net_g.get('num_block', 8)), '--discriminator',
        net_d.get('d_arch', 'fsd').upper() if net_d.get('d_arch', 'fsd') == 'fsd' else net_d['d_arch'], '--norm_layer',
        net_d.get('norm', 'batch').capitalize(), '--filter',
        net_d.get('filter_type', 'gau'), '--cat_or_sum',
        net_d.get('cat_or_sum', 'cat'), '--kernel_size',
        str(net_d.get('kernel_size', 5)), '--batch_size',
        str(batch_size), '--crop_size',
        str(crop_size), '--learning_rate',
        repr(float(train['optim_g']['lr'])), '--adam_beta_1',
        repr(float(train['optim_g']['betas'][0])), '--w_col',
        repr(float(train['col_opt']['loss_weight'])), '--w_per',
        repr(float(train['perceptual_opt']['loss_weight'])), '--w_tex',
        repr(float(train['gan_opt']['loss_weight']))
    ]
    return flags


# ----------------------------------------------------------------------------------------------------------------
# official imports with the stack patches
# ----------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def official_code(paths):
    """Puts ``paths`` first on ``sys.path`` with the official top-level module names cleared, applies patches 1-4 of
    the module docstring, and restores ``sys.path``, ``sys.modules`` and ``Module.cuda`` on exit."""
    import skimage.measure
    import skimage.metrics
    import torch

    saved_path = list(sys.path)
    stash = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split('.')[0] in OFFICIAL_TOP_MODULES}
    added_stubs = []
    if not hasattr(skimage.measure, 'compare_ssim'):  # patch 1
        skimage.measure.compare_ssim = skimage.metrics.structural_similarity
    try:  # patch 2
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = types.ModuleType('pkg_resources')
        stub.resource_stream = lambda pkg, name: importlib.resources.files(pkg).joinpath(name).open('rb')
        sys.modules['pkg_resources'] = stub
        added_stubs.append('pkg_resources')
    try:  # patch 3
        import IPython  # noqa: F401
    except ImportError:
        stub = types.ModuleType('IPython')
        stub.embed = lambda *a, **k: None
        sys.modules['IPython'] = stub
        added_stubs.append('IPython')
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self  # patch 4
    sys.path[:0] = list(paths)
    try:
        yield
    finally:
        torch.nn.Module.cuda = cuda
        sys.path[:] = saved_path
        for k in list(sys.modules):
            if k.split('.')[0] in OFFICIAL_TOP_MODULES:
                del sys.modules[k]
        sys.modules.update(stash)


@contextlib.contextmanager
def no_cuda():
    """Patch 4 alone, for the official steps run after :func:`official_code` has restored the imports."""
    import torch
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.nn.Module.cuda = cuda


def _framework():
    """``scripts/parity.py`` (the shared helpers), imported at run time."""
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    import parity
    return parity


@contextlib.contextmanager
def backbones_float64(workdir, seed):
    """Random backbone files (``parity.write_random_backbones``: AlexNet, LPIPS linear layers) and float64 as the
    default dtype inside the block. Yields the file paths."""
    parity = _framework()
    paths = parity.write_random_backbones(osp.join(workdir, 'backbones'), seed)
    with parity.float64():
        yield paths


def build_ours_from_recipe(opt, workdir, lpips_linear):
    """srplugins' model from a (shrunk) recipe dict, its LPIPS linear layers read from ``lpips_linear``."""
    parity = _framework()
    with parity.use_lpips_linear(lpips_linear):
        return parity.build_ours(parity.prepare_opt(opt, workdir))


def load_official_lpips_linear(pnet_lin, path):
    """Loads the LPIPS linear layers ``lin{k}.model.1.weight`` from ``path`` into the official ``PNetLin`` (which
    loaded the checkout's ``weights/v0.1/alex.pth`` at a fixed path when it was built)."""
    import torch
    lin = torch.load(path, map_location='cpu', weights_only=True)
    own = pnet_lin.state_dict()
    missing = [k for k in lin if k not in own]
    if missing:
        raise RuntimeError(f'official LPIPS has no linear layer {missing[0]!r}')
    with torch.no_grad():
        for k, v in lin.items():
            own[k].copy_(v)


# ----------------------------------------------------------------------------------------------------------------
# data: the same batches for both sides
# ----------------------------------------------------------------------------------------------------------------
def _read_rgb(path):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'--data: cannot read image {path}')
    return img[..., ::-1].astype(np.float32) / 255.


def demo_domains(data, workdir, min_hr):
    """Unpaired DASR domains ``(target_hr, source_lr, val_hr, val_lr)`` as float32 RGB ``(H, W, 3)`` arrays.

    The images are ``<data>/train/HR`` and ``<data>/val/HR`` of the demo layout (``parity.demo_data``: ``--data`` or
    the embedded demo set), split as scripts/dasr_demo.py does: every other training image is the clean HR target
    domain, the x4 bicubic LR of the others degraded by ``dasr_demo.degrade_real`` is the real-LR source domain; the
    validation images give paired (HR, degraded LR) images.
    """
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    import srplugins  # noqa: F401
    # isort: split
    from basicsr.utils.matlab_functions import imresize
    from dasr_demo import degrade_real

    folder = _framework().demo_data(workdir, data)

    def read_all(sub):
        root = osp.join(folder, sub, 'HR')
        return [_read_rgb(osp.join(root, n)) for n in sorted(os.listdir(root)) if n.lower().endswith('.png')]

    train, val = read_all('train'), read_all('val')
    if len(train) < 2 or not val:
        raise ValueError(f'{folder}: need at least 2 train/HR and 1 val/HR images for the two DASR domains.')
    small = [i for i in train + val if min(i.shape[:2]) < min_hr]
    if small:
        raise ValueError(f'{folder}: images must be at least {min_hr} px on each side, got {small[0].shape[:2]}')

    def degrade(hr, seed):
        lr8 = np.round(np.clip(imresize(hr, 0.25), 0, 1) * 255).astype(np.uint8)
        return degrade_real(lr8, seed).astype(np.float32) / 255.

    target_hr = train[0::2]
    source_lr = [degrade(img, 100 + i) for i, img in enumerate(train[1::2])]
    val_lr = [degrade(img, 200 + i) for i, img in enumerate(val)]
    return target_hr, source_lr, val, val_lr


def _crop(img, size, rng):
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    return img[top:top + size, left:left + size], top, left


def _t(arr):
    import torch
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def dsn_batch(domains, batch_size, gt_size, rng):
    """One ``DASRUnpairedDataset``-style batch: ``gt`` HR crops, their MATLAB-bicubic x1/4 (clamped, not quantised),
    ``lq_real`` real-LR crops; the unpaired draws come from ``rng`` (numpy Generator) for both sides."""
    import srplugins  # noqa: F401
    # isort: split
    import torch
    from basicsr.utils.matlab_functions import imresize

    target_hr, source_lr = domains[0], domains[1]
    gts, bics, reals = [], [], []
    for _ in range(batch_size):
        hr = _crop(target_hr[int(rng.integers(len(target_hr)))], gt_size, rng)[0]
        gts.append(_t(hr))
        bics.append(_t(np.clip(imresize(hr, 0.25), 0, 1)))
        reals.append(_t(_crop(source_lr[int(rng.integers(len(source_lr)))], gt_size // 4, rng)[0]))
    return {'gt': torch.stack(gts), 'lq_bicubic': torch.stack(bics), 'lq_real': torch.stack(reals)}


def sr_batch(domains, batch_size, gt_size, rng):
    """One ``DASRPairedDataset``-style batch: ``lq`` generated LR (x1/4 bicubic of the HR crop, degraded like the
    real domain) paired with ``gt``; ``ddm`` a smooth domain-distance map in (0, 1) at LR size; ``lq_real`` real-LR
    crops and ``gt_unpair`` HR crops drawn independently (DASR's unpaired draws), all from ``rng``."""
    import srplugins  # noqa: F401
    # isort: split
    import cv2
    import torch
    from basicsr.utils.matlab_functions import imresize
    from dasr_demo import degrade_real

    target_hr, source_lr = domains[0], domains[1]
    lq_size = gt_size // 4
    out = {k: [] for k in ('lq', 'gt', 'ddm', 'lq_real', 'gt_unpair')}
    for _ in range(batch_size):
        hr = _crop(target_hr[int(rng.integers(len(target_hr)))], gt_size, rng)[0]
        lr8 = np.round(np.clip(imresize(hr, 0.25), 0, 1) * 255).astype(np.uint8)
        out['gt'].append(_t(hr))
        out['lq'].append(_t(degrade_real(lr8, int(rng.integers(1 << 30))).astype(np.float32) / 255.))
        coarse = rng.normal(0, 1.5, (4, 4))
        ddm = 1 / (1 + np.exp(-cv2.resize(coarse, (lq_size, lq_size), interpolation=cv2.INTER_LINEAR)))
        out['ddm'].append(_t(ddm[..., None].astype(np.float32)))
        out['lq_real'].append(_t(_crop(source_lr[int(rng.integers(len(source_lr)))], lq_size, rng)[0]))
        out['gt_unpair'].append(_t(_crop(target_hr[int(rng.integers(len(target_hr)))], gt_size, rng)[0]))
    return {k: torch.stack(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# dasr_dsn
# ----------------------------------------------------------------------------------------------------------------
DSN_BLOCKER_CHOICES = ('recompute', 'pre_step_copy', 'torch_1_1')


def official_dsn_step(objs, input_img, bicubic_img, disc_img, blocker='recompute'):
    """One iteration of DSN ``train.py`` (``--generator DeResnet``, no ragan / wgan, ``disc_freq = gen_freq = 1``)
    on the official objects ``objs`` (``model_g``, ``model_d``, ``g_loss_module``, ``optimizer_g``, ``optimizer_d``,
    ``loss`` module, ``opt``).

    ``blocker`` (patch 6) says how the generator loss gets ``fake_tex`` on modern torch:

    * ``'recompute'`` (default, srplugins' behaviour): ``model_d(fake_img)`` again, with the updated discriminator;
    * ``'pre_step_copy'``: ``fake_tex`` from a copy of the discriminator taken before its step (loss value and
      gradient of the pre-step discriminator, the loop's evident intent);
    * ``'torch_1_1'``: the official line as written, with what torch <= 1.4 did: the discriminator forwards save
      their tensors through identity ``saved_tensors_hooks`` (no in-place version check), so the loss value is the
      pre-step one and back-propagation uses the pre-step activations with the post-step weights, as on the
      torch 1.1 the repository pins (where ``optimizer.step()`` updated ``p.data`` without a version bump).

    Returns:
        tuple: (dict of the loss terms as srplugins names them, weighted as they enter the totals; detached fake).
    """
    import torch
    if blocker not in DSN_BLOCKER_CHOICES:
        raise ValueError(f'blocker must be one of {DSN_BLOCKER_CHOICES}, got {blocker!r}')
    model_g, model_d, g_loss_module = objs['model_g'], objs['model_d'], objs['g_loss_module']
    loss_mod = objs['loss']
    hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t) if blocker == 'torch_1_1' \
        else contextlib.nullcontext()
    # Estimate scores of fake and real images
    fake_img = model_g(input_img)
    with hooks:
        real_tex = model_d(disc_img)
        fake_tex = model_d(fake_img)
    fake_tex_g = copy.deepcopy(model_d)(fake_img) if blocker == 'pre_step_copy' else None
    # Update Discriminator network
    model_d.zero_grad()
    d_tex_loss = loss_mod.discriminator_loss(real_tex, fake_tex, wasserstein=False, grad_penalties=None)
    d_tex_loss.backward(retain_graph=True)
    objs['optimizer_d'].step()
    # Update Generator network
    model_g.zero_grad()
    if blocker == 'recompute':
        fake_tex_g = model_d(fake_img)
    elif blocker == 'torch_1_1':
        fake_tex_g = fake_tex
    g_loss = g_loss_module(fake_tex_g, fake_img, bicubic_img)
    assert not torch.isnan(g_loss), 'Generator loss returns NaN values'
    g_loss.backward()
    objs['optimizer_g'].step()
    opt = objs['opt']
    with torch.no_grad():  # the two halves of loss.discriminator_loss, from the tensors it was given
        l_d_real = (-torch.log(real_tex + 1e-8).mean()).item()
        l_d_fake = (-torch.log(1 - fake_tex + 1e-8).mean()).item()
    terms = {
        'l_d_real': l_d_real,
        'l_d_fake': l_d_fake,
        'l_d_total': d_tex_loss.item(),
        'l_g_col': opt.w_col * float(g_loss_module.last_col_loss.detach()),
        'l_g_percep': opt.w_per * float(g_loss_module.last_per_loss.detach()),
        'l_g_gan': opt.w_tex * float(g_loss_module.last_tex_loss.detach()),
        'l_g_total': g_loss.item(),
    }
    return terms, fake_img.detach()


def dsn_blocker_effect(objs, batch):
    """How much the choice of patch 6 matters: one official iteration from the current state with each choice.

    Returns:
        str: A note with each choice's ``l_g_gan`` and its largest generator-parameter difference from
        ``'recompute'`` after the step (the official objects ``objs`` are left untouched).
    """
    start = copy.deepcopy({k: objs[k] for k in ('model_g', 'model_d', 'optimizer_g', 'optimizer_d')})
    params, gan = {}, {}
    for choice in DSN_BLOCKER_CHOICES:
        trial = dict(objs, **copy.deepcopy(start))
        terms, _ = official_dsn_step(trial, batch['gt'], batch['lq_bicubic'], batch['lq_real'], blocker=choice)
        params[choice] = trial['model_g'].state_dict()
        gan[choice] = terms['l_g_gan']
    ref = params['recompute']
    diffs = {c: max((params[c][k] - ref[k]).abs().max().item() for k in ref) for c in DSN_BLOCKER_CHOICES}
    return ('patch 6 choices, one official iteration from the same start: ' +
            '; '.join(f'{c}: l_g_gan {gan[c]:.9e}, max |G param - recompute| {diffs[c]:.2e}'
                      for c in DSN_BLOCKER_CHOICES))


def build_official_dsn(ref, recipe, notes):
    """Official DSN objects, as ``train.py`` builds them, with the recipe's flags."""
    import torch
    codes = osp.join(ref, 'codes')
    train_py = osp.join(codes, 'DSN', 'train.py')
    if not osp.isfile(train_py):
        raise FileNotFoundError(f'--ref {ref}: {train_py} not found (expected a checkout of ShuhangGu/DASR).')
    with open(train_py) as f:
        parser = official_dsn_parser(f.read())
    train = recipe['datasets']['train']
    flags = dsn_flags_from_recipe(recipe, train['batch_size_per_gpu'], train['gt_size'])
    opt = parser.parse_args(flags)
    defaults = vars(parser.parse_args([]))
    changed = {k: v for k, v in vars(opt).items() if defaults.get(k) != v}
    notes.append('official DSN opt = train.py argparse with ' + ' '.join(flags) + f' (differs from its defaults in '
                 f'{sorted(changed)})')
    with official_code([osp.join(codes, 'DSN'), codes]):
        import loss as dsn_loss
        import model as dsn_model
        import utils as dsn_utils
        if opt.generator.lower() == 'deresnet':
            model_g = dsn_model.De_resnet(n_res_blocks=opt.num_res_blocks, scale=opt.upscale_factor)
        else:
            model_g = dsn_model.Generator(n_res_blocks=opt.num_res_blocks)
        model_d = dsn_model.Discriminator(
            kernel_size=opt.kernel_size,
            wgan=opt.wgan,
            highpass=opt.highpass,
            D_arch=opt.discriminator,
            norm_layer=opt.norm_layer,
            filter_type=opt.filter,
            cs=opt.cat_or_sum)
        g_loss_module = dsn_loss.GeneratorLoss(**vars(opt))
    optimizer_g = torch.optim.Adam(model_g.parameters(), lr=opt.learning_rate, betas=[opt.adam_beta_1, 0.999])
    optimizer_d = torch.optim.Adam(model_d.parameters(), lr=opt.learning_rate, betas=[opt.adam_beta_1, 0.999])
    model_g.train()
    model_d.train()
    return dict(
        opt=opt,
        model_g=model_g,
        model_d=model_d,
        g_loss_module=g_loss_module,
        optimizer_g=optimizer_g,
        optimizer_d=optimizer_d,
        loss=dsn_loss,
        utils=dsn_utils)


def _official_lpips_net(perceptual_loss):
    """The ``PNetLin`` inside the official LPIPS wrapper (``DistModel`` is not an ``nn.Module``)."""
    return perceptual_loss.loss.loss_network.model.net


def _lpips_note(official_net, ours_lpips):
    """Both LPIPS networks must hold the same random AlexNet and linear layers: a note with the largest difference."""
    a = dict(official_net.named_parameters())
    b = dict(ours_lpips.named_parameters())
    if set(a) != set(b):
        raise RuntimeError(f'LPIPS parameter names differ: {sorted(set(a) ^ set(b))[:4]}')
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    return (f'LPIPS-alex of both sides (random AlexNet + random linear layers from parity.write_random_backbones): '
            f'max abs parameter difference {worst:.1e}')


def run_dsn(ref, iters, seed, data, workdir, curves, variant=None, batch=DSN_SHRINK['batch_size']):
    """Parity of ``DASRDownsamplerModel`` with the official DSN training iteration; see the module docstring.

    ``variant`` (``--variant``): ``None`` runs the official side with ``blocker='recompute'`` (srplugins' choice, so
    PASS is reachable); ``'pre_step_copy'`` or ``'torch_1_1'`` run every official iteration with that choice of
    :func:`official_dsn_step`, to measure over a whole training what the choice changes; ``'gan_bce_with_logits'``
    trains srplugins with basicsr's ``GANLoss`` vanilla instead of the recipe's ``SigmoidLogGANLoss``. ``batch``
    (``--batch``): the batch of both sides (default 2). The HR patch stays 128: LPIPS' AlexNet needs LR crops of 32.
    """
    import torch
    if variant not in (None, 'pre_step_copy', 'torch_1_1', 'gan_bce_with_logits'):
        raise ValueError(f'dasr_dsn: unknown variant {variant!r}; expected pre_step_copy, torch_1_1 or '
                         'gan_bce_with_logits')
    blocker = variant if variant in DSN_BLOCKER_CHOICES else 'recompute'

    notes = []
    torch.manual_seed(seed)
    parity = _framework()
    overrides = {}
    if variant == 'gan_bce_with_logits':  # basicsr's GANLoss: the official formula without its epsilon
        overrides['train.gan_opt'] = {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.005}
    recipe = parity.load_recipe(DSN_RECIPE, batch=batch, patch=DSN_SHRINK['gt_size'], overrides=overrides)
    notes.append(f'recipe {DSN_RECIPE} shrunk: ' + '; '.join(recipe['shrunk']) + ' (networks at full width: the '
                 'official De_resnet / DiscriminatorBasic hard-code it)')
    domains = demo_domains(data, workdir, DSN_SHRINK['gt_size'])
    rng = np.random.default_rng(seed)  # float32 batches made up front, as the dataset makes them
    batches = [dsn_batch(domains, batch, DSN_SHRINK['gt_size'], rng) for _ in range(iters)]
    with backbones_float64(workdir, seed) as files:
        official = build_official_dsn(ref, recipe, notes)
        ours = build_ours_from_recipe(recipe, workdir, files['lpips_alex'])
        off_lpips = _official_lpips_net(official['g_loss_module'].perceptual_loss)
        load_official_lpips_linear(off_lpips, files['lpips_alex'])
        for net in (ours.net_g, ours.net_d, ours.cri_perceptual, official['model_g'], official['model_d'], off_lpips):
            net.double()
        # same initial weights: the official initialisation, loaded strictly (identical key layouts)
        ours.net_g.load_state_dict(official['model_g'].state_dict(), strict=True)
        ours.net_d.load_state_dict(official['model_d'].state_dict(), strict=True)
        notes.append(_lpips_note(off_lpips, ours.cri_perceptual.lpips))
        snaps = {'net_g': parity.snapshot(ours.net_g), 'net_d': parity.snapshot(ours.net_d)}
        if blocker == 'recompute':
            notes.append('patch 6 (modern-torch in-place blocker): official fake_tex recomputed with the updated D '
                         'before the generator loss (srplugins behaviour); see docs/DASR.md')
        else:
            notes.append(f'patch 6 (modern-torch in-place blocker): official side run with blocker={blocker!r} at '
                         'every iteration (variant; srplugins recomputes fake_tex with the updated D)')
        if variant == 'gan_bce_with_logits':
            notes.append('variant: srplugins GAN terms by GANLoss vanilla (BCE-with-logits) against the official '
                         '-log(sigmoid + 1e-8): equal to ~3e-8 until the discriminator saturates')
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        for it, batch32 in enumerate(batches, 1):
            batch = {k: v.double() for k, v in batch32.items()}
            ours.update_learning_rate(it, warmup_iter=recipe['train'].get('warmup_iter', -1))
            ours.feed_data(batch)
            ours.optimize_parameters(it)
            log = {k: float(v) for k, v in ours.log_dict.items()}
            ours_terms = {
                'l_d_real': log['l_d_real'],
                'l_d_fake': log['l_d_fake'],
                'l_d_total': log['l_d_real'] + log['l_d_fake'],
                'l_g_col': log['l_g_col'],
                'l_g_percep': log['l_g_percep'],
                'l_g_gan': log['l_g_gan'],
                'l_g_total': log['l_g_col'] + log['l_g_percep'] + log['l_g_gan'],
            }
            with no_cuda():
                if it == 1:
                    notes.append(dsn_blocker_effect(official, batch))
                off_terms, _ = official_dsn_step(
                    official, batch['gt'], batch['lq_bicubic'], batch['lq_real'], blocker=blocker)
            parity.finish_iteration(
                result, {
                    'losses': {
                        k: [ours_terms[k], off_terms[k]]
                        for k in ours_terms
                    },
                    'params': {
                        'net_g': max_abs_diff(ours.net_g.state_dict(), official['model_g'].state_dict()),
                        'net_d': max_abs_diff(ours.net_d.state_dict(), official['model_d'].state_dict()),
                    }
                }, curves)
        notes += [parity.moved_note(f'srplugins {k}', getattr(ours, k), v) for k, v in snaps.items()]
        if curves:
            result['val_psnr'] = {
                'ours': _dsn_val_psnr(ours.net_g, domains[2], domains[3]),
                'official': _dsn_val_psnr(official['model_g'], domains[2], domains[3])
            }
    if batches:  # the data transform of the step's input: the official DSN bicubic (float32, as in its loader)
        off_bic = torch.stack([official['utils'].imresize(img, 0.25).clamp(0, 1) for img in batches[0]['gt']])
        notes.append('bicubic x1/4 of batch 1: official DSN utils.imresize vs basicsr imresize (srplugins dataset) '
                     f'max abs diff {(off_bic - batches[0]["lq_bicubic"]).abs().max().item():.1e}')
    return result


def _dsn_val_psnr(net_g, val_hr, val_lr):
    """Mean PSNR-Y of ``G(HR)`` against the paired degraded LR (official DSN validation), centre crops of 128 / 32."""
    return _centre_crop_psnr(net_g, val_hr, val_lr, down=True)


def _centre_crop_psnr(net_g, val_hr, val_lr, down):
    """Mean PSNR-Y of ``net_g`` on centre crops (LR 32 x 32, HR 128 x 128) of the validation pairs: ``G(HR)`` against
    the LR with border 0 when ``down`` (DSN), else ``G(LR)`` against the HR with border 4 (SR)."""
    import torch
    values = []
    net_g.eval()
    with torch.no_grad():
        for hr, lr in zip(val_hr, val_lr):
            h, w = lr.shape[:2]
            size = min(32, h, w)
            top, left = (h - size) // 2, (w - size) // 2
            lr_c = _t(lr[top:top + size, left:left + size])[None].double()
            hr_c = _t(hr[top * 4:(top + size) * 4, left * 4:(left + size) * 4])[None].double()
            if down:
                values.append(_framework().psnr_y(net_g(hr_c), lr_c, 0))
            else:
                values.append(_framework().psnr_y(net_g(lr_c), hr_c, 4))
    net_g.train()
    return float(np.mean(values))


# ----------------------------------------------------------------------------------------------------------------
# dasr_sr
# ----------------------------------------------------------------------------------------------------------------
def build_official_sr(ref, notes):
    """Official ``DASR_Model`` from the AIM2019 auto-reproduce JSON with patch 7 and the shrinking."""
    codes = osp.join(ref, 'codes')
    json_path = osp.join(ref, SR_OFFICIAL_JSON)
    if not osp.isfile(json_path):
        raise FileNotFoundError(f'--ref {ref}: {json_path} not found (expected a checkout of ShuhangGu/DASR).')
    with open(json_path) as f:
        raw = json.load(f)
    net = raw['network_G']
    notes.append(f'official {SR_OFFICIAL_JSON} shrunk: batch {raw["datasets"]["train"]["batch_size"]} -> '
                 f'{SR_SHRINK["batch_size"]} per domain, HR_size {raw["datasets"]["train"]["HR_size"]} -> '
                 f'{SR_SHRINK["gt_size"]}, G nf {net["nf"]} -> {SR_SHRINK["num_feat"]} (nb {net["nb"]} and gc '
                 f'{net["gc"]} kept: architecture.RRDBNet hard-codes gc=32); D full width (define_D ignores nf)')
    raw['datasets']['train']['batch_size'] = SR_SHRINK['batch_size']
    raw['datasets']['train']['HR_size'] = SR_SHRINK['gt_size']
    net['nf'] = SR_SHRINK['num_feat']
    raw.update(is_train=True, gpu_ids=None, val_lpips=False)  # patch 7
    net['scale'] = raw['scale']
    if raw['train'].get('fs_kernel_size') is None:
        raw['train']['fs_kernel_size'] = 5  # patch 7: only the visualisation FilterHigh reads it
    with official_code([osp.join(codes, 'SRN'), codes]):
        from models.DASR_model import DASR_Model
        from options.options import dict_to_nonedict
        opt = dict_to_nonedict(raw)
        model = DASR_Model(opt)
    return model, raw


def run_sr(ref, iters, seed, data, workdir, curves):
    """Parity of ``DASRModel`` with the official ``DASR_Model.optimize_parameters``; see the module docstring."""
    import torch

    notes = []
    torch.manual_seed(seed)
    parity = _framework()
    recipe = parity.load_recipe(
        SR_RECIPE, batch=SR_SHRINK['batch_size'], patch=SR_SHRINK['gt_size'], width=SR_SHRINK['num_feat'])
    notes.append(f'recipe {SR_RECIPE} shrunk: ' + '; '.join(recipe['shrunk']) + ' (batch per domain)')
    domains = demo_domains(data, workdir, SR_SHRINK['gt_size'])
    rng = np.random.default_rng(seed)
    batches = [sr_batch(domains, SR_SHRINK['batch_size'], SR_SHRINK['gt_size'], rng) for _ in range(iters)]
    with backbones_float64(workdir, seed) as files:
        official, raw = build_official_sr(ref, notes)
        tr = raw['train']
        ours = build_ours_from_recipe(recipe, workdir, files['lpips_alex'])
        off_lpips = official.cri_fea.loss.loss_network.model.net
        load_official_lpips_linear(off_lpips, files['lpips_alex'])
        for net in (ours.net_g, ours.net_d, ours.cri_perceptual, official.netG, official.netD_target, off_lpips):
            net.double()
        ours.net_g.load_state_dict(rrdb_official_to_basicsr(official.netG.state_dict()), strict=True)
        ours.net_d.load_state_dict(official.netD_target.state_dict(), strict=True)
        notes.append(_lpips_note(off_lpips, ours.cri_perceptual.lpips))
        snaps = {'net_g': parity.snapshot(ours.net_g), 'net_d': parity.snapshot(ours.net_d)}
        notes.append(f'official pixel_weight {tr["pixel_weight"]} is applied twice (l_g_total += w * (w * L1)); '
                     'srplugins applies it once: identical at the recipe value 1')
        result = {'dtype': 'float64', 'notes': notes, 'iters': []}
        for it, batch32 in enumerate(batches, 1):
            batch = {k: v.double() for k, v in batch32.items()}
            ours.update_learning_rate(it, warmup_iter=recipe['train'].get('warmup_iter', -1))
            ours.feed_data(batch)
            ours.optimize_parameters(it)
            log = {k: float(v) for k, v in ours.log_dict.items()}
            with no_cuda():
                official.update_learning_rate()
                official.feed_data(
                    {
                        'HR': batch['gt'],
                        'HR_unpair': batch['gt_unpair'],
                        'fake_w': batch['ddm'],
                        'LR_real': batch['lq_real'],
                        'LR_fake': batch['lq']
                    }, True)
                official.optimize_parameters(it)
            olog = official.log_dict
            off_terms = {
                'l_g_pix': tr['pixel_weight'] * olog['loss/l_g_pix'],
                'l_g_pix_ll': tr['pixel_LL_weight'] * olog['loss/l_g_LL_pix'],
                'l_g_percep': tr['feature_weight'] * olog['loss/l_g_fea'],
                'l_g_gan': tr['gan_H_target'] * olog['loss/l_g_gan_target_Hf'],
                'l_d_total': olog['loss/l_d_target_total'],
            }
            ours_terms = {
                'l_g_pix': log['l_g_pix'],
                'l_g_pix_ll': log['l_g_pix_ll'],
                'l_g_percep': log['l_g_percep'],
                'l_g_gan': log['l_g_gan'],
                'l_d_total': log['l_d_real'] + log['l_d_fake'],
            }
            parity.finish_iteration(
                result, {
                    'losses': {
                        k: [ours_terms[k], off_terms[k]]
                        for k in ours_terms
                    },
                    'params': {
                        'net_g': max_abs_diff(ours.net_g.state_dict(),
                                              rrdb_official_to_basicsr(official.netG.state_dict())),
                        'net_d': max_abs_diff(ours.net_d.state_dict(), official.netD_target.state_dict()),
                    }
                }, curves)
        notes += [parity.moved_note(f'srplugins {k}', getattr(ours, k), v) for k, v in snaps.items()]
        if curves:
            result['val_psnr'] = {
                'ours': _sr_val_psnr(ours.net_g, domains[2], domains[3]),
                'official': _sr_val_psnr(official.netG, domains[2], domains[3])
            }
    return result


def _sr_val_psnr(net_g, val_hr, val_lr):
    """Mean PSNR-Y (border 4) of ``G(LR)`` against HR on centre crops (LR 32 x 32) of the validation pairs."""
    return _centre_crop_psnr(net_g, val_hr, val_lr, down=False)


METHODS = {'dasr_dsn': run_dsn, 'dasr_sr': run_sr}
