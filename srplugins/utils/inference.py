"""Image-to-image inference for any registered srplugins / basicsr network: a stateless ``enhance`` plus the CLI.

Modelled on Real-ESRGAN's ``inference_realesrgan.py`` / ``RealESRGANer`` (flags, output naming, ``--outscale`` with a
final Lanczos resize, grayscale / RGBA / 16-bit handling), with the known failures of that tool fixed deliberately
(ecosystem notes Sec. 2.1 and 3):

* ``enhance`` keeps no tensors on any object and never modifies the network it is given (a network not yet on the
  requested device / dtype is run as a converted copy), so one network can serve several threads;
* tiles overlap and are blended with weights that are zero within ``tile_pad / 2`` pixels of an inner tile edge and
  ramp to one over the next ``tile_pad`` pixels. Outputs are therefore exactly the untiled ones wherever the network's
  receptive-field radius is at most ``tile_pad / 2``, and change smoothly (no seam) elsewhere. Tile positions and
  sizes honour the network's size multiple (pixel-unshuffle, stride-2 convs, attention windows); image sides are
  reflect-padded to that multiple and the padding is cropped from the output;
* a failing tile raises :class:`TileInferenceError` with a hint (out of memory -> ``--tile N``); nothing is swallowed;
* half precision is only used on CUDA (``--fp32`` turns it off); CPU always runs in float32;
* 16-bit images are recognised by their dtype (not by ``max > 256``), and written back as 16-bit PNG; grayscale stays
  grayscale; RGBA and grey + alpha PNGs keep their alpha channel, upscaled separately (through the network or by
  bicubic resizing);
* folder entries that are not files or do not decode are skipped with a warning and counted; paths are read with
  ``np.fromfile`` + ``cv2.imdecode`` so non-ASCII names work.
"""
import argparse
import copy
import math
import numpy as np
import os
import sys
import torch
import warnings

__all__ = [
    'TileInferenceError', 'Upscaler', 'enhance', 'run_network', 'load_upscaler', 'read_image', 'write_image', 'main'
]


class TileInferenceError(RuntimeError):
    """Raised when the network fails on one tile (or on the whole image); the message carries a hint."""


# --------------------------------------------------------------------------------------------------------------- #
#  Tensor level
# --------------------------------------------------------------------------------------------------------------- #
def _round_up(value, multiple):
    return int(math.ceil(value / multiple) * multiple)


