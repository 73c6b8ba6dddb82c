"""Load official super-resolution checkpoints safely, recognise their architecture and convert them to srplugins.

Released SR weights come in several key layouts (see ``docs/Tools.md`` and the ecosystem notes, Sec. 2.2):

* basicsr / Real-ESRGAN ``RRDBNet`` (``conv_first``, ``body.{i}.rdb{r}.conv{c}``, ``conv_body``, ``conv_up1/2``,
  ``conv_hr``, ``conv_last``), wrapped in ``params_ema`` / ``params``;
* the old ESRGAN layout (``model.0``, ``model.1.sub.{i}.RDB{r}.conv{c}.0``, ``model.3/6/8/10``), used by the DASR SR
  checkpoints; a raw state dict;
* KAIR / BSRGAN ``RRDBNet`` (``RRDB_trunk.{i}.RDB{r}.conv{c}``, ``trunk_conv``, ``upconv1/2``, ``HRconv``), raw;
  the x2 release has a 3-channel input and a single ``upconv1``;
* A2N (``AAB_trunk.{i}...``, ``att1.conv``, ``HRconv1``), raw; x2 and x3 files have identical keys and shapes;
* SRGAN (``SRResNet`` / ``SRGANDiscriminator``, srplugins' own layout), DASR down-sampler (``block_input``,
  ``res_blocks``, ``down_sample``, ``block_output``) and discriminators (``net.net.*`` / ``net.model.*``, DSN
  training files under ``model_g_state_dict`` / ``models_d_state_dict``), DASR SR discriminator ``D_t``
  (``model.{0,2,5,8}``), U-Net SN (``conv0``, ``conv{1..8}.weight_orig``, ``conv9``), KAIR PatchGAN-SN
  (``model.child{n}.0.weight_orig``) and Real-ESRGAN's ``SRVGGNetCompact`` (``body.{n}``).

The approach follows spandrel's (chaiNNer-org/spandrel): canonicalise the container (unwrap, strip ``module.``), test
each known key family with a small set of characteristic keys, read hyper-parameters from tensor shapes and layer
counts, and rename keys with a small per-family table. Differences from spandrel: weights are always read with
``weights_only=True`` (an explicit ``unsafe`` opt-in is needed otherwise), every family maps onto an architecture
registered in basicsr's ``ARCH_REGISTRY`` (srplugins or basicsr classes) so converted files load with BasicSR's
``load_network(strict=True)``, and hyper-parameters that the weights do not determine (A2N x2 vs x3, DASR
``avg_pool`` vs ``rgb`` filters) are never guessed: they come from an argument, the file name (``_x{N}``) or the
metadata stored in the checkpoint, otherwise a ``ValueError`` says what to pass.
"""
import numpy as np
import os
import pickle
import re
import torch
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = [
    'CheckpointInfo', 'load_checkpoint_file', 'unwrap_state_dict', 'detect_checkpoint', 'load_checkpoint',
    'build_network', 'convert_checkpoint', 'scale_from_filename', 'size_multiple_of', 'FAMILIES'
]

# wrapper keys, most specific first (basicsr EMA weights before the plain ones)
WRAPPER_KEYS = ('params_ema', 'params-ema', 'params', 'params_g', 'model_g_state_dict', 'state_dict',
                'model_state_dict', 'model', 'net', 'netG', 'generator')
# prefixes added by DataParallel / DistributedDataParallel or by wrappers holding the generator as an attribute
STRIP_PREFIXES = ('module.', 'netG.', 'net_g.')
# key under which converted files record the architecture (ignored by basicsr's load_network)
ARCH_META_KEY = 'srplugins_arch'
INFO_META_KEY = 'srplugins_info'


@dataclass
class CheckpointInfo:
    """What :func:`detect_checkpoint` found.

    Attributes:
        family (str): Key family, e.g. ``'kair_rrdbnet'``.
        description (str): Human-readable family name.
        arch_type (str): Registered architecture name (``ARCH_REGISTRY``) that loads ``state_dict`` strictly.
        arch_opt (dict): Constructor keyword arguments for ``arch_type``.
        state_dict (OrderedDict): Weights renamed to ``arch_type``'s key layout.
        purpose (str): ``'sr'`` (image in, image out), ``'downsampler'`` or ``'discriminator'``.
        scale (float): Output size / input size for image-to-image networks (0.25 for a x4 down-sampler).
        size_multiple (int): Input height and width must be multiples of this (pixel-unshuffle, stride-2 convs).
        notes (list[str]): How ambiguous hyper-parameters were decided.
    """
    family: str
    description: str
    arch_type: str
    arch_opt: dict
    state_dict: OrderedDict
    purpose: str = 'sr'
    scale: float = 1.
    size_multiple: int = 1
    notes: list = field(default_factory=list)

    def summary(self):
        opts = ', '.join(f'{k}={v!r}' for k, v in self.arch_opt.items())
        lines = [
            f'family: {self.family} ({self.description})', f'arch: {self.arch_type}({opts})',
            f'purpose: {self.purpose}, scale: {self.scale:g}, size multiple: {self.size_multiple}',
            f'tensors: {len(self.state_dict)}, parameters: {_num_params(self.state_dict):,}'
        ]
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)


