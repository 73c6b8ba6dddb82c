"""The upscaler: a loaded network plus what inference needs to know about it (scale, size multiple, channels,
precision, channels_last, compile, self-ensemble), built from any checkpoint :mod:`srplugins.checkpoints` recognises
(official layouts, training checkpoints recording ``network_opt``, converted files, spandrel-only architectures with
the extra) or from a BasicSR option file (``network_g`` + ``path.pretrain_network_g``).
"""
import os
import torch
import warnings

from srplugins.inference.images import check_precision, enhance

__all__ = ['Upscaler', 'load_upscaler', 'network_from_opt']


class _ToUnitRange(torch.nn.Module):
    """Maps a generator's [-1, 1] output (e.g. ``SRResNet(output_range=[-1, 1])``, tanh) to [0, 1]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return (self.net(x) + 1) / 2


def _unit_range(net):
    output_range = getattr(net, 'output_range', None)
    if output_range is not None and tuple(float(v) for v in output_range) == (-1.0, 1.0):
        return _ToUnitRange(net)
    return net


class _ChannelsLast(torch.nn.Module):
    """Feeds the network channels_last (NHWC) inputs; the weights are converted once."""

    def __init__(self, net):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()


class Upscaler:
    """A loaded network plus what inference needs to know about it. ``enhance`` is stateless (thread-safe).

    Args:
        net (nn.Module): The network (moved to ``device`` in float32, eval mode). A network with an ``output_range``
            attribute of ``(-1, 1)`` has its output mapped to [0, 1].
        scale (float): Output / input size ratio.
        size_multiple (int): Input size multiple the network needs. Default: 1.
        device (str | torch.device | None): ``None`` = CUDA if available, else CPU.
        half (bool): Legacy: ``precision='fp16'`` on CUDA, float32 elsewhere (with a warning). Default: False.
        num_in_ch (int): Input channels. Default: 3.
        info (CheckpointInfo | None): Detection result, when loaded from a checkpoint.
        precision (str | None): ``'fp32'``, ``'fp16'`` (CUDA only; ValueError elsewhere) or ``'bf16'`` (CPU and CUDA),
            through ``torch.autocast``. Default: fp32 (or fp16 with ``half`` on CUDA).
        channels_last (bool): Run in NHWC memory format. Default: False.
        compile (bool | str): ``torch.compile`` the network (``True`` or a mode such as ``'max-autotune'``).
        ensemble (bool): x8 self-ensemble. Default: False.
    """

    def __init__(self,
                 net,
                 scale,
                 size_multiple=1,
                 device=None,
                 half=False,
                 num_in_ch=3,
                 info=None,
                 precision=None,
                 channels_last=False,
                 compile=False,
                 ensemble=False):
        self.device = torch.device(device) if device is not None else torch.device(
            'cuda' if torch.cuda.is_available() else 'cpu')
        if precision is None:
            precision = 'fp16' if half and self.device.type == 'cuda' else 'fp32'
            if half and self.device.type != 'cuda':
                warnings.warn(f'Half precision requested on {self.device}; running in float32.')
        check_precision(precision, self.device)
        self.precision = precision
        self.half = precision == 'fp16'
        net = _unit_range(net).eval().to(device=self.device, dtype=torch.float32)
        if channels_last:
            net = _ChannelsLast(net)
        if compile:
            if not hasattr(torch, 'compile'):
                raise ValueError('--compile needs torch >= 2.0 (torch.compile).')
            net = torch.compile(net, **({'mode': compile} if isinstance(compile, str) else {}))
        self.net = net
        self.channels_last = bool(channels_last)
        self.compiled = bool(compile)
        self.ensemble = bool(ensemble)
        self.scale = scale
        self.size_multiple = size_multiple
        self.num_in_ch = num_in_ch
        self.info = info

    def describe(self):
        return (f'device: {self.device}, precision: {self.precision}, channels_last: {self.channels_last}, '
                f'compile: {self.compiled}, ensemble: {self.ensemble}, scale: {self.scale:g}')

    def enhance(self, img, outscale=None, tile=0, tile_pad=32, alpha_upsampler='network'):
        """See :func:`srplugins.inference.enhance`."""
        return enhance(
            self.net,
            img,
            self.scale,
            outscale=outscale,
            tile=tile,
            tile_pad=tile_pad,
            size_multiple=self.size_multiple,
            device=self.device,
            alpha_upsampler=alpha_upsampler,
            num_in_ch=self.num_in_ch,
            precision=self.precision,
            ensemble=self.ensemble)


def _load_error_lines(err, limit=6, width=300):
    """The first lines of a (possibly huge) ``load_state_dict`` error, each shortened."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    short = [line if len(line) <= width else line[:width] + ' ...' for line in lines[:limit]]
    if len(lines) > limit:
        short.append(f'... ({len(lines) - limit} more lines)')
    return '\n  '.join(short)


