"""Detection over the registered families, building networks, conversion to BasicSR files.

The approach follows spandrel's (chaiNNer-org/spandrel): canonicalise the container (:mod:`.io`), test each family
declared next to its network (:mod:`.family`, ``srplugins/archs/*_arch.py`` and :mod:`.basicsr_families`) with its
characteristic keys, read hyper-parameters from tensor shapes, rename keys. Differences from spandrel: files are read
with ``weights_only=True``; every family maps onto an architecture registered in basicsr's ``ARCH_REGISTRY`` so
converted files load with BasicSR's ``load_network(strict=True)``; hyper-parameters the weights do not determine
(A2N x2 vs x3, DASR ``avg_pool`` vs ``rgb``, ``nld_s1`` vs ``nld_s2``) are never guessed.

A file that records its network options (``network_opt``, written by srplugins' models for every ``net_g_*.pth`` /
``net_d_*.pth``, and by :func:`convert`) is built from them directly, so it needs no ``scale`` hint. Files that none
of our families recognise are handed to spandrel when the optional extra is installed (``pip install
srplugins[spandrel]``); our families win where both recognise a file.
"""
import os
import warnings
from collections import OrderedDict

from srplugins.checkpoints.family import CheckpointInfo, arch_spec, families, purpose_of, scale_of, size_multiple_of
from srplugins.checkpoints.io import load_file, unwrap

__all__ = ['detect', 'read', 'build_network', 'convert', 'load_dsn', 'from_network_opt', 'found_prefixes']

NETWORK_OPT_KEY = 'network_opt'
LEGACY_ARCH_KEY = 'srplugins_arch'  # converted files of srplugins <= 0.3
INFO_META_KEY = 'srplugins_info'


def _ensure_registered():
    """Import the modules that declare families (srplugins' archs and the basicsr-owned architectures)."""
    import srplugins  # noqa: F401  (registers srplugins' archs, and with them their families)
    import srplugins.checkpoints.basicsr_families  # noqa: F401


def found_prefixes(state, depth=1):
    """Distinct key prefixes (first ``depth`` dotted parts) with their counts, e.g. ``['conv_first (2)', ...]``."""
    counts = OrderedDict()
    for key in state:
        prefix = '.'.join(key.split('.')[:depth])
        counts[prefix] = counts.get(prefix, 0) + 1
    return [f'{p} ({n})' for p, n in counts.items()]