def _pad_to_multiple(x, multiple):
    """Reflect-pad the bottom / right of ``x`` (B, C, H, W) to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = _round_up(h, multiple) - h, _round_up(w, multiple) - w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _window_starts(size, window, stride):
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


def _ramp_weights(length, at_start_border, at_end_border, margin, ramp, dtype, device):
    """1-D blending weights over a tile of ``length`` output pixels: 0 within ``margin`` of an inner edge, rising
    linearly to 1 over ``ramp`` pixels; tile edges on the image border get weight 1."""
    pos = torch.arange(length, dtype=dtype, device=device) + 0.5
    weight = torch.ones(length, dtype=dtype, device=device)
    if ramp <= 0:
        return weight
    if not at_start_border:
        weight = weight * ((pos - margin) / ramp).clamp(0, 1)
    if not at_end_border:
        weight = weight * ((length - pos - margin) / ramp).clamp(0, 1)
    return weight


def _hint(err, tile):
    text = str(err)
    if 'out of memory' in text.lower() or isinstance(err, getattr(torch, 'OutOfMemoryError', ())):
        size = max(tile // 2, 32) if tile else 512
        return f'the device ran out of memory: try a smaller tile, e.g. --tile {size}'
    if 'Half' in text or 'half' in text.lower():
        return 'half precision is not supported here: pass --fp32 (the CPU always runs in float32)'
    return 'check that the checkpoint matches the architecture and that the input size is supported'


def _forward(net, x, tile, where):
    try:
        return net(x)
    except RuntimeError as err:
        raise TileInferenceError(f'Inference failed on {where} of size {tuple(x.shape[-2:])}: {err}\n'
                                 f'Hint: {_hint(err, tile)}') from err


@torch.no_grad()
def run_network(net, x, scale, tile=0, tile_pad=32, size_multiple=1, out_device=None):
    """Run ``net`` on ``x`` with optional overlapping, blended tiles.

    Args:
        net (nn.Module): Network in eval mode; ``x`` must already be on its device and dtype.
        x (Tensor): (1, C, H, W) in [0, 1].
        scale (float): Output / input size ratio (e.g. 4, or 0.25 for a x4 down-sampler).
        tile (int): Tile size in input pixels (rounded up to ``size_multiple``); 0 = whole image. Default: 0.
        tile_pad (int): Context added on each side of a tile (rounded up to ``size_multiple``); neighbouring tiles
            overlap by ``2 * tile_pad``. Default: 32.
        size_multiple (int): Input sides the network needs to be multiples of. Default: 1.
        out_device (torch.device | None): Where the output is assembled; defaults to ``x.device``.

    Returns:
        Tensor: (1, C_out, round(H * scale), round(W * scale)) float32, not clamped.
    """
    h, w = x.shape[-2:]
    multiple = max(int(size_multiple), 1)
    if scale < 1:  # down-samplers: each stride-2 stage needs even sizes
        multiple = max(multiple, int(round(1 / scale)))
    x_pad = _pad_to_multiple(x, multiple)
    hp, wp = x_pad.shape[-2:]
    out_h, out_w = int(round(h * scale)), int(round(w * scale))
    out_device = out_device or x.device
    if tile <= 0 or (hp <= _round_up(tile, multiple) + 2 * _round_up(tile_pad, multiple)
                     and wp <= _round_up(tile, multiple) + 2 * _round_up(tile_pad, multiple)):
        out = _forward(net, x_pad, tile, 'the whole image').float().to(out_device)
        return out[..., :out_h, :out_w]

    core = _round_up(tile, multiple)
    pad = _round_up(tile_pad, multiple) if tile_pad > 0 else 0
    window = core + 2 * pad
    ys, xs = _window_starts(hp, window, core), _window_starts(wp, window, core)
    full_h, full_w = int(round(hp * scale)), int(round(wp * scale))
    out_sum = weight_sum = None
    margin, ramp = pad * scale / 2, pad * scale
    for y0 in ys:
        y1 = min(y0 + window, hp)
        for x0 in xs:
            x1 = min(x0 + window, wp)
            out_tile = _forward(net, x_pad[..., y0:y1, x0:x1], tile,
                                f'tile rows {y0}:{y1}, cols {x0}:{x1}').float().to(out_device)
            if out_sum is None:
                out_sum = torch.zeros(1, out_tile.shape[1], full_h, full_w, device=out_device)
                weight_sum = torch.zeros(1, 1, full_h, full_w, device=out_device)
            oy0, ox0 = int(round(y0 * scale)), int(round(x0 * scale))
            th, tw = out_tile.shape[-2:]
            wy = _ramp_weights(th, y0 == 0, y1 == hp, margin, ramp, torch.float32, out_device)
            wx = _ramp_weights(tw, x0 == 0, x1 == wp, margin, ramp, torch.float32, out_device)
            weight = (wy[:, None] * wx[None, :])[None, None]
            out_sum[..., oy0:oy0 + th, ox0:ox0 + tw] += out_tile * weight
            weight_sum[..., oy0:oy0 + th, ox0:ox0 + tw] += weight
    out = out_sum / weight_sum.clamp_min(1e-8)
    return out[..., :out_h, :out_w]


# --------------------------------------------------------------------------------------------------------------- #
#  Image level
# --------------------------------------------------------------------------------------------------------------- #
def _to_float(img):
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255., 8
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535., 16
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img.astype(np.float32), 0, 1), 32
    raise ValueError(f'Unsupported image dtype {img.dtype}; expected uint8, uint16 or float in [0, 1].')


def _from_float(img, depth):
    img = np.clip(img, 0, 1)
    if depth == 8:
        return (img * 255. + 0.5).astype(np.uint8)
    if depth == 16:
        return (img * 65535. + 0.5).astype(np.uint16)
    return img.astype(np.float32)


def _net_tensors(net):
    return list(net.parameters()) + list(net.buffers())


def _normalise_device(device):
    """``torch.device`` with the index CUDA would use filled in (``'cuda'`` -> ``cuda:<current>``)."""
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    return device


def _run_rgb(net, rgb, scale, tile, tile_pad, size_multiple, device, dtype, num_in_ch):
    """(H, W, 3) float RGB -> (H', W', 3) float RGB via the network (per channel for 1-channel networks)."""
    if num_in_ch == 1:
        planes = [
            _run_rgb(net, rgb[..., c:c + 1], scale, tile, tile_pad, size_multiple, device, dtype, None)[..., 0]
            for c in range(rgb.shape[2])
        ]
        return np.stack(planes, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device=device, dtype=dtype)
    out = run_network(
        net, x, scale, tile=tile, tile_pad=tile_pad, size_multiple=size_multiple, out_device=torch.device('cpu'))
    return out[0].clamp_(0, 1).numpy().transpose(1, 2, 0)


def enhance(net,
            img,
            scale,
            outscale=None,
            tile=0,
            tile_pad=32,
            size_multiple=1,
            device=None,
            half=False,
            alpha_upsampler='network',
            num_in_ch=3):
    """Super-resolve one image. Stateless: nothing is stored on ``net`` or elsewhere, and ``net`` is not modified.

    The network runs on ``device`` in float16 (``half`` on CUDA) or float32. When its parameters and buffers are
    already there in that dtype (as :class:`Upscaler` arranges once), it is used as is; otherwise a converted copy
    is made for this call only (``copy.deepcopy`` + ``.to``), so the caller's network keeps its device and dtype.
    Move the network beforehand when calling this repeatedly: the copy costs time and memory on every call.

    Args:
        net (nn.Module): Network in eval mode, taking RGB in [0, 1] (``num_in_ch`` channels).
        img (ndarray): (H, W) grayscale, (H, W, 2) grayscale + alpha, (H, W, 3) BGR or (H, W, 4) BGRA; uint8,
            uint16 or float in [0, 1] (as read by :func:`read_image`).
        scale (float): The network's scale.
        outscale (float | None): Final scale; when it differs from ``scale`` the network output is resized with
            Lanczos (``cv2.INTER_LANCZOS4``). Default: None (= ``scale``).
        tile, tile_pad, size_multiple: See :func:`run_network`.
        device (torch.device | str | None): Default: the device of the network's first parameter (or buffer).
        half (bool): Run in float16; ignored (float32) unless the device is CUDA. Default: False.
        alpha_upsampler (str): ``'network'`` (alpha as a gray image through the network) or ``'bicubic'``.
        num_in_ch (int): Input channels of the network (1 or 3). Default: 3.

    Returns:
        tuple[ndarray, str]: Output with the input's dtype and layout, and its mode: ``'L'``, ``'LA'``, ``'RGB'`` or
        ``'RGBA'``.
    """
    import cv2
    tensors = _net_tensors(net)
    if device is None:
        device = tensors[0].device if tensors else torch.device('cpu')
    device = _normalise_device(device)
    dtype = torch.float16 if half and device.type == 'cuda' else torch.float32
    if not all(
            _normalise_device(t.device) == device and (not t.is_floating_point() or t.dtype == dtype) for t in tensors):
        net = copy.deepcopy(net).to(device=device, dtype=dtype)  # the caller's network stays as it is
    if alpha_upsampler not in ('network', 'bicubic'):
        raise ValueError(f"alpha_upsampler must be 'network' or 'bicubic', got {alpha_upsampler!r}.")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    data, depth = _to_float(img)
    alpha = None
    if data.ndim == 2:
        mode, rgb = 'L', np.repeat(data[..., None], 3, axis=2)
    elif data.shape[2] == 2:  # gray + alpha
        mode, rgb, alpha = 'LA', np.repeat(data[..., :1], 3, axis=2), data[..., 1]
    elif data.shape[2] == 3:
        mode, rgb = 'RGB', data[..., ::-1]
    elif data.shape[2] == 4:
        mode, rgb, alpha = 'RGBA', data[..., 2::-1], data[..., 3]
    else:
        raise ValueError(f'Unsupported image shape {img.shape}; expected (H, W), (H, W, 3) or (H, W, 4).')

    run = dict(
        scale=scale,
        tile=tile,
        tile_pad=tile_pad,
        size_multiple=size_multiple,
        device=device,
        dtype=dtype,
        num_in_ch=num_in_ch)
    out = _run_rgb(net, np.ascontiguousarray(rgb), **run)
    if alpha is not None:
        if alpha_upsampler == 'network':
            out_alpha = _run_rgb(net, np.repeat(alpha[..., None], 3, axis=2), **run)
            out_alpha = cv2.cvtColor(out_alpha, cv2.COLOR_RGB2GRAY)
        else:
            out_alpha = cv2.resize(alpha, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC)

    if outscale is not None and abs(float(outscale) - float(scale)) > 1e-6:
        h, w = img.shape[:2]
        size = (max(int(round(w * outscale)), 1), max(int(round(h * outscale)), 1))
        out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        if alpha is not None:
            out_alpha = cv2.resize(out_alpha, size, interpolation=cv2.INTER_LANCZOS4)

    if mode in ('L', 'LA'):
        result = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)
        if mode == 'LA':
            result = np.stack([result, out_alpha], axis=2)
    else:
        result = np.ascontiguousarray(out[..., ::-1])
        if mode == 'RGBA':
            result = np.concatenate([result, out_alpha[..., None]], axis=2)
    return _from_float(result, depth), mode


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


class Upscaler:
    """A loaded network plus what inference needs to know about it. ``enhance`` is stateless (thread-safe).

    Args:
        net (nn.Module): The network (moved to ``device`` and set to eval mode). A network with an ``output_range``
            attribute of ``(-1, 1)`` has its output mapped to [0, 1].
        scale (float): Output / input size ratio.
        size_multiple (int): Input size multiple the network needs. Default: 1.
        device (str | torch.device | None): ``None`` = CUDA if available, else CPU.
        half (bool): float16 on CUDA (ignored elsewhere). Default: False.
        num_in_ch (int): Input channels. Default: 3.
        info (CheckpointInfo | None): Detection result, when loaded from a checkpoint.
    """

    def __init__(self, net, scale, size_multiple=1, device=None, half=False, num_in_ch=3, info=None):
        self.device = torch.device(device) if device is not None else torch.device(
            'cuda' if torch.cuda.is_available() else 'cpu')
        self.half = bool(half) and self.device.type == 'cuda'
        if half and not self.half:
            warnings.warn(f'Half precision requested on {self.device}; running in float32.')
        net = _unit_range(net)  # networks whose output is in [-1, 1] declare it as ``output_range``
        self.net = net.eval().to(device=self.device, dtype=torch.float16 if self.half else torch.float32)
        self.scale = scale
        self.size_multiple = size_multiple
        self.num_in_ch = num_in_ch
        self.info = info

    def enhance(self, img, outscale=None, tile=0, tile_pad=32, alpha_upsampler='network'):
        """See :func:`enhance`."""
        return enhance(
            self.net,
            img,
            self.scale,
            outscale=outscale,
            tile=tile,
            tile_pad=tile_pad,
            size_multiple=self.size_multiple,
            device=self.device,
            half=self.half,
            alpha_upsampler=alpha_upsampler,
            num_in_ch=self.num_in_ch)


def _load_error_lines(err, limit=6, width=300):
    """The first lines of a (possibly huge) ``load_state_dict`` error, each shortened."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    short = [line if len(line) <= width else line[:width] + ' ...' for line in lines[:limit]]
    if len(lines) > limit:
        short.append(f'... ({len(lines) - limit} more lines)')
    return '\n  '.join(short)


