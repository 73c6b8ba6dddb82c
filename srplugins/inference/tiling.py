"""Tensor-level inference: tiles with context, x8 self-ensemble, padding to the network's size multiple.

Tiling follows Real-ESRGAN's ``RealESRGANer.tile_process``: the (padded) image is cut into non-overlapping core tiles
of ``tile`` pixels; each is run with ``tile_pad`` pixels of real image context on every side (clipped at the image
border) and only the core of its output is kept. Every output pixel is therefore computed from an input window that
contains its whole receptive field whenever the network's receptive-field radius is at most ``tile_pad``, so the
result equals the untiled run (to float rounding) and has no seam. The network work is that of RealESRGANer (no
blending, no padding of border tiles), and the cores can be handed one by one to a ``sink`` (e.g. written into a
uint8 / uint16 image), so peak memory is one tile's work plus the output buffer, not full-size float accumulators.

Differences from RealESRGANer: tile, context and positions honour the network's size multiple (pixel-unshuffle,
stride-2 stages, attention windows); non-integer output/input ratios (down-samplers, ``scale < 1``) work; a failing
tile raises :class:`TileInferenceError` with a hint instead of printing and continuing.

Self-ensemble (``--ensemble``; EDSR / A2N ``--self_ensemble``, Lim et al. 2017 Sec. 4.3 "geometric self-ensemble"):
the 8 flips / transposes of the input are run and their outputs mapped back and averaged.
"""
import math
import torch

__all__ = ['TileInferenceError', 'tile_forward', 'ensemble_forward', 'pad_to_multiple', 'auto_tile', 'EnsembleNet']


class TileInferenceError(RuntimeError):
    """Raised when the network fails on one tile (or on the whole image); the message carries a hint."""


def _round_up(value, multiple):
    return int(math.ceil(value / multiple) * multiple)


