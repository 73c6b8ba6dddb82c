"""Image reading shared by srplugins' datasets: any bit depth at full precision, RGB or one grey channel.

basicsr's ``imfrombytes(float32=True)`` decodes with OpenCV's colour path (8 bit, 3 channels) and divides by 255, so a
16-bit file loses its low byte and a grey file becomes three identical channels. These readers keep the file's
precision and let the option file choose the channel count:

* ``color: rgb`` (default): ``(H, W, 3)`` RGB; grey / palette files are replicated to three channels.
* ``color: gray``: ``(H, W, 1)``; colour files are converted with the Rec. 601 luma weights (0.299, 0.587, 0.114),
  the weights of OpenCV's ``COLOR_RGB2GRAY`` and of the Y channel basicsr's metrics use, computed in float (no
  8-bit rounding).

Samples are scaled by their type, never by the values found in the image: uint8 / 255, uint16 / 65535, floats
(32-bit TIFF) clipped to [0, 1]. Non-finite pixels (NaN / inf in a float TIFF) are rejected with an error naming the
file: a single NaN would otherwise make every loss NaN and be trained into the weights. Alpha channels are dropped.
Every failure raises ``ValueError`` naming the file and, where given, the option it came from.
"""
import cv2
import io
import numpy as np
import os.path as osp
import warnings
from PIL import Image

COLORS = ('rgb', 'gray')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B (Rec. 601)


def color_option(opt, dataset):
    """The ``color`` option of a dataset: ``'rgb'`` (default) or ``'gray'``; anything else raises ValueError."""
    value = opt.get('color', 'rgb')
    if value not in COLORS:
        raise ValueError(f'{dataset}: datasets option color must be one of {COLORS} (rgb: 3-channel samples, gray: '
                         f'1-channel samples), got {value!r}.')
    return value


def num_channels(color):
    """Channel count of samples for a ``color`` value: 3 for ``'rgb'``, 1 for ``'gray'``."""
    return 1 if color == 'gray' else 3


def _where(path, option):
    return f'{path}' + (f' (from {option})' if option else '')


def to_unit_range(arr, path, option=None):
    """Scales samples by their type (uint8 / 255, uint16 / 65535, floats clipped to [0, 1]) to float32.

    Raises:
        ValueError: For another sample type, or non-finite values in a floating-point image (naming the file).
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.float16, np.float32, np.float64):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            raise ValueError(f'{_where(path, option)}: image holds {bad} non-finite pixel value(s) (NaN / inf); '
                             'training data must be finite: fix or remove the file.')
        return np.clip(arr.astype(np.float32), 0, 1)
    raise ValueError(f'{_where(path, option)}: unsupported sample type {arr.dtype} '
                     '(expected 8-bit, 16-bit or floating-point).')


def _decode_with_pil(data):
    """PIL fallback for files OpenCV cannot decode; returns ``(array, has_alpha)``, channels in RGB order."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        mode = img.mode
        has_alpha = mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (mode == 'P' and 'transparency' in img.info)
        if mode.startswith('I;16'):
            return np.asarray(img).astype(np.uint16), False
        if mode not in ('L', 'RGB', 'F', 'I'):
            img = img.convert('RGB')
        return np.asarray(img), has_alpha


def decode_image(data, path, color='rgb', option=None, with_info=False):
    """Decodes encoded image bytes to float32 ``(H, W, C)`` in [0, 1], RGB (C = 3) or grey (C = 1).

    OpenCV decodes first (``IMREAD_UNCHANGED``, so 16-bit and float files keep their depth); PIL is the fallback.

    Args:
        data (bytes | np.ndarray): Encoded file content.
        path (str): File name, for messages.
        color (str): ``'rgb'`` or ``'gray'``.
        option (str, optional): Option the file came from (e.g. ``'dataroot_gt'``), for messages.
        with_info (bool): Also return ``{'channels': 1 | 3, 'bit_depth': 8 | 16}`` of the file (alpha dropped;
            16-bit and float files count as 16 bit), e.g. to write outputs at the file's depth.

    Returns:
        np.ndarray | tuple: The image, or ``(image, info)`` with ``with_info``.

    Raises:
        ValueError: Empty, truncated or non-image data, unsupported sample types, non-finite pixels.
    """
    if color not in COLORS:
        raise ValueError(f'color must be one of {COLORS}, got {color!r}.')
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if raw.size == 0:
        raise ValueError(f'{_where(path, option)}: the file is empty (0 bytes); remove it or replace it.')
    try:
        arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    channel_order = 'bgr'
    if arr is None:
        try:
            arr, has_alpha = _decode_with_pil(raw.tobytes())
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            raise ValueError(f'{_where(path, option)}: cannot decode the image ({type(error).__name__}: {error}); the '
                             'file is truncated, corrupt or not an image: remove it or replace it.') from error
        channel_order = 'rgb'
    else:
        has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    if has_alpha:
        warnings.warn(f'{path}: image has an alpha channel; it is dropped.')
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[..., :arr.shape[2] - 1]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f'{_where(path, option)}: unsupported image layout {arr.shape} (expected grey or colour).')
    file_info = {'channels': int(arr.shape[2]), 'bit_depth': 8 if arr.dtype == np.uint8 else 16}
    img = to_unit_range(arr, path, option)
    if img.shape[2] == 3 and channel_order == 'bgr':
        img = img[..., ::-1]
    if color == 'gray':
        if img.shape[2] == 3:
            img = (
                img[..., 0:1] * np.float32(LUMA_WEIGHTS[0]) + img[..., 1:2] * np.float32(LUMA_WEIGHTS[1]) +
                img[..., 2:3] * np.float32(LUMA_WEIGHTS[2]))
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.ascontiguousarray(img, dtype=np.float32)
    return (img, file_info) if with_info else img


def read_image(path, color='rgb', option=None, with_info=False):
    """Reads an image file as float32 ``(H, W, 3)`` RGB or ``(H, W, 1)`` grey in [0, 1] at the file's precision
    (``with_info``: see :func:`decode_image`).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: See :func:`decode_image`.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{_where(path, option)}: image file does not exist.')
    return decode_image(np.fromfile(str(path), dtype=np.uint8), path, color, option, with_info)


def read_with_client(file_client, path, client_key, color='rgb', option=None):
    """Reads ``path`` through a basicsr ``FileClient`` (disk / lmdb) and decodes it like :func:`read_image`."""
    try:
        data = file_client.get(path, client_key)
    except (IOError, OSError, KeyError, TypeError) as error:  # lmdb misses give TypeError on None
        raise ValueError(f'{_where(path, option)}: cannot read the file ({type(error).__name__}: {error}).') from error
    return decode_image(data, path, color, option)