def network_from_opt(opt_path,
                     model_path=None,
                     param_key=None,
                     unsafe=False,
                     scale=None,
                     model_path_flag='--model_path'):
    """Build ``network_g`` of a BasicSR option file and load ``path.pretrain_network_g`` (or ``model_path``).

    Every failure is a ValueError / FileNotFoundError naming the option file and the checkpoint: an unregistered
    ``network_g.type`` or bad constructor options, weights that do not fit ``network_g`` (missing / unexpected keys,
    shape mismatches), a checkpoint file name whose ``_x{N}`` contradicts the option's ``scale``
    (:func:`srplugins.compat.check_checkpoint_scale`: A2N x2 / x3 weights have identical shapes), and a ``scale``
    argument that contradicts the option file.

    Returns:
        tuple: ``(net, scale, size_multiple, num_in_ch)``; ``scale`` is below 1 for a down-sampler.
    """
    import yaml
    from basicsr.utils.registry import ARCH_REGISTRY

    import srplugins  # noqa: F401
    from srplugins.checkpoints import load_file, purpose_of, scale_of, size_multiple_of, unwrap
    from srplugins.compat import check_checkpoint_scale
    if not os.path.isfile(opt_path):
        raise FileNotFoundError(f'Option file not found: {opt_path!r}.')
    try:
        with open(opt_path, 'r') as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f'{opt_path}: not a valid YAML file: {err}') from None
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict) or 'type' not in opt['network_g']:
        raise ValueError(f'{opt_path}: expected a BasicSR option file with a network_g block holding "type".')
    net_opt = dict(opt['network_g'])
    arch_type = net_opt.pop('type')
    try:
        arch_cls = ARCH_REGISTRY.get(arch_type)
    except KeyError:
        import difflib
        names = sorted(ARCH_REGISTRY.keys())
        close = difflib.get_close_matches(str(arch_type), names, n=3)
        hint = f' Did you mean {" / ".join(close)}?' if close else ''
        raise ValueError(f'{opt_path}: network_g.type {arch_type!r} is not a registered architecture.{hint} '
                         f'Registered: {", ".join(names)}.') from None

    # scales: the option's `scale`, the network's own upscale / scale, and the caller's
    opt_scale = opt.get('scale')
    net_scale = net_opt.get('upscale', net_opt.get('scale'))
    if opt_scale is not None and net_scale is not None and float(opt_scale) != float(net_scale):
        raise ValueError(f'{opt_path}: scale {opt_scale} and network_g scale {net_scale} differ.')
    option_scale = opt_scale if opt_scale is not None else net_scale
    if scale is not None and option_scale is not None and float(scale) != float(option_scale):
        raise ValueError(f'--scale {scale} conflicts with {opt_path}: scale {option_scale}. With --opt the network '
                         'and its scale come from the option file: drop --scale or fix the option file.')

    path_opt = opt.get('path') or {}
    weights = model_path or path_opt.get('pretrain_network_g')
    source = model_path_flag if model_path else 'path.pretrain_network_g'
    if not weights:
        raise ValueError(f'{opt_path}: no weights; set path.pretrain_network_g or pass {model_path_flag}.')
    try:
        check_checkpoint_scale(weights, option_scale, option=source)
    except ValueError as err:
        raise ValueError(f'{opt_path}: {err}') from None
    if not os.path.isfile(weights):
        raise FileNotFoundError(f'{opt_path}: {source} = {weights!r} does not exist.')
    if param_key is None:
        param_key = path_opt.get('param_key_g', 'params')
    obj = load_file(weights, unsafe_load=unsafe, option=source)
    if param_key is not None and isinstance(obj, dict) and param_key not in obj:
        param_key = None  # fall back to automatic unwrapping (params_ema, params, raw state dicts)
    try:
        state, _ = unwrap(obj, param_key=param_key)
    except ValueError as err:
        raise ValueError(f'{opt_path}: {source} = {weights}: {err}') from None
    try:
        net = arch_cls(**net_opt)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{opt_path}: network_g ({arch_type}) cannot be built from its options: {err}') from None
    strict = path_opt.get('strict_load_g', True)
    try:
        result = net.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(f'{opt_path}: the weights {source} = {weights} do not fit network_g ({arch_type}):\n  '
                         f'{_load_error_lines(err)}\nCheck that network_g (e.g. num_feat, num_block, scale) matches '
                         'the checkpoint; `srplugins-convert <file> --detect_only` prints the network_g of a '
                         'recognised checkpoint.') from None
    if not strict and (result.missing_keys or result.unexpected_keys):
        warnings.warn(f'{opt_path}: non-strict load of {weights}: missing {result.missing_keys}, unexpected '
                      f'{result.unexpected_keys}.')
    if purpose_of(arch_type) == 'discriminator':
        raise ValueError(f'{opt_path}: network_g ({arch_type}) is a discriminator; inference needs an image-to-image '
                         'network.')
    # the architecture's declared scale (a down-sampler's `scale` is its down-sampling factor: output / input < 1)
    scale_opt = dict(net_opt)
    if net_scale is None and option_scale is not None:
        scale_opt['upscale'] = option_scale
    net_scale_value = scale_of(arch_type, scale_opt)
    num_in_ch = net_opt.get('num_in_ch', net_opt.get('in_chans', 3))
    return net.eval(), net_scale_value, size_multiple_of(arch_type, net_opt, net), num_in_ch