def _network_from_opt(opt_path,
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
    from srplugins.compat import check_checkpoint_scale
    from srplugins.utils.checkpoint import load_checkpoint_file, size_multiple_of, unwrap_state_dict
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
    obj = load_checkpoint_file(weights, unsafe=unsafe)
    if param_key is not None and isinstance(obj, dict) and param_key not in obj:
        param_key = None  # fall back to automatic unwrapping (params_ema, params, raw state dicts)
    try:
        state, _ = unwrap_state_dict(obj, param_key=param_key)
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
                         'the checkpoint; `python scripts/convert_checkpoint.py <file> --detect_only` prints the '
                         'network_g of a recognised checkpoint.') from None
    if not strict and (result.missing_keys or result.unexpected_keys):
        warnings.warn(f'{opt_path}: non-strict load of {weights}: missing {result.missing_keys}, unexpected '
                      f'{result.unexpected_keys}.')
    net_scale_value = float(option_scale or 1)
    if arch_type == 'DASRDownsampler':  # its `scale` is the down-sampling factor
        net_scale_value = 1. / net_scale_value
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
                  **hints):
    """Build an :class:`Upscaler` from any supported checkpoint (``model_path``) or a BasicSR option file (``opt``).

    Args:
        model_path (str | None): Checkpoint in any layout :mod:`srplugins.utils.checkpoint` recognises.
        opt (str | None): Option file; its ``network_g`` is built and ``path.pretrain_network_g`` loaded (``model_path``
            overrides the weights).
        scale (int | None): For checkpoints whose scale the weights do not fix (A2N x2 / x3). With ``opt`` it must
            agree with the option file's ``scale`` (ValueError otherwise).
        device, half: See :class:`Upscaler`.
        param_key (str | None): Entry of the checkpoint holding the weights; default automatic.
        unsafe (bool): Allow pickles with arbitrary objects (trusted files only).
        model_path_flag (str): How error messages name ``model_path`` when it overrides an option file's weights
            (the command-line flag). Default: ``'--model_path'``.
        **hints: Passed to :func:`srplugins.utils.checkpoint.detect_checkpoint`.

    Raises:
        ValueError / FileNotFoundError: with a message naming the option file and the checkpoint (unregistered
        ``network_g.type``, weights that do not fit ``network_g``, a file name ``_x{N}`` contradicting ``scale``...).
    """
    if opt is not None:
        net, net_scale, multiple, num_in_ch = _network_from_opt(
            opt, model_path, param_key, unsafe, scale=scale, model_path_flag=model_path_flag)
        return Upscaler(net, net_scale, multiple, device=device, half=half, num_in_ch=num_in_ch)
    if model_path is None:
        raise ValueError('Give a checkpoint (--model_path) or a BasicSR option file (--opt).')
    from srplugins.utils.checkpoint import build_network, load_checkpoint
    info = load_checkpoint(model_path, scale=scale, param_key=param_key, unsafe=unsafe, **hints)
    if info.purpose == 'discriminator':
        raise ValueError(f'{model_path} holds a discriminator ({info.description}); inference needs an image-to-image '
                         'network (a generator).')
    net = build_network(info)
    return Upscaler(
        net,
        info.scale,
        info.size_multiple,
        device=device,
        half=half,
        num_in_ch=info.arch_opt.get('num_in_ch', 3),
        info=info)