def pad_to_multiple(x, multiple):
    """Reflect-pad the bottom / right of ``x`` (B, C, H, W) to multiples of ``multiple`` (replicate when too small)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = _round_up(h, multiple) - h, _round_up(w, multiple) - w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _hint(err, tile):
    text = str(err)
    if 'out of memory' in text.lower() or isinstance(err, getattr(torch, 'OutOfMemoryError', ())):
        size = max(tile // 2, 32) if tile else 512
        return f'the device ran out of memory: try a smaller tile, e.g. --tile {size} (or --tile auto)'
    if 'Half' in text or 'half' in text.lower() or 'BFloat16' in text:
        return 'this precision is not supported here for this network: try --precision fp32'
    return 'check that the checkpoint matches the architecture and that the input size is supported'


def _run(net, x, tile, where):
    try:
        return net(x)
    except RuntimeError as err:
        raise TileInferenceError(f'Inference failed on {where} of size {tuple(x.shape[-2:])}: {err}\n'
                                 f'Hint: {_hint(err, tile)}') from err


def _starts(size, core):
    return list(range(0, size, core))


@torch.no_grad()
def tile_forward(net, x, tile=0, tile_pad=32, scale=1, size_multiple=1, sink=None, out_device=None):
    """Run ``net`` on ``x`` whole or in tiles with context (see module docstring).

    Args:
        net (callable): Network (or :class:`EnsembleNet`) in eval mode; ``x`` is already on its device and dtype.
        x (Tensor): (B, C, H, W).
        tile (int): Core tile side in input pixels (rounded up to ``size_multiple``); 0 = whole image. Default: 0.
        tile_pad (int): Context on each side of a tile (rounded up to ``size_multiple``). Default: 32.
        scale (float): Output / input size (0.25 for a x4 down-sampler). Default: 1.
        size_multiple (int): Input sides must be multiples of this; the image is reflect-padded bottom / right and
            the padding cropped from the output. Default: 1.
        sink (callable | None): ``sink(out_y0, out_x0, core)`` receives each output core (B, C_out, h, w) as soon as it
            is computed (cropped to the unpadded output size), and nothing is assembled. Default: None (assemble).
        out_device (torch.device | None): Where the assembled output lives. Default: ``x.device``.

    Returns:
        Tensor | None: (B, C_out, round(H * scale), round(W * scale)) in the network's output dtype, not clamped;
        None with a ``sink``.
    """
    h, w = x.shape[-2:]
    multiple = max(int(size_multiple), 1)
    if scale < 1:  # each stride-2 stage of a down-sampler needs even sizes
        multiple = max(multiple, int(round(1 / scale)))
    out_h, out_w = int(round(h * scale)), int(round(w * scale))
    xp = pad_to_multiple(x, multiple)
    hp, wp = xp.shape[-2:]
    core = _round_up(tile, multiple) if tile and tile > 0 else 0
    pad = _round_up(tile_pad, multiple) if tile_pad > 0 else 0
    if core == 0 or (hp <= core and wp <= core):
        out = _run(net, xp, tile, 'the whole image')[..., :out_h, :out_w]
        if sink is not None:
            sink(0, 0, out)
            return None
        return out.to(out_device) if out_device is not None else out
    out = None
    for y0 in _starts(hp, core):
        y1 = min(y0 + core, hp)
        wy0, wy1 = max(y0 - pad, 0), min(y1 + pad, hp)
        for x0 in _starts(wp, core):
            x1 = min(x0 + core, wp)
            wx0, wx1 = max(x0 - pad, 0), min(x1 + pad, wp)
            res = _run(net, xp[..., wy0:wy1, wx0:wx1], tile, f'tile rows {wy0}:{wy1}, cols {wx0}:{wx1}')
            oy0, ox0 = int(round(y0 * scale)), int(round(x0 * scale))
            oy1, ox1 = min(int(round(y1 * scale)), out_h), min(int(round(x1 * scale)), out_w)
            if oy1 <= oy0 or ox1 <= ox0:
                continue  # a core made only of padding
            cy0, cx0 = int(round((y0 - wy0) * scale)), int(round((x0 - wx0) * scale))
            piece = res[..., cy0:cy0 + oy1 - oy0, cx0:cx0 + ox1 - ox0]
            if sink is not None:
                sink(oy0, ox0, piece)
                continue
            if out is None:
                out = torch.empty((*res.shape[:2], out_h, out_w), dtype=res.dtype, device=out_device or res.device)
            out[..., oy0:oy1, ox0:ox1] = piece
    return out


def _transforms(x, k):
    """The k-th of the 8 dihedral transforms (bit 0: flip W, bit 1: flip H, bit 2: transpose)."""
    if k & 4:
        x = x.transpose(-2, -1)
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    return x


def _inverse(y, k):
    if k & 1:
        y = y.flip(-1)
    if k & 2:
        y = y.flip(-2)
    if k & 4:
        y = y.transpose(-2, -1)
    return y


@torch.no_grad()
def ensemble_forward(net, x):
    """x8 geometric self-ensemble: mean over the 8 flips / transposes of ``net(T(x))`` mapped back by ``T^-1``.

    Args:
        net (callable): Image-to-image network (fully convolutional; the transposed input has sides swapped).
        x (Tensor): (B, C, H, W).

    Returns:
        Tensor: Like ``net(x)``; accumulated in float32, returned in the network's output dtype.
    """
    acc = None
    for k in range(8):
        y = _inverse(net(_transforms(x, k)), k)
        acc = y.float() if acc is None else acc.add_(y.float())
    return (acc / 8).to(y.dtype)


class EnsembleNet(torch.nn.Module):
    """``net`` wrapped so that ``forward`` is :func:`ensemble_forward` (used per tile by the upscaler)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return ensemble_forward(self.net, x)


def auto_tile(net, x_shape, scale, device, dtype_bytes=4, size_multiple=1, budget_fraction=0.5, tile_pad=32):
    """A tile side (input pixels) whose work fits ``budget_fraction`` of the free memory of ``device``; 0 (no tiling)
    when the whole image fits.

    The work per input pixel is estimated from a probe: the peak memory of one forward pass on a 64 x 64 input (CUDA:
    ``max_memory_allocated``), or, on the CPU, 4 feature maps of the widest layer per output pixel. Free memory is
    ``torch.cuda.mem_get_info`` on CUDA and ``MemAvailable`` of ``/proc/meminfo`` elsewhere.
    """
    device = torch.device(device)
    free = _free_memory(device)
    if free is None:
        return 0
    per_pixel = _bytes_per_input_pixel(net, x_shape[1], scale, device, dtype_bytes)
    budget = free * budget_fraction
    h, w = x_shape[-2:]
    if per_pixel * (h + 2 * tile_pad) * (w + 2 * tile_pad) <= budget:
        return 0
    side = int(math.sqrt(budget / per_pixel)) - 2 * tile_pad
    return _round_up(max(side, 32), max(int(size_multiple), 1))


def _free_memory(device):
    if device.type == 'cuda' and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _bytes_per_input_pixel(net, channels, scale, device, dtype_bytes):
    probe = 64
    if device.type == 'cuda' and torch.cuda.is_available():
        x = torch.rand(1, channels, probe, probe, device=device, dtype=next(net.parameters()).dtype)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            net(x)
        peak = torch.cuda.max_memory_allocated(device) - base
        return max(peak / probe**2, 1.0)
    widest = max([m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] or [64])
    return 4 * widest * dtype_bytes * max(scale, 1)**2