def load_upscaler(model_path=None,
                  opt=None,
                  scale=None,
                  device=None,
                  half=False,
                  param_key=None,
                  unsafe=False,
                  model_path_flag='--model_path',
                  precision=None,
                  channels_last=False,
                  compile=False,
                  ensemble=False,
                  **hints):
    """Build an :class:`Upscaler` from any supported checkpoint (``model_path``) or a BasicSR option file (``opt``).

    Args:
        model_path (str | None): Checkpoint in any layout :mod:`srplugins.checkpoints` recognises.
        opt (str | None): Option file; its ``network_g`` is built and ``path.pretrain_network_g`` loaded (``model_path``
            overrides the weights).
        scale (int | None): For checkpoints whose scale the weights do not fix (A2N x2 / x3). With ``opt`` it must
            agree with the option file's ``scale``; with a file recording its ``network_opt`` it must agree with it.
        device, half, precision, channels_last, compile, ensemble: See :class:`Upscaler`.
        param_key (str | None): Entry of the checkpoint holding the weights; default automatic.
        unsafe (bool): Allow pickles with arbitrary objects (trusted files only).
        model_path_flag (str): How error messages name ``model_path``. Default: ``'--model_path'``.
        **hints: Passed to :func:`srplugins.checkpoints.detect`.

    Raises:
        ValueError / FileNotFoundError: with a message naming the option file and the checkpoint.
    """
    extra = dict(precision=precision, channels_last=channels_last, compile=compile, ensemble=ensemble)
    if opt is not None:
        net, net_scale, multiple, num_in_ch = network_from_opt(
            opt, model_path, param_key, unsafe, scale=scale, model_path_flag=model_path_flag)
        return Upscaler(net, net_scale, multiple, device=device, half=half, num_in_ch=num_in_ch, **extra)
    if model_path is None:
        raise ValueError('Give a checkpoint (--model_path) or a BasicSR option file (--opt).')
    from srplugins import checkpoints
    net, info = checkpoints.build_network(
        model_path, scale=scale, param_key=param_key, unsafe_load=unsafe, option=model_path_flag, **hints)
    if info.purpose == 'discriminator':
        raise ValueError(
            f'{model_path_flag} = {model_path} holds a discriminator ({info.description}); inference needs '
            'an image-to-image network (a generator).')
    num_in_ch = info.arch_opt.get('num_in_ch', info.arch_opt.get('in_chans', info.arch_opt.get('in_nc', 3)))
    return Upscaler(
        net, info.scale, info.size_multiple, device=device, half=half, num_in_ch=num_in_ch, info=info, **extra)