# --------------------------------------------------------------------------------------------------------------- #
#  Files
# --------------------------------------------------------------------------------------------------------------- #
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_GREY_ALPHA = 4  # IHDR colour type of grey + alpha


def _is_grey_alpha_png(buf):
    """True for a PNG whose IHDR colour type is grey + alpha (byte 25: after the signature, length, type, size)."""
    return buf.size > 25 and bytes(buf[:8]) == _PNG_SIGNATURE and bytes(buf[12:16]) == b'IHDR' and \
        int(buf[25]) == _PNG_GREY_ALPHA


def read_image(path, grey_alpha=False):
    """Read an image as ``cv2.IMREAD_UNCHANGED`` does (keeps 16-bit, alpha, grayscale); ``None`` if undecodable.

    Args:
        path (str): Image file (non-ASCII names work: ``np.fromfile`` + ``cv2.imdecode``).
        grey_alpha (bool): OpenCV decodes a grey + alpha PNG as 4-channel BGRA (B = G = R). With True such a file is
            returned as (H, W, 2) ``[grey, alpha]``, which :func:`enhance` and :func:`write_image` keep as grey +
            alpha (``srplugins-infer`` does this). Default: False (OpenCV's layout).
    """
    import cv2
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if grey_alpha and img is not None and img.ndim == 3 and img.shape[2] == 4 and _is_grey_alpha_png(buf) and \
            np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]):
        img = np.ascontiguousarray(img[..., [0, 3]])
    return img


