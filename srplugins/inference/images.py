"""Image level of inference: reading and writing files (16-bit, alpha, grey + alpha PNG, animated images), image modes
and bit depths around the tensor-level tiler, and the stateless :func:`enhance`.

Modelled on Real-ESRGAN's ``RealESRGANer.enhance`` (grayscale / RGBA / 16-bit handling, ``outscale`` with a final
Lanczos resize), with its known failures fixed deliberately: 16-bit images are recognised by their dtype (not by
``max > 256``) and written back as 16-bit PNG; grayscale stays grayscale; RGBA and grey + alpha PNGs keep their alpha
channel, upscaled separately (through the network or by bicubic resizing); ``enhance`` keeps no tensors on any object
and never modifies the network it is given.

Memory: the network output is quantised tile by tile straight into the output array (uint8 / uint16 for 8 / 16-bit
images), so the peak is the output image plus one tile's work, not full-size float accumulators.
"""
import copy
import numpy as np
import os
import torch
from contextlib import nullcontext

from srplugins.inference.tiling import EnsembleNet, tile_forward
from srplugins.utils.atomic import atomic_write_bytes

__all__ = ['read_image', 'write_image', 'enhance', 'image_frames', 'PRECISIONS', 'autocast_context', 'check_precision']

PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def check_precision(precision, device):
    """Validate ``precision`` on ``device``: bf16 on CPU and CUDA, fp16 on CUDA only. Returns the torch dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f'--precision must be one of {", ".join(PRECISIONS)}, got {precision!r}.')
    device = torch.device(device)
    if precision == 'fp16' and device.type != 'cuda':
        raise ValueError(f'--precision fp16 needs a CUDA device (here: {device}); on the CPU use --precision bf16 or '
                         'fp32.')
    if precision == 'bf16' and device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--precision bf16 is supported on cpu and cuda, not on {device}; use --precision fp32.')
    return PRECISIONS[precision]


def autocast_context(precision, device):
    """``torch.autocast`` for fp16 / bf16 (convolutions and matmuls in half precision, reductions in float32, as
    mixed-precision inference does); a null context for fp32."""
    if precision == 'fp32':
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=PRECISIONS[precision])


# --------------------------------------------------------------------------------------------------------------- #
#  Depth conversion
# --------------------------------------------------------------------------------------------------------------- #
def _to_float(img):
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255., 8
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535., 16
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img.astype(np.float32), 0, 1), 32
    raise ValueError(f'Unsupported image dtype {img.dtype}; expected uint8, uint16 or float in [0, 1].')


_OUT_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}


def _quantise(arr, depth):
    """float [0, 1] -> the output depth (rounded half up, as RealESRGANer and basicsr's tensor2img round)."""
    arr = np.clip(arr, 0, 1)
    if depth == 8:
        return (arr * 255. + 0.5).astype(np.uint8)
    if depth == 16:
        return (arr * 65535. + 0.5).astype(np.uint16)
    return arr.astype(np.float32)


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
    """Encode with ``cv2.imencode`` and write the bytes atomically (:func:`srplugins.utils.atomic.atomic_write_bytes`:
    a reader never sees a half-written file; non-ASCII paths work); the extension of ``path`` picks the format.

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
    atomic_write_bytes(path, data)


def image_frames(path):
    """Number of frames of an animated image (GIF, APNG, animated WebP / TIFF pages), 1 for a still image or when
    PIL cannot tell."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return int(getattr(im, 'n_frames', 1) or 1)
    except Exception:  # noqa: B902  (not an image PIL knows: OpenCV decides later)
        return 1


def read_frames(path):
    """Every frame of an animated image as BGR / BGRA uint8 arrays (PIL, converted to RGB / RGBA)."""
    from PIL import Image, ImageSequence
    frames = []
    with Image.open(path) as im:
        for frame in ImageSequence.Iterator(im):
            has_alpha = frame.mode in ('RGBA', 'LA', 'PA') or 'transparency' in frame.info
            arr = np.asarray(frame.convert('RGBA' if has_alpha else 'RGB'))
            frames.append(np.ascontiguousarray(arr[..., [2, 1, 0, 3]] if has_alpha else arr[..., ::-1]))
    return frames


def write_frames(path, frames, durations=None, loop=0):
    """Write BGR / BGRA uint8 frames as an animated GIF (PIL), atomically."""
    import io
    from PIL import Image
    images = [Image.fromarray(f[..., [2, 1, 0, 3]] if f.shape[2] == 4 else f[..., ::-1]) for f in frames]
    buf = io.BytesIO()
    kwargs = dict(save_all=True, append_images=images[1:], loop=loop, disposal=2)
    if durations:
        kwargs['duration'] = durations
    images[0].save(buf, format='GIF', **kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def frame_durations(path):
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        return [int(frame.info.get('duration', 100)) for frame in ImageSequence.Iterator(im)]


# --------------------------------------------------------------------------------------------------------------- #
#  enhance
# --------------------------------------------------------------------------------------------------------------- #
def _net_tensors(net):
    return list(net.parameters()) + list(net.buffers())


def _normalise_device(device):
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    return device


def _rgb_to_grey(arr):
    """(h, w, 3) float RGB -> (h, w) grey with OpenCV's weights (as ``cv2.COLOR_RGB2GRAY``)."""
    import cv2
    return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)


def _infer_into(call, planes, out, channels, depth, to_grey, run):
    """Run the network on ``planes`` (H, W, C) float and quantise each output core into ``out[..., channels]``.

    ``channels``: output channel indices for the network's channels (e.g. ``[2, 1, 0]`` writes RGB as BGR);
    ``to_grey``: convert the 3-channel output to one grey channel first.
    """
    x = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))[None].to(run['device'])

    def sink(oy, ox, piece):
        arr = piece[0].float().clamp_(0, 1).cpu().numpy().transpose(1, 2, 0)
        if to_grey:
            arr = _rgb_to_grey(arr)[..., None]
        h, w = arr.shape[:2]
        out[oy:oy + h, ox:ox + w, channels] = _quantise(arr, depth)

    with torch.no_grad(), run['autocast']:
        tile_forward(
            call,
            x,
            tile=run['tile'],
            tile_pad=run['tile_pad'],
            scale=run['scale'],
            size_multiple=run['size_multiple'],
            sink=sink)


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
            num_in_ch=3,
            precision=None,
            ensemble=False):
    """Super-resolve one image. Stateless: nothing is stored on ``net`` or elsewhere, and ``net`` is not modified.

    The network runs on ``device`` with float32 weights (``precision`` fp16 / bf16 through ``torch.autocast``). When
    its parameters and buffers are already there in float32 (as :class:`~srplugins.inference.Upscaler` arranges
    once), it is used as is; otherwise a converted copy is made for this call only.

    Args:
        net (nn.Module): Network in eval mode, taking RGB in [0, 1] (``num_in_ch`` channels).
        img (ndarray): (H, W) grayscale, (H, W, 2) grayscale + alpha, (H, W, 3) BGR or (H, W, 4) BGRA; uint8,
            uint16 or float in [0, 1] (as read by :func:`read_image`).
        scale (float): The network's scale.
        outscale (float | None): Final scale; when it differs from ``scale`` the network output is resized with
            Lanczos (``cv2.INTER_LANCZOS4``). Default: None (= ``scale``).
        tile, tile_pad, size_multiple: See :func:`srplugins.inference.tile_forward`.
        device (torch.device | str | None): Default: the device of the network's first parameter (or buffer).
        half (bool): Legacy switch for ``precision='fp16'`` on CUDA (ignored elsewhere). Default: False.
        alpha_upsampler (str): ``'network'`` (alpha as a gray image through the network) or ``'bicubic'``.
        num_in_ch (int): Input channels of the network (1 or 3). Default: 3.
        precision (str | None): ``'fp32'``, ``'fp16'`` (CUDA only) or ``'bf16'``. Default: fp32.
        ensemble (bool): x8 self-ensemble (:func:`srplugins.inference.ensemble_forward`). Default: False.

    Returns:
        tuple[ndarray, str]: Output with the input's dtype and layout, and its mode: ``'L'``, ``'LA'``, ``'RGB'`` or
        ``'RGBA'``.
    """
    import cv2
    tensors = _net_tensors(net)
    if device is None:
        device = tensors[0].device if tensors else torch.device('cpu')
    device = _normalise_device(device)
    if precision is None:
        precision = 'fp16' if half and device.type == 'cuda' else 'fp32'
    check_precision(precision, device)
    if not all(
            _normalise_device(t.device) == device and (not t.is_floating_point() or t.dtype == torch.float32)
            for t in tensors):
        net = copy.deepcopy(net).to(device=device, dtype=torch.float32)  # the caller's network stays as it is
    if alpha_upsampler not in ('network', 'bicubic'):
        raise ValueError(f"alpha_upsampler must be 'network' or 'bicubic', got {alpha_upsampler!r}.")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    data, depth = _to_float(img)
    alpha = None
    if data.ndim == 2:
        mode, grey = 'L', data
    elif data.shape[2] == 2:
        mode, grey, alpha = 'LA', data[..., 0], data[..., 1]
    elif data.shape[2] == 3:
        mode, rgb = 'RGB', data[..., ::-1]
    elif data.shape[2] == 4:
        mode, rgb, alpha = 'RGBA', data[..., 2::-1], data[..., 3]
    else:
        raise ValueError(f'Unsupported image shape {img.shape}; expected (H, W), (H, W, 3) or (H, W, 4).')

    call = EnsembleNet(net) if ensemble else net
    h, w = data.shape[:2]
    out_h, out_w = int(round(h * scale)), int(round(w * scale))
    n_out = {'L': 1, 'LA': 2, 'RGB': 3, 'RGBA': 4}[mode]
    out = np.empty((out_h, out_w, n_out), dtype=_OUT_DTYPES[depth])
    run = dict(
        device=device,
        tile=tile,
        tile_pad=tile_pad,
        scale=scale,
        size_multiple=size_multiple,
        autocast=autocast_context(precision, device))

    def through_network(plane_or_rgb, channels, grey_out):
        """One pass per channel for 1-channel networks, else one pass on the 3-channel image."""
        planes = plane_or_rgb if plane_or_rgb.ndim == 3 else plane_or_rgb[..., None]
        if num_in_ch == 1:
            if grey_out and planes.shape[2] == 1:
                _infer_into(call, planes, out, channels, depth, False, run)
                return
            for c in range(planes.shape[2]):
                _infer_into(call, planes[..., c:c + 1], out, [channels[c]], depth, False, run)
            return
        if planes.shape[2] == 1:
            planes = np.repeat(planes, 3, axis=2)
        _infer_into(call, planes, out, channels, depth, grey_out, run)

    if mode in ('L', 'LA'):
        through_network(grey, [0], True)
    else:
        through_network(rgb, [2, 1, 0], False)
    if alpha is not None:
        a_idx = n_out - 1
        if alpha_upsampler == 'network':
            through_network(alpha, [a_idx], True)
        else:
            out[..., a_idx] = _quantise(cv2.resize(alpha, (out_w, out_h), interpolation=cv2.INTER_CUBIC), depth)

    if outscale is not None and abs(float(outscale) - float(scale)) > 1e-6:
        size = (max(int(round(w * outscale)), 1), max(int(round(h * outscale)), 1))
        out = cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
        if out.ndim == 2:
            out = out[..., None]
    if mode == 'L':
        out = out[..., 0]
    return np.ascontiguousarray(out), mode