# --------------------------------------------------------------------------------------------------------------- #
#  Loading and canonicalisation
# --------------------------------------------------------------------------------------------------------------- #
def load_checkpoint_file(path, unsafe=False):
    """Read a checkpoint file onto the CPU.

    ``.safetensors`` files go through ``safetensors.torch.load_file``; everything else through
    ``torch.load(map_location='cpu', weights_only=True)``, which refuses arbitrary pickled objects.

    Args:
        path (str): Checkpoint file.
        unsafe (bool): Use ``weights_only=False`` (can run code stored in the file). Only for trusted files whose
            pickles hold more than tensors and plain containers (e.g. numpy scalars). Default: False.

    Returns:
        object: What the file holds (usually a dict).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {path!r}.')
    if path.lower().endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f'Reading {path!r} needs the safetensors package: pip install safetensors') from err
        return load_file(path, device='cpu')
    try:
        return torch.load(path, map_location='cpu', weights_only=not unsafe)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'{path!r} holds pickled objects other than tensors and plain containers, so the safe loader '
                         f'(torch.load weights_only=True) refused it: {first_line}. If you trust the file, load it '
                         'with unsafe=True (command line: --unsafe_load).') from err


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def unwrap_state_dict(obj, param_key=None):
    """Find the state dict inside a checkpoint object and strip ``module.``-like prefixes.

    Args:
        obj (dict): Loaded checkpoint.
        param_key (str | None): Take this key (e.g. ``'params'`` or DSN's ``'models_d_state_dict'``). ``None`` tries
            :data:`WRAPPER_KEYS` in order (``params_ema`` first), then a lone dict value.

    Returns:
        tuple[OrderedDict, dict]: The state dict and the non-tensor metadata found beside it (e.g. DSN's
        ``fs_type`` / ``fs_kernel_size`` / ``D_type``, or ``srplugins_arch`` in converted files).
    """
    if not isinstance(obj, dict):
        raise ValueError(f'Expected the checkpoint to hold a dict of tensors, got {type(obj).__name__}.')
    meta = {}
    if param_key is not None:
        if param_key not in obj:
            raise ValueError(f'param_key {param_key!r} not in checkpoint; top-level keys: {_preview(list(obj))}.')
        meta = {k: v for k, v in obj.items() if k != param_key and not isinstance(v, dict)}
        meta.update({k: v for k, v in obj.items() if k in (ARCH_META_KEY, INFO_META_KEY)})
        meta.update(_network_options(obj, param_key))
        obj = obj[param_key]
    else:
        for _ in range(3):  # nested wrappers such as {'state_dict': {'params': ...}}
            if _is_tensor_dict(obj):
                break
            key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if key is None:
                meta_keys = (ARCH_META_KEY, INFO_META_KEY)
                dict_values = [k for k, v in obj.items() if isinstance(v, dict) and k not in meta_keys]
                if len(dict_values) != 1:
                    break
                key = dict_values[0]
            meta.update({k: v for k, v in obj.items() if k != key and not isinstance(v, dict)})
            meta.update({k: v for k, v in obj.items() if k in (ARCH_META_KEY, INFO_META_KEY)})
            meta.update(_network_options(obj, key))
            obj = obj[key]
    state = OrderedDict((k, v) for k, v in obj.items() if torch.is_tensor(v))
    if not state:
        raise ValueError(f'No tensors found in the checkpoint; top-level keys: {_preview(list(obj))}. '
                         'Pass param_key (--param_key) naming the entry that holds the weights.')
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state, meta


def _network_options(obj, key):
    """srplugins DSN bundles store ``params_g`` / ``params_d`` next to ``network_g`` / ``network_d`` (constructor
    options): return them as ``{'config': ...}`` so detection can use what the weights cannot tell."""
    if key.startswith('params_') and isinstance(obj.get('network_' + key[len('params_'):]), dict):
        return {'config': obj['network_' + key[len('params_'):]]}
    return {}


def scale_from_filename(path):
    """Scale written in a file name as ``_x{N}`` / ``-x{N}`` / ``SRx{N}`` (e.g. ``aan_x3.pt``), else ``None``.

    Parsed by :func:`srplugins.compat.scale_from_filename` (the one parser); a name with two different scales gives
    ``None`` here: nothing is guessed from it, and callers then need the scale as an argument.
    """
    from srplugins.compat import scale_from_filename as parse_scale
    return parse_scale(path, strict=False)


# --------------------------------------------------------------------------------------------------------------- #
#  Key helpers
# --------------------------------------------------------------------------------------------------------------- #
def _preview(items, limit=12):
    items = list(items)
    text = ', '.join(str(i) for i in items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def _num_params(state):
    buffers = ('running_mean', 'running_var', 'num_batches_tracked', 'weight_u', 'weight_v')
    return sum(v.numel() for k, v in state.items() if not k.endswith(buffers))


def _indices(state, prefix):
    """Sorted distinct integers ``i`` of keys ``<prefix>{i}.``."""
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.')
    return sorted({int(m.group(1)) for m in (pattern.match(k) for k in state) if m})


def _count_blocks(state, prefix):
    idx = _indices(state, prefix)
    if idx != list(range(len(idx))):
        raise ValueError(f'Block indices under {prefix!r} are not contiguous from 0: {idx}.')
    return len(idx)


def _rename(state, rules):
    """Apply ``(regex, replacement)`` rules (first match wins) to every key."""
    out = OrderedDict()
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new] = value
    return out


def found_prefixes(state, depth=1):
    """Distinct key prefixes (first ``depth`` dotted parts) with their counts, e.g. ``['conv_first (2)', ...]``."""
    counts = OrderedDict()
    for key in state:
        prefix = '.'.join(key.split('.')[:depth])
        counts[prefix] = counts.get(prefix, 0) + 1
    return [f'{p} ({n})' for p, n in counts.items()]


def size_multiple_of(arch_type, arch_opt, net=None):
    """Input size multiple needed by a registered architecture with the given options (1 if none).

    Pixel-unshuffle (basicsr ``RRDBNet`` x2 / x1) and stride-2 stages (DASR down-sampler, U-Net SN) give a downscale
    ``d``; window attention (basicsr ``SwinIR``, HAT-like networks) needs feature maps that are multiples of the window
    size, so the input multiple is ``d * window_size``. The window size is read from ``arch_opt['window_size']``, else a
    ``window_size`` attribute of ``net``, else the default of the registered constructor's ``window_size`` argument.
    """
    if arch_type == 'RRDBNet':
        multiple = {1: 4, 2: 2}.get(arch_opt.get('scale', 4), 1)
    elif arch_type == 'DASRDownsampler':
        multiple = int(arch_opt.get('scale', 4))
    elif arch_type in ('UNetSNDiscriminator', 'UNetDiscriminatorSN_basicsr', 'UNetDiscriminatorSN'):
        multiple = 8
    else:
        multiple = 1
    window = _window_size(arch_type, arch_opt, net)
    return multiple * window if window else multiple


def _window_size(arch_type, arch_opt, net=None):
    """Attention window side of an architecture (int), or None when it has none."""
    window = arch_opt.get('window_size')
    if window is None and net is not None:
        window = getattr(net, 'window_size', None)
    if window is None:
        window = _constructor_default(arch_type, 'window_size')
    if isinstance(window, (list, tuple)) and window:
        window = int(np.lcm.reduce([int(w) for w in window]))
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool) and window > 1:
        return int(window)
    return None


def _constructor_default(arch_type, name):
    """Default of argument ``name`` of the registered class ``arch_type`` (None if unknown or without one)."""
    import inspect
    try:
        from basicsr.utils.registry import ARCH_REGISTRY
        cls = ARCH_REGISTRY.get(arch_type)
        param = inspect.signature(cls.__init__).parameters.get(name)
    except (ImportError, KeyError, TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


# --------------------------------------------------------------------------------------------------------------- #
#  Families
# --------------------------------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Family:
    name: str
    description: str
    required: tuple  # characteristic keys, all present
    forbidden: tuple = ()  # keys whose presence rules the family out
    build: object = None  # callable(state, hints) -> CheckpointInfo


def _info(family, arch_type, arch_opt, state, purpose='sr', scale=1., notes=None):
    return CheckpointInfo(
        family=family.name,
        description=family.description,
        arch_type=arch_type,
        arch_opt=arch_opt,
        state_dict=state,
        purpose=purpose,
        scale=scale,
        size_multiple=size_multiple_of(arch_type, arch_opt),
        notes=list(notes or []))


def _build_basicsr_rrdb(fam, state, hints):
    in_ch = state['conv_first.weight'].shape[1]
    out_ch = state['conv_last.weight'].shape[0]
    # basicsr RRDBNet pixel-unshuffles x2 / x1 inputs: conv_first sees 4x / 16x the image channels
    if in_ch == 16 * out_ch:
        scale, num_in_ch = 1, in_ch // 16
    elif in_ch == 4 * out_ch:
        scale, num_in_ch = 2, in_ch // 4
    else:
        scale, num_in_ch = 4, in_ch
    opt = dict(
        num_in_ch=num_in_ch,
        num_out_ch=out_ch,
        scale=scale,
        num_feat=state['conv_first.weight'].shape[0],
        num_block=_count_blocks(state, 'body.'),
        num_grow_ch=state['body.0.rdb1.conv1.weight'].shape[0])
    return _info(fam, 'RRDBNet', opt, OrderedDict(state), scale=scale)


def _kair_x2_arch():
    """Registered KAIR-layout RRDBNet (srplugins.archs.bsrgan_rrdbnet_arch) for the x2 release, if present."""
    try:
        from basicsr.utils.registry import ARCH_REGISTRY

        import srplugins.archs  # noqa: F401
    except ImportError:
        return None
    return 'BSRGANRRDBNet' if 'BSRGANRRDBNet' in ARCH_REGISTRY else None


def _rrdb_opt_kair(state):
    return dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=state['conv_first.weight'].shape[0],
        num_block=_count_blocks(state, 'RRDB_trunk.'),
        num_grow_ch=state['RRDB_trunk.0.RDB1.conv1.weight'].shape[0])


def _build_kair_rrdb(fam, state, hints):
    # x4: renamed to basicsr RRDBNet with the BSRGAN recipe's key table (srplugins.utils.bsrgan_keys);
    # x2 (3-channel input, single upconv1): kept in KAIR layout for BSRGANRRDBNet, or refused by bsrgan_to_basicsr
    from srplugins.utils.bsrgan_keys import bsrgan_to_basicsr
    opt = _rrdb_opt_kair(state)
    x2_arch = None if 'upconv2.weight' in state else _kair_x2_arch()
    if x2_arch is None:
        return _info(fam, 'RRDBNet', dict(opt, scale=4), OrderedDict(bsrgan_to_basicsr(state)), scale=4)
    return _info(
        fam,
        x2_arch,
        dict(opt, scale=2),
        OrderedDict(state),
        scale=2,
        notes=[
            "x2 KAIR layout has no basicsr RRDBNet equivalent (basicsr's x2 pixel-unshuffles its input); "
            'loaded into BSRGANRRDBNet'
        ])


def _build_old_esrgan(fam, state, hints):
    sub = _indices(state, 'model.1.sub.')
    num_block = len([i for i in sub if f'model.1.sub.{i}.RDB1.conv1.0.weight' in state])
    trunk = f'model.1.sub.{num_block}.'
    if f'{trunk}weight' not in state:
        raise ValueError(f'Old-ESRGAN checkpoint without the trunk conv {trunk}weight after {num_block} RRDB blocks.')
    tops = [i for i in _indices(state, 'model.') if i >= 2 and f'model.{i}.weight' in state]
    if len(tops) < 3:
        raise ValueError(f'Old-ESRGAN checkpoint has too few convs after the trunk: model.{tops}.')
    ups, hr, last = tops[:-2], tops[-2], tops[-1]
    num_feat = state['model.0.weight'].shape[0]
    if any(state[f'model.{i}.weight'].shape[0] != num_feat for i in ups):
        raise ValueError('Old-ESRGAN checkpoint with pixel-shuffle upsampling (upconv output channels != num_feat) is '
                         'not supported; only the nearest-neighbour upconv variant (DASR SRN, ESRGAN) is.')
    rules = [(r'^model\.0\.', 'conv_first.'),
             (r'^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.', r'body.\1.rdb\2.conv\3.'),
             (rf'^model\.1\.sub\.{num_block}\.', 'conv_body.'), (rf'^model\.{hr}\.', 'conv_hr.'),
             (rf'^model\.{last}\.', 'conv_last.')]
    rules += [(rf'^model\.{i}\.', f'conv_up{n + 1}.') for n, i in enumerate(ups)]
    renamed = _rename(state, rules)
    opt = dict(
        num_in_ch=state['model.0.weight'].shape[1],
        num_out_ch=state[f'model.{last}.weight'].shape[0],
        num_feat=num_feat,
        num_block=num_block,
        num_grow_ch=state['model.1.sub.0.RDB1.conv1.0.weight'].shape[0])
    given = hints.get('scale')
    if len(ups) == 2:
        if given not in (None, 4):
            raise ValueError(f'Old-ESRGAN checkpoint has two upsampling convs (x4) but scale={given} was given.')
        return _info(fam, 'RRDBNet', dict(opt, scale=4), renamed, scale=4)
    if len(ups) == 1:
        scale, note = _scale_x2_or_x3('an old-ESRGAN checkpoint with one upsampling conv (nearest x2 or x3)', given,
                                      hints.get('path'))
        if scale == 3:
            raise ValueError('Old-ESRGAN x3 checkpoint (one nearest-x3 upconv): no registered architecture builds this '
                             'variant (BSRGANRRDBNet and basicsr RRDBNet upsample by factors of 2), so it cannot be '
                             'loaded or converted.')
        # x2: same layout as KAIR's x2 RRDBNet; reuse that path (conversion or a clear refusal)
        kair = _rename(renamed, [(r'^body\.(\d+)\.rdb(\d)\.', r'RRDB_trunk.\1.RDB\2.'),
                                 (r'^conv_body\.', 'trunk_conv.'), (r'^conv_up1\.', 'upconv1.'),
                                 (r'^conv_hr\.', 'HRconv.')])
        info = _build_kair_rrdb(fam, kair, hints)
        info.family, info.description = fam.name, fam.description
        info.notes.insert(0, note)
        return info
    raise ValueError(f'Old-ESRGAN checkpoint with {len(ups)} upsampling convs (scale {2**len(ups)}) is not '
                     'supported.')


def _scale_x2_or_x3(what, given, path):
    """Scale of a layout whose x2 and x3 weights have identical keys and shapes (A2N, old ESRGAN with one upsampling
    conv): it comes from the argument or from a ``_x{N}`` file name, never from the weights, and a disagreement between
    the two is an error. Returns ``(scale, note)``."""
    from_name = scale_from_filename(path)
    if given is not None and given not in (2, 3):
        raise ValueError(f'{what} is x2 or x3, but scale={given} was given.')
    if given is None and from_name not in (None, 2, 3):
        raise ValueError(f'The file name {os.path.basename(str(path))!r} says x{from_name}, but {what} is x2 or x3; '
                         'pass --scale 2 or --scale 3.')
    if given is not None and from_name is not None and given != from_name:
        raise ValueError(f'scale={given} was given but the file name {os.path.basename(str(path))!r} says '
                         f'x{from_name}. x2 and x3 weights of {what} have identical shapes, so a mismatch would load '
                         'silently; fix the argument or rename the file.')
    scale = given if given is not None else from_name
    if scale not in (2, 3):
        raise ValueError(f'x2 and x3 weights of {what} have identical keys and shapes, so the scale cannot be read '
                         'from the weights. Pass it explicitly (--scale 2 or --scale 3) or name the file '
                         '"..._x2.pth" / "..._x3.pth".')
    return scale, f'scale x{scale} taken from ' + ('the argument' if given is not None else 'the file name')


def _build_a2n(fam, state, hints):
    opt = dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=state['conv_first.weight'].shape[0],
        num_up_feat=state['upconv1.weight'].shape[0],
        num_block=_count_blocks(state, 'AAB_trunk.'))
    kernel = state['AAB_trunk.0.non_attention.weight'].shape[-1]
    notes = []
    if kernel != 3:
        opt['non_attention_kernel'] = int(kernel)
        notes.append(f'non-attention branch is {kernel}x{kernel}: A2N-M variant')
    given = hints.get('scale')
    if 'upconv2.weight' in state:
        if given not in (None, 4):
            raise ValueError(f'A2N checkpoint has the x4 reconstruction (upconv2/att2/HRconv2) but scale={given} was '
                             'given.')
        scale = 4
    else:
        scale, note = _scale_x2_or_x3('an A2N checkpoint without upconv2', given, hints.get('path'))
        notes.append(note)
    opt['upscale'] = scale
    return _info(fam, 'A2N', opt, OrderedDict(state), scale=scale, notes=notes)


def _build_srresnet(fam, state, hints):
    num_feat = state['conv_first.weight'].shape[0]
    factors = [
        int(round((state[f'upsample.{i}.weight'].shape[0] / num_feat)**0.5)) for i in _indices(state, 'upsample.')
        if state.get(f'upsample.{i}.weight', torch.empty(0)).dim() == 4
    ]
    scale = int(np.prod(factors))
    opt = dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=num_feat,
        num_block=_count_blocks(state, 'body.'),
        upscale=scale)
    notes = []
    if state['prelu_first.weight'].numel() > 1:
        opt['per_channel_prelu'] = True
    output_range = hints.get('output_range')
    if output_range is not None:
        opt['output_range'] = list(output_range)
    else:
        notes.append('output_range (tanh or not) is not stored in the weights; assumed [0, 1] unless given')
    return _info(fam, 'SRResNet', opt, OrderedDict(state), scale=scale, notes=notes)


def _build_dasr_downsampler(fam, state, hints):
    down = [
        i for i in _indices(state, 'down_sample.') if state.get(f'down_sample.{i}.weight', torch.empty(0)).dim() == 4
    ]
    scale = 2**len(down)
    opt = dict(
        num_in_ch=state['block_input.0.weight'].shape[1],
        num_out_ch=state['block_output.weight'].shape[0],
        num_feat=state['block_input.0.weight'].shape[0],
        num_block=_count_blocks(state, 'res_blocks.'),
        scale=scale)
    return _info(fam, 'DASRDownsampler', opt, OrderedDict(state), purpose='downsampler', scale=1. / scale)


_DSN_FILTER_NAMES = {
    'gau': 'gau',
    'gaussian': 'gau',
    'avg_pool': 'avg_pool',
    'avgpool': 'avg_pool',
    'wavelet': 'wavelet',
    'rgb': 'rgb',
    'none': 'rgb'
}


def _build_dasr_fsd(fam, state, hints):
    notes = []
    cfg = hints.get('arch_config') or {}
    d_type = str(cfg.get('d_arch') or hints.get('D_type') or '').lower()
    if 'net.net.0.weight' in state:
        d_arch = 'fsd'
        body_in = state['net.net.0.weight'].shape[1]
        norm = 'batch' if 'net.net.3.running_mean' in state or 'net.net.3.weight' in state else 'instance'
    else:
        # both NLayer variants have identical keys: the stride is read from the metadata or the argument
        d_arch = d_type if d_type in ('nld_s1', 'nld_s2') else hints.get('d_arch')
        if d_arch not in ('nld_s1', 'nld_s2'):
            raise ValueError('DASR NLayer discriminator: nld_s1 and nld_s2 have identical keys; pass d_arch '
                             "('nld_s1' or 'nld_s2').")
        body_in = state['net.model.0.weight'].shape[1]
        norm = 'batch' if 'net.model.3.running_mean' in state else 'instance'
    kernel_size = int(cfg.get('kernel_size') or hints.get('fs_kernel_size') or hints.get('kernel_size') or 5)
    gauss_key = 'filter.filter_low.filter.gaussian_filter.weight'
    if gauss_key in state:
        filter_type, kernel_size = 'gau', state[gauss_key].shape[-1]
    elif 'DWT2.h0_col' in state:
        filter_type = 'wavelet'
    else:
        named = cfg.get('filter_type') or hints.get('filter_type') or hints.get('fs_type')
        filter_type = _DSN_FILTER_NAMES.get(str(named).lower()) if named is not None else None
        if filter_type not in ('avg_pool', 'rgb'):
            raise ValueError('DASR discriminator without a Gaussian kernel or wavelet buffers: it was trained with '
                             "either the 'avg_pool' filter or no high-pass ('rgb'), which have identical keys. Pass "
                             "filter_type='avg_pool' or 'rgb' (command line: --filter_type).")
        notes.append(f'filter_type {filter_type!r} taken from ' + ('the checkpoint metadata' if (
            cfg.get('filter_type') or hints.get('fs_type')) else 'the argument'))
    num_in_ch = int(cfg.get('num_in_ch') or 0) or None
    cat_or_sum = 'cat'
    if filter_type == 'wavelet':
        if num_in_ch is None:
            num_in_ch = body_in // 3 if body_in % 3 == 0 and body_in >= 9 else body_in
        cat_or_sum = 'cat' if body_in == 3 * num_in_ch else 'sum'
    else:
        num_in_ch = body_in
    opt = dict(
        num_in_ch=num_in_ch,
        filter_type=filter_type,
        kernel_size=int(kernel_size),
        cat_or_sum=cat_or_sum,
        norm=norm,
        d_arch=d_arch)
    return _info(fam, 'DASRFSDiscriminator', opt, OrderedDict(state), purpose='discriminator', notes=notes)


def _build_dasr_patch(fam, state, hints):
    convs = [i for i in _indices(state, 'model.') if state.get(f'model.{i}.weight', torch.empty(0)).dim() == 4]
    opt = dict(
        num_in_ch=state['model.0.weight'].shape[1],
        num_feat=state['model.0.weight'].shape[0],
        num_layers=len(convs) - 2)
    return _info(fam, 'DASRPatchDiscriminator', opt, OrderedDict(state), purpose='discriminator')


def _build_unet_sn(fam, state, hints):
    state = OrderedDict(state)
    try:
        from srplugins.archs.unet_sn_arch import rename_parametrized_spectral_norm_keys
    except ImportError:
        rename_parametrized_spectral_norm_keys = None
    if rename_parametrized_spectral_norm_keys is not None:
        rename_parametrized_spectral_norm_keys(state)
        state = OrderedDict(sorted(state.items(), key=lambda kv: _unet_order(kv[0])))
    opt = dict(
        num_in_ch=state['conv0.weight'].shape[1],
        num_feat=state['conv0.weight'].shape[0],
        skip_connection=bool(hints.get('skip_connection', True)))
    return _info(
        fam,
        'UNetSNDiscriminator',
        opt,
        state,
        purpose='discriminator',
        notes=['skip_connection does not change the weights; assumed True unless given'])


def _unet_order(key):
    m = re.match(r'conv(\d+)\.(.*)', key)
    return (int(m.group(1)), m.group(2)) if m else (99, key)


def _build_patchgan_sn(fam, state, hints):
    children = _indices(state, 'model.child')
    first = state['model.child0.0.weight_orig']
    opt = dict(num_in_ch=first.shape[1], num_feat=first.shape[0], num_layers=len(children) - 2)
    return _info(fam, 'PatchGANDiscriminatorSN', opt, OrderedDict(state), purpose='discriminator')


def _build_srvgg(fam, state, hints):
    idx = _indices(state, 'body.')
    convs = [i for i in idx if state[f'body.{i}.weight'].dim() == 4]
    acts = [i for i in idx if state[f'body.{i}.weight'].dim() == 1]
    first, last = state[f'body.{convs[0]}.weight'], state[f'body.{convs[-1]}.weight']
    num_out_ch = int(hints.get('num_out_ch') or first.shape[1])
    upscale = int(round((last.shape[0] / num_out_ch)**0.5))
    notes = []
    act_type = 'prelu' if acts else hints.get('act_type', 'prelu')
    if not acts:
        notes.append(f'activation has no weights (relu or leakyrelu); using act_type={act_type!r}')
    opt = dict(
        num_in_ch=first.shape[1],
        num_out_ch=num_out_ch,
        num_feat=first.shape[0],
        num_conv=len(convs) - 2,
        upscale=upscale,
        act_type=act_type)
    return _info(fam, 'SRVGGNetCompact_basicsr', opt, OrderedDict(state), scale=upscale, notes=notes)


def _build_srgan_d(fam, state, hints):
    num_feat = state['features.0.weight'].shape[0]
    last_ch = state[f'features.{_indices(state, "features.")[-1]}.weight'].shape[0]  # last BN: 8 * num_feat
    side = int(round((state['fc1.weight'].shape[1] / last_ch)**0.5))
    opt = dict(num_in_ch=state['features.0.weight'].shape[1], num_feat=num_feat, input_size=side * 16)
    return _info(fam, 'SRGANDiscriminator', opt, OrderedDict(state), purpose='discriminator')


FAMILIES = (
    _Family(
        'basicsr_rrdbnet',
        'basicsr / Real-ESRGAN RRDBNet', ('conv_first.weight', 'body.0.rdb1.conv1.weight', 'conv_body.weight',
                                          'conv_up1.weight', 'conv_hr.weight', 'conv_last.weight'),
        build=_build_basicsr_rrdb),
    _Family(
        'kair_rrdbnet',
        'KAIR / BSRGAN RRDBNet (new ESRGAN layout)',
        ('conv_first.weight', 'RRDB_trunk.0.RDB1.conv1.weight', 'trunk_conv.weight', 'upconv1.weight', 'HRconv.weight',
         'conv_last.weight'),
        build=_build_kair_rrdb),
    _Family(
        'old_esrgan',
        'old ESRGAN RRDBNet layout (ESRGAN, DASR SRN)', ('model.0.weight', 'model.1.sub.0.RDB1.conv1.0.weight'),
        build=_build_old_esrgan),
    _Family(
        'a2n',
        'A2N (attention in attention network)',
        ('conv_first.weight', 'AAB_trunk.0.attention.k1.weight', 'trunk_conv.weight', 'upconv1.weight',
         'att1.conv.weight', 'HRconv1.weight', 'conv_last.weight'),
        build=_build_a2n),
    _Family(
        'dasr_downsampler',
        'DASR down-sampling generator (DSN De_resnet)',
        ('block_input.0.weight', 'res_blocks.0.conv1.weight', 'block_output.weight'),
        build=_build_dasr_downsampler),
    _Family(
        'dasr_fsd',
        'DASR frequency-separation discriminator (DSN FSD)', ('net.net.0.weight', 'net.net.8.weight'),
        build=_build_dasr_fsd),
    _Family(
        'dasr_nld', 'DASR DSN NLayer discriminator (nld_s1 / nld_s2)', ('net.model.0.weight', ), build=_build_dasr_fsd),
    _Family(
        'dasr_patch',
        'DASR SRN target discriminator D_t (PatchGAN, instance norm)',
        ('model.0.weight', 'model.2.weight', 'model.5.weight', 'model.8.weight'),
        forbidden=('model.1.sub.0.RDB1.conv1.0.weight', 'model.3.weight'),
        build=_build_dasr_patch),
    _Family(
        'unet_sn',
        'U-Net discriminator with spectral norm (Real-ESRGAN / KAIR)', ('conv0.weight', 'conv9.weight'),
        build=_build_unet_sn),
    _Family(
        'patchgan_sn',
        'KAIR PatchGAN discriminator with spectral norm (BSRGAN)', ('model.child0.0.weight_orig', ),
        build=_build_patchgan_sn),
    _Family(
        'srvgg_compact',
        'Real-ESRGAN SRVGGNetCompact', ('body.0.weight', 'body.1.weight'),
        forbidden=('conv_first.weight', 'body.0.rdb1.conv1.weight'),
        build=_build_srvgg),
    _Family(
        'srresnet',
        'SRGAN generator SRResNet (BN + PReLU, srplugins layout)',
        ('conv_first.weight', 'prelu_first.weight', 'body.0.conv1.weight', 'body.0.bn1.running_mean',
         'conv_body.weight', 'bn_body.weight', 'upsample.0.weight', 'conv_last.weight'),
        build=_build_srresnet),
    _Family(
        'srgan_discriminator',
        'SRGAN discriminator (srplugins layout)',
        ('features.0.weight', 'features.2.weight', 'features.3.running_mean', 'fc1.weight', 'fc2.weight'),
        build=_build_srgan_d),
)


# --------------------------------------------------------------------------------------------------------------- #
#  Public entry points
# --------------------------------------------------------------------------------------------------------------- #
def _matches(fam, state):
    return all(k in state for k in fam.required) and not any(k in state for k in fam.forbidden)


def detect_checkpoint(state, meta=None, scale=None, path=None, **hints):
    """Recognise the architecture of a state dict and convert it to the matching registered architecture.

    Args:
        state (dict[str, Tensor]): Canonical state dict (see :func:`unwrap_state_dict`).
        meta (dict | None): Metadata found next to the weights (DSN ``fs_type``, ``srplugins_arch``...).
        scale (int | None): Scale for families whose weights do not fix it (A2N x2 / x3).
        path (str | None): Original file name; ``_x{N}`` in it gives the A2N scale when ``scale`` is None.
        **hints: Other undeterminable hyper-parameters, e.g. ``filter_type`` / ``d_arch`` (DASR discriminators),
            ``skip_connection`` (U-Net SN), ``act_type`` (SRVGGNetCompact).

    Returns:
        CheckpointInfo: Family, architecture, options and renamed weights.
    """
    meta = dict(meta or {})
    hints = dict(hints, scale=scale, path=path)
    for key in ('fs_type', 'fs_kernel_size', 'D_type'):
        if key in meta and hints.get(key) is None:
            hints[key] = meta[key]
    stored = meta.get(ARCH_META_KEY)
    if isinstance(stored, dict) and 'type' in stored:
        return _from_stored_meta(state, stored, meta.get(INFO_META_KEY) or {}, scale)
    if isinstance(meta.get('config'), dict):
        hints['arch_config'] = meta['config']
    for fam in FAMILIES:
        if _matches(fam, state):
            return fam.build(fam, OrderedDict(state), hints)
    expected = '\n'.join(f'  {fam.name} ({fam.description}): {", ".join(fam.required)}' for fam in FAMILIES)
    raise ValueError('Unrecognised checkpoint: no supported key family matches.\n'
                     f'Found key prefixes: {_preview(found_prefixes(state), 20)}\n'
                     f'First keys: {_preview(list(state), 6)}\n'
                     f'Expected one of (all listed keys present):\n{expected}')


def _from_stored_meta(state, stored, info_meta, scale):
    arch_opt = {k: v for k, v in stored.items() if k != 'type'}
    arch_type = stored['type']
    stored_scale = info_meta.get('scale')
    if scale is not None and stored_scale is not None and float(scale) != float(stored_scale):
        raise ValueError(f'scale={scale} was given but the converted checkpoint records scale {stored_scale:g}.')
    return CheckpointInfo(
        family=info_meta.get('family', 'srplugins'),
        description=info_meta.get('description', 'converted by srplugins'),
        arch_type=arch_type,
        arch_opt=arch_opt,
        state_dict=OrderedDict(state),
        purpose=info_meta.get('purpose', 'sr'),
        scale=float(stored_scale if stored_scale is not None else 1.),
        size_multiple=int(info_meta.get('size_multiple', size_multiple_of(arch_type, arch_opt))),
        notes=['architecture read from the srplugins metadata stored in the file'])


def load_checkpoint(path, scale=None, param_key=None, unsafe=False, **hints):
    """Read, unwrap and detect a checkpoint file: :func:`load_checkpoint_file` + :func:`unwrap_state_dict` +
    :func:`detect_checkpoint`. Returns a :class:`CheckpointInfo`."""
    obj = load_checkpoint_file(path, unsafe=unsafe)
    state, meta = unwrap_state_dict(obj, param_key=param_key)
    return detect_checkpoint(state, meta=meta, scale=scale, path=path, **hints)


def build_network(info, strict=True):
    """Instantiate ``info.arch_type`` from basicsr's ``ARCH_REGISTRY`` and load the converted weights.

    Returns:
        nn.Module: The network in eval mode, on the CPU.
    """
    from basicsr.utils.registry import ARCH_REGISTRY

    import srplugins  # noqa: F401  (applies the compatibility layer and registers srplugins' architectures)
    if info.arch_type not in ARCH_REGISTRY:
        raise ValueError(f'Architecture {info.arch_type!r} is not registered; is the module that defines it '
                         'installed and imported?')
    net = ARCH_REGISTRY.get(info.arch_type)(**info.arch_opt)
    result = net.load_state_dict(info.state_dict, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        warnings.warn(f'Non-strict load: missing {result.missing_keys}, unexpected {result.unexpected_keys}')
    return net.eval()


def convert_checkpoint(src, dst, scale=None, param_key=None, unsafe=False, verify=True, **hints):
    """Convert an official checkpoint to a BasicSR file ``{'params': state_dict, ...}``.

    The file also records the architecture under ``srplugins_arch`` (``type`` plus constructor options, the same
    shape as an option file's ``network_g``) and ``srplugins_info``; basicsr's ``load_network`` ignores both.

    Args:
        src (str): Official file.
        dst (str): Output ``.pth``.
        scale, param_key, unsafe, **hints: See :func:`load_checkpoint`.
        verify (bool): Build the architecture and load the weights strictly before writing. Default: True.

    Returns:
        CheckpointInfo: What was detected.
    """
    info = load_checkpoint(src, scale=scale, param_key=param_key, unsafe=unsafe, **hints)
    if verify:
        build_network(info, strict=True)
    out_dir = os.path.dirname(os.path.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    torch.save(
        {
            'params':
            OrderedDict((k, v.contiguous()) for k, v in info.state_dict.items()),
            ARCH_META_KEY:
            dict(type=info.arch_type, **info.arch_opt),
            INFO_META_KEY:
            dict(
                family=info.family,
                description=info.description,
                purpose=info.purpose,
                scale=float(info.scale),
                size_multiple=int(info.size_multiple),
                source=os.path.basename(src)),
        }, dst)
    return info