def _encode_png_grey_alpha(img):
    """PNG bytes of a (H, W, 2) uint8 / uint16 grey + alpha array (OpenCV cannot encode 2-channel images)."""
    import struct
    import zlib
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'A grey + alpha PNG needs uint8 or uint16 data, got {img.dtype}.')
    h, w = img.shape[:2]
    depth = 16 if img.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(img.astype('>u2' if depth == 16 else np.uint8)).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 (none) on every row

    def chunk(tag, payload):
        return struct.pack('>I', len(payload)) + tag + payload + struct.pack('>I', zlib.crc32(tag + payload))

    header = struct.pack('>IIBBBBB', w, h, depth, _PNG_GREY_ALPHA, 0, 0, 0)
    return _PNG_SIGNATURE + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)) + \
        chunk(b'IEND', b'')


def write_image(path, img):
    """Encode with ``cv2.imencode`` and write the bytes with Python's ``open`` (non-ASCII paths work); the extension
    of ``path`` picks the format.

    A (H, W, 2) grey + alpha array is written as a grey + alpha PNG (``.png``), or as BGRA for other formats.
    """
    import cv2
    ext = os.path.splitext(path)[1]
    grey_alpha = img.ndim == 3 and img.shape[2] == 2
    if grey_alpha and ext.lower() == '.png':
        data = _encode_png_grey_alpha(img)
    else:
        if grey_alpha:
            img = np.ascontiguousarray(img[..., [0, 0, 0, 1]])
        ok, buf = cv2.imencode(ext, img)
        if not ok:
            raise OSError(f'Could not encode {path!r} (shape {img.shape}, dtype {img.dtype}).')
        data = buf.tobytes()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def _output_ext(requested, in_ext, img, mode):
    ext = in_ext.lstrip('.').lower() if requested == 'auto' else requested
    if ext in ('jpg', 'jpeg') and (mode in ('RGBA', 'LA') or img.dtype == np.uint16):
        if requested != 'auto':
            warnings.warn('JPEG cannot hold alpha or 16-bit data; writing PNG instead.')
        ext = 'png'
    if not ext:
        ext = 'png'
    return ext