def _preview(items, limit=12):
    items = list(items)
    text = ', '.join(str(i) for i in items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def from_network_opt(state,
                     network_opt,
                     scale=None,
                     stored_scale=None,
                     family='network_opt',
                     description=None,
                     source=None):
    """:class:`CheckpointInfo` for weights whose constructor options are known (``{'type': ..., **options}``)."""
    opt = dict(network_opt)
    if 'type' not in opt:
        raise ValueError(f'network options without "type": {opt}.')
    arch_type = str(opt.pop('type'))
    net_scale = scale_of(arch_type, opt)
    purpose = purpose_of(arch_type)
    if purpose == 'sr' and 'upscale' not in opt and 'scale' not in opt and stored_scale is not None:
        net_scale = float(stored_scale)
    if scale is not None and purpose == 'sr' and float(scale) != net_scale:
        raise ValueError(f'scale={scale} was given but the checkpoint records a x{net_scale:g} {arch_type}.')
    return CheckpointInfo(
        family=family,
        description=description or f'{arch_type} with the options recorded in the file',
        arch_type=arch_type,
        arch_opt=opt,
        state_dict=OrderedDict(state),
        purpose=purpose,
        scale=net_scale,
        size_multiple=size_multiple_of(arch_type, opt),
        notes=['architecture read from the network options stored in the file'],
        source=source)


def detect(state, meta=None, scale=None, path=None, **hints):
    """Recognise the architecture of a state dict and convert it to the matching registered architecture.

    Args:
        state (dict[str, Tensor]): Canonical state dict (see :func:`srplugins.checkpoints.unwrap`).
        meta (dict | None): Metadata found next to the weights (``network_opt``, DSN ``fs_type`` / ``D_type``...).
        scale (int | None): Scale for families whose weights do not fix it (A2N x2 / x3).
        path (str | None): Original file name; ``_x{N}`` in it gives the A2N scale when ``scale`` is None.
        **hints: Other undeterminable hyper-parameters, e.g. ``filter_type`` / ``d_arch`` (DASR discriminators),
            ``skip_connection`` (U-Net SN), ``act_type`` (SRVGGNetCompact), ``output_range`` (SRResNet).

    Returns:
        CheckpointInfo: Family, architecture, options and renamed weights.

    Raises:
        ValueError: Unrecognised layout (lists the families and the key prefixes found), or an undeterminable
            hyper-parameter (says what to pass).
    """
    _ensure_registered()
    meta = dict(meta or {})
    stored = meta.get(NETWORK_OPT_KEY) or meta.get(LEGACY_ARCH_KEY)
    if isinstance(stored, dict) and 'type' in stored:
        info_meta = meta.get(INFO_META_KEY) or {}
        stored_scale = meta.get('scale', info_meta.get('scale'))
        return from_network_opt(
            state,
            stored,
            scale=scale,
            stored_scale=stored_scale,
            family=info_meta.get('family', 'network_opt'),
            description=info_meta.get('description'),
            source=path)
    hints = dict(hints, scale=scale, path=path)
    for key in ('fs_type', 'fs_kernel_size', 'D_type'):
        if key in meta and hints.get(key) is None:
            hints[key] = meta[key]
    matching = [fam for fam in families() if fam.matches(state)]
    if matching:
        fam = max(matching, key=lambda f: len(f.required))  # the most specific family wins
        built = fam.build(OrderedDict(state), hints)
        spec = arch_spec(built.arch_type)
        return CheckpointInfo(
            family=fam.name,
            description=fam.description,
            arch_type=built.arch_type,
            arch_opt=built.arch_opt,
            state_dict=built.state_dict,
            purpose=spec.purpose,
            scale=scale_of(built.arch_type, built.arch_opt),
            size_multiple=size_multiple_of(built.arch_type, built.arch_opt),
            notes=list(built.notes),
            source=path)
    from srplugins.checkpoints import spandrel_support
    info = spandrel_support.detect(state, path)
    if info is not None:
        return info
    expected = '\n'.join(f'  {fam.name} ({fam.description}): {", ".join(fam.required)}' for fam in families())
    raise ValueError('Unrecognised checkpoint: no supported key family matches.\n'
                     f'Found key prefixes: {_preview(found_prefixes(state), 20)}\n'
                     f'First keys: {_preview(list(state), 6)}\n'
                     f'Expected one of (all listed keys present):\n{expected}\n'
                     f'{spandrel_support.missing_hint()}')


def read(path, scale=None, param_key=None, purpose=None, unsafe_load=False, option=None, **hints):
    """Load, unwrap and detect a checkpoint file. Returns a :class:`CheckpointInfo`.

    Args:
        path (str): Checkpoint file.
        scale (int | None): See :func:`detect`.
        param_key (str | None): Entry holding the weights; default automatic.
        purpose (str | None): ``'discriminator'`` picks the discriminator of files holding both networks (DSN).
        unsafe_load (bool): See :func:`srplugins.checkpoints.load_file`.
        option (str | None): How the user named the file, for messages (``'--model_path'``).
        **hints: See :func:`detect`.
    """
    obj = load_file(path, unsafe_load=unsafe_load, option=option)
    state, meta = unwrap(obj, param_key=param_key, purpose=purpose)
    try:
        info = detect(state, meta=meta, scale=scale, path=path, **hints)
    except ValueError as err:
        where = f'{option} = {path}' if option else str(path)
        raise ValueError(f'{where}: {err}') from None
    if purpose is not None and info.purpose != purpose and not (purpose == 'sr' and info.purpose == 'downsampler'):
        where = f'{option} = {path}' if option else str(path)
        raise ValueError(f'{where} holds a {info.purpose} ({info.description}), but a {purpose} is needed.')
    return info


def build_network(source,
                  scale=None,
                  purpose=None,
                  param_key=None,
                  unsafe_load=False,
                  strict=True,
                  option=None,
                  **hints):
    """Build the registered architecture of a checkpoint and load its weights.

    Args:
        source (str | dict | CheckpointInfo): A file, a state dict (or loaded checkpoint object), or a detection
            result.
        scale, purpose, param_key, unsafe_load, option, **hints: See :func:`read`.
        strict (bool): ``load_state_dict(strict=...)``. Default: True.

    Returns:
        tuple[nn.Module, CheckpointInfo]: The network in eval mode on the CPU, and what was detected.
    """
    from basicsr.utils.registry import ARCH_REGISTRY
    _ensure_registered()
    if isinstance(source, CheckpointInfo):
        info = source
    elif isinstance(source, (str, os.PathLike)):
        info = read(
            str(source),
            scale=scale,
            param_key=param_key,
            purpose=purpose,
            unsafe_load=unsafe_load,
            option=option,
            **hints)
    elif isinstance(source, dict):
        state, meta = unwrap(source, param_key=param_key, purpose=purpose)
        info = detect(state, meta=meta, scale=scale, **hints)
    else:
        raise TypeError(f'build_network: expected a path, a state dict or a CheckpointInfo, got {type(source)}.')
    if info.arch_type == 'spandrel':
        from srplugins.checkpoints import spandrel_support
        return spandrel_support.build(info), info
    if info.arch_type not in ARCH_REGISTRY:
        raise ValueError(f'Architecture {info.arch_type!r} is not registered; is the module that defines it '
                         'installed and imported?')
    try:
        net = ARCH_REGISTRY.get(info.arch_type)(**info.arch_opt)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{info.arch_type} cannot be built from the options {info.arch_opt}: {err}') from None
    try:
        result = net.load_state_dict(info.state_dict, strict=strict)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()][:6]
        where = f' ({info.source})' if info.source else ''
        raise ValueError(f'The weights{where} do not fit {info.arch_type}({info.arch_opt}):\n  ' + '\n  '.join(lines)) \
            from None
    if not strict and (result.missing_keys or result.unexpected_keys):
        warnings.warn(f'Non-strict load: missing {result.missing_keys}, unexpected {result.unexpected_keys}')
    return net.eval(), info


def convert(src, dst, scale=None, param_key=None, purpose=None, unsafe_load=False, verify=True, **hints):
    """Convert a checkpoint to a BasicSR file ``{'params': state_dict, 'network_opt': {...}, 'scale': s, ...}``.

    ``network_opt`` is the option file's ``network_g`` (``network_d`` for a discriminator) block, the same record
    srplugins' models write, so ``srplugins-infer`` needs no hints for the converted file; basicsr's ``load_network``
    ignores it. Written atomically (:mod:`srplugins.utils.atomic`).

    Args:
        src (str): Checkpoint in any recognised layout.
        dst (str): Output ``.pth``.
        scale, param_key, purpose, unsafe_load, **hints: See :func:`read`.
        verify (bool): Build the architecture and load the weights strictly before writing. Default: True.

    Returns:
        CheckpointInfo: What was detected.
    """
    import torch

    from srplugins.utils.atomic import atomic_torch_save
    info = read(src, scale=scale, param_key=param_key, purpose=purpose, unsafe_load=unsafe_load, **hints)
    if info.arch_type == 'spandrel':
        raise ValueError(f'{src}: recognised by spandrel only ({info.description}); no registered architecture loads '
                         'it, so it cannot be converted to a BasicSR file (srplugins-infer runs it as is).')
    if verify:
        build_network(info, strict=True)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f'The output {dst} is the input file; choose another output name.')
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    atomic_torch_save(
        {
            'params':
            OrderedDict((k, v.contiguous()) for k, v in info.state_dict.items()),
            NETWORK_OPT_KEY:
            info.network_opt,
            'scale':
            info.scale if info.purpose != 'sr' else (int(info.scale) if float(info.scale).is_integer() else info.scale),
            INFO_META_KEY:
            dict(
                family=info.family,
                description=info.description,
                purpose=info.purpose,
                size_multiple=int(info.size_multiple),
                source=os.path.basename(src),
                torch=str(torch.__version__)),
        }, dst)
    return info