def list_inputs(path):
    """Files to process: ``path`` itself, or the entries of the folder ``path`` (sorted, not recursive)."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return [os.path.join(path, name) for name in sorted(os.listdir(path))]
    raise FileNotFoundError(f'Input {path!r} is neither a file nor a folder.')


def _enhance_faces(face_enhancer, img, out, upscale):
    """Restore faces of a colour image into its upscaled version (alpha and 16-bit kept)."""
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        warnings.warn('Face enhancement skipped for a grayscale image.')
        return out, 0
    small = img[..., :3]
    if small.dtype == np.uint16:
        small = (small.astype(np.float32) / 257. + 0.5).astype(np.uint8)
    elif small.dtype != np.uint8:
        small = (np.clip(small, 0, 1) * 255. + 0.5).astype(np.uint8)
    colour, count = face_enhancer.enhance(np.ascontiguousarray(small), np.ascontiguousarray(out[..., :3]), upscale)
    if out.shape[2] == 4:
        colour = np.concatenate([colour, out[..., 3:]], axis=2)
    return colour, count


def process_paths(upscaler,
                  paths,
                  output,
                  outscale=None,
                  tile=0,
                  tile_pad=32,
                  suffix='out',
                  ext='auto',
                  alpha_upsampler='network',
                  progress=True,
                  face_enhancer=None):
    """Super-resolve every image in ``paths`` into the folder ``output``.

    ``face_enhancer`` (:class:`srplugins.utils.face.FaceEnhancer`) additionally restores detected faces with its own
    model and pastes them into the result.

    Returns:
        dict: ``{'written': [...], 'skipped': [(path, reason), ...]}``.
    """
    written, skipped = [], []
    iterator = paths
    if progress:
        from tqdm import tqdm
        iterator = tqdm(paths, unit='image', desc='srplugins-infer')
    for path in iterator:
        if not os.path.isfile(path):
            warnings.warn(f'Skipping {path!r}: not a file.')
            skipped.append((path, 'not a file'))
            continue
        img = read_image(path, grey_alpha=True)
        if img is None:
            warnings.warn(f'Skipping {path!r}: not a decodable image.')
            skipped.append((path, 'not a decodable image'))
            continue
        out, mode = upscaler.enhance(
            img, outscale=outscale, tile=tile, tile_pad=tile_pad, alpha_upsampler=alpha_upsampler)
        if face_enhancer is not None:
            out, _ = _enhance_faces(face_enhancer, img, out, outscale or upscaler.scale)
        stem, in_ext = os.path.splitext(os.path.basename(path))
        out_ext = _output_ext(ext, in_ext, out, mode)
        name = f'{stem}_{suffix}.{out_ext}' if suffix else f'{stem}.{out_ext}'
        out_path = os.path.join(output, name)
        write_image(out_path, out)
        written.append(out_path)
    return {'written': written, 'skipped': skipped}


# --------------------------------------------------------------------------------------------------------------- #
#  Command line
# --------------------------------------------------------------------------------------------------------------- #
def build_parser():
    parser = argparse.ArgumentParser(
        prog='srplugins-infer',
        description='Super-resolve an image or every image of a folder with any supported checkpoint (basicsr / '
        'Real-ESRGAN, KAIR/BSRGAN, old ESRGAN / DASR SRN, A2N, SRResNet, DASR down-sampler) or a BasicSR option file.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('-i', '--input', default='inputs', help='input image or folder')
    parser.add_argument('-o', '--output', default='results', help='output folder')
    src = parser.add_mutually_exclusive_group()
    src.add_argument('--model_path', help='checkpoint file in any supported layout')
    src.add_argument('--opt', help='BasicSR option file: network_g is built, path.pretrain_network_g loaded')
    parser.add_argument('--opt_model_path', help='with --opt: weights overriding path.pretrain_network_g')
    parser.add_argument(
        '--scale',
        type=int,
        help='network scale where the weights do not fix it (A2N x2 / x3, old ESRGAN x2 / x3); '
        'with --opt it must equal the option scale')
    parser.add_argument(
        '-s',
        '--outscale',
        type=float,
        help='final scale (Lanczos resize of the network output); '
        'default: the network scale')
    parser.add_argument('-t', '--tile', type=int, default=0, help='tile size in input pixels, 0 = no tiling')
    parser.add_argument('--tile_pad', type=int, default=32, help='context per tile side; tiles overlap by twice this')
    parser.add_argument('--fp32', action='store_true', help='float32 on CUDA too (CPU always uses float32)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1, mps ...; default: cuda if available')
    parser.add_argument('--suffix', default='out', help='output name is <stem>_<suffix>.<ext>; "" for <stem>.<ext>')
    parser.add_argument(
        '--ext',
        default='auto',
        choices=['auto', 'png', 'jpg', 'webp', 'bmp', 'tif'],
        help='output format; auto = input format (PNG for alpha / 16-bit)')
    parser.add_argument(
        '--alpha_upsampler',
        default='network',
        choices=['network', 'bicubic'],
        help='how the alpha channel of RGBA images is upscaled')
    parser.add_argument('--param_key', default=None, help='checkpoint entry holding the weights (default: automatic)')
    parser.add_argument(
        '--unsafe_load',
        action='store_true',
        help='allow pickles with arbitrary objects (torch.load weights_only=False); trusted files only')
    parser.add_argument(
        '--face_enhance',
        action='store_true',
        help='restore faces separately (needs facexlib and detection_Resnet50_Final.pth offline)')
    parser.add_argument('--face_model_path', help='with --face_enhance: SR checkpoint used for the aligned faces')
    parser.add_argument('--face_size', type=int, default=512, help='side of a restored face')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    """Entry point of ``srplugins-infer`` and ``scripts/inference.py``. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.model_path is None and args.opt is None:
        build_parser().error('one of --model_path or --opt is required')
    if args.opt_model_path is not None and args.opt is None:
        build_parser().error('--opt_model_path only applies with --opt (use --model_path for a checkpoint alone)')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    half = not args.fp32 and torch.device(device).type == 'cuda'  # half precision only on CUDA
    try:
        if args.opt is not None:
            upscaler = load_upscaler(
                model_path=args.opt_model_path,
                opt=args.opt,
                scale=args.scale,
                device=device,
                half=half,
                param_key=args.param_key,
                unsafe=args.unsafe_load,
                model_path_flag='--opt_model_path')
        else:
            upscaler = load_upscaler(
                model_path=args.model_path,
                scale=args.scale,
                device=device,
                half=half,
                param_key=args.param_key,
                unsafe=args.unsafe_load)
        face_enhancer = None
        if args.face_enhance:
            if not args.face_model_path:
                raise ValueError('--face_enhance needs --face_model_path (an SR checkpoint for the aligned faces).')
            from srplugins.utils.face import FaceEnhancer, RetinaFaceDetector
            face_upscaler = load_upscaler(
                model_path=args.face_model_path, device=device, half=half, unsafe=args.unsafe_load)
            face_enhancer = FaceEnhancer(face_upscaler, RetinaFaceDetector(device=device), face_size=args.face_size)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f'srplugins-infer: error: {err}', file=sys.stderr)
        return 2
    if upscaler.info is not None and not args.quiet:
        print(upscaler.info.summary())
    precision = 'float16' if upscaler.half else 'float32'
    print(f'device: {upscaler.device}, precision: {precision}, scale: {upscaler.scale:g}')
    try:
        result = process_paths(
            upscaler,
            list_inputs(args.input),
            args.output,
            outscale=args.outscale,
            tile=args.tile,
            tile_pad=args.tile_pad,
            suffix=args.suffix,
            ext=args.ext,
            alpha_upsampler=args.alpha_upsampler,
            progress=not args.quiet,
            face_enhancer=face_enhancer)
    except TileInferenceError as err:
        print(f'srplugins-infer: error: {err}', file=sys.stderr)
        return 1
    print(f'written: {len(result["written"])} file(s) to {args.output}; skipped: {len(result["skipped"])}')
    for path, reason in result['skipped']:
        print(f'  skipped {path}: {reason}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