def load_dsn(path, overrides=None, unsafe_load=False, option='--checkpoint'):
    """Both networks of a DASR down-sampling stage file: a srplugins DSN bundle (``dsn_<iter>.pth``: ``params_g`` /
    ``params_d`` with ``network_g`` / ``network_d``) or an official DSN ``.tar`` (``model_g_state_dict`` /
    ``models_d_state_dict`` with ``fs_type`` / ``fs_kernel_size`` / ``D_type``). One detector for both: the
    discriminator keeps ``num_feat`` (read from the weights) and ``avg_pool`` / ``rgb`` or ``nld_s1`` / ``nld_s2`` are
    taken from the recorded options, the official metadata or ``overrides``, never guessed.

    Args:
        path (str): Checkpoint file.
        overrides (dict | None): Discriminator options (``filter_type``, ``d_arch``, ``kernel_size``, ...) for what the
            file cannot tell; ``None`` values are ignored.
        unsafe_load (bool): See :func:`srplugins.checkpoints.load_file`.
        option (str): How the user named the file, for messages.

    Returns:
        tuple: ``(net_g, net_d, info)`` in eval mode on the CPU; ``info = {'network_g': {...}, 'network_d': {...},
        'scale': ...}`` where ``scale`` is the data scale the bundle records (the run's ``scale``; a scale-1 generator
        trained at ``scale: 1`` maps HR images, one trained at ``scale: 4`` maps bicubic LR images), ``None`` when the
        file does not record it (official DSN files).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    obj = load_file(path, unsafe_load=unsafe_load, option=option)
    if not isinstance(obj, dict) or not any(
            k in obj for k in ('params_d', 'models_d_state_dict', 'model_d_state_dict')):
        raise ValueError(f'{option} = {path}: not a DSN checkpoint; expected a dsn_<iter>.pth bundle (params_g / '
                         'params_d) or an official DASR DSN .tar (model_g_state_dict / models_d_state_dict).')
    net_g, info_g = build_network(obj, purpose='downsampler')
    state_d, meta_d = unwrap(obj, purpose='discriminator')
    if overrides and isinstance(meta_d.get(NETWORK_OPT_KEY), dict):
        meta_d[NETWORK_OPT_KEY] = dict(meta_d[NETWORK_OPT_KEY], **overrides)
    try:
        info_d = detect(state_d, meta=meta_d, path=path, **overrides)
        info_d.arch_opt.update({k: v for k, v in overrides.items() if k in info_d.arch_opt})
        net_d, info_d = build_network(info_d)
    except ValueError as err:
        raise ValueError(f'{option} = {path}: discriminator: {err}') from None
    if info_g.purpose != 'downsampler' or info_d.purpose != 'discriminator':
        raise ValueError(f'{option} = {path}: expected a down-sampler and a discriminator, found {info_g.arch_type} '
                         f'and {info_d.arch_type}.')
    data_scale = obj.get('scale')
    return net_g, net_d, {
        'network_g': info_g.network_opt,
        'network_d': info_d.network_opt,
        'scale': data_scale if isinstance(data_scale, (int, float)) else None
    }
