"""``srplugins-data``: data preparation for the SR recipes.

Sub-commands:

``demo``
    Build the embedded demo dataset from scikit-image's bundled sample photographs (nothing is downloaded)::

        datasets/demo/train/HR/<name>.png               training images (sides divisible by 12)
        datasets/demo/train/LR_bicubic/X{2,3,4}/<name>.png
        datasets/demo/val/HR/<name>.png                 held-out images, never seen in training
        datasets/demo/val/LR_bicubic/X{2,3,4}/<name>.png

    LR images are made from HR by basicsr's MATLAB-style bicubic ``imresize`` (antialiased), rounded to uint8, as the
    DIV2K / benchmark LR sets are. ``--gray16`` writes the same layout under ``datasets/demo_gray16`` as 16-bit
    single-channel PNGs (the luma ``0.299 R + 0.587 G + 0.114 B`` of each photograph at 16-bit precision, LR rounded to
    16 bit), for the grey / 16-bit recipes. Idempotent: files that exist with the expected content are left alone
    (``--force`` rebuilds).
``make-lr``
    Bicubic LR images of a folder of HR images (mod-cropped to the scale), as the SR benchmark LR sets are made:
    ``basicsr-round`` = basicsr's MATLAB-style ``imresize`` on float, rounded to the file's integer type (MATLAB's
    ``imwrite`` of a double image); ``matlab-uint8`` = MATLAB ``imresize`` on an integer image, which rounds after each
    axis (H, then W), as the EDSR benchmark LR PNGs were made. Grey stays grey, 16 bit stays 16 bit.
``subimages``
    Overlapping crops of large images (``crop_size``, ``step``, ``thresh_size``), as BasicSR / Real-ESRGAN prepare
    DIV2K (``<stem>_s001.png``, ...); a trailing ``x<scale>`` of the stem (DIV2K LR names) is dropped so that HR and
    LR crops pair by name.
``meta-info``
    The meta_info text file the datasets read (``meta_info`` of the srplugins / Real-ESRGAN datasets): one image path
    per line relative to the root; ``--paired`` writes ``<gt path>, <lq path>`` per line (Real-ESRGAN's paired
    format), pairing the two folders by file stem.
``strip-suffix``
    Link (or copy) paired files whose names differ by a suffix under their common stem (RealSR).

Examples::

    srplugins-data demo
    srplugins-data make-lr -i datasets/benchmark/Set5/HR -o datasets/benchmark/Set5/LR_bicubic/X2 --scale 2
    srplugins-data subimages -i datasets/DIV2K/DIV2K_train_HR -o datasets/DIV2K/DIV2K_train_HR_sub
    srplugins-data meta-info -i datasets/DIV2K/DIV2K_train_HR_sub -o datasets/DIV2K/meta_info_sub.txt
"""
import argparse
import hashlib
import json
import numpy as np
import os
import os.path as osp
import sys

from srplugins.tools._cli import HelpFormatter
from srplugins.utils.atomic import atomic_write, atomic_write_bytes

# (skimage.data function, target folder). Held-out validation photographs differ from the training ones.
TRAIN_IMAGES = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry')
VAL_IMAGES = ('chelsea', 'coffee')
SCALES = (2, 3, 4)
MULTIPLE = 12  # divisible by 2, 3 and 4
DEMO_ROOT = osp.join('datasets', 'demo')
DEMO_GRAY16_ROOT = osp.join('datasets', 'demo_gray16')
IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
LR_MODES = ('basicsr-round', 'matlab-uint8')


def load_sample(name):
    """RGB uint8 HxWx3 array of a bundled scikit-image photograph, cropped to sides divisible by 12."""
    from skimage import data
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    img = img[..., :3]
    h, w = (img.shape[0] // MULTIPLE) * MULTIPLE, (img.shape[1] // MULTIPLE) * MULTIPLE
    return np.ascontiguousarray(img[:h, :w])


def to_gray16(img_rgb_uint8):
    """16-bit luma of an RGB uint8 image: ``round(65535 * (0.299 R + 0.587 G + 0.114 B) / 255)`` (ITU-R BT.601
    weights, as OpenCV's RGB2GRAY), ``(H, W)`` uint16 with more than 256 levels."""
    rgb = img_rgb_uint8.astype(np.float64) / 255.
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.round(gray * 65535.), 0, 65535).astype(np.uint16)


def _peak(dtype):
    if dtype == np.uint8:
        return 255.
    if dtype == np.uint16:
        return 65535.
    raise ValueError(f'expected a uint8 or uint16 image, got {dtype}')


def _imresize(img, scale):
    import srplugins  # noqa: F401  (stack fixes before basicsr is imported: this import must stay first)
    # isort: split
    from basicsr.utils.matlab_functions import imresize
    return imresize(img, scale)


def _resize_axis_integer(img, scale, axis):
    """MATLAB ``imresize`` (bicubic, antialiased) along one axis of an integer image, rounded and clipped to its type,
    as MATLAB does after each axis for integer input (weights and symmetric padding: basicsr's
    ``calculate_weights_indices``, the port of MATLAB's ``contributions``)."""
    import math

    import srplugins  # noqa: F401  (stack fixes before basicsr is imported: this import must stay first)
    # isort: split
    from basicsr.utils.matlab_functions import calculate_weights_indices
    peak = _peak(img.dtype)
    in_len = img.shape[axis]
    out_len = math.ceil(in_len * scale)
    weights, indices, sym_s, sym_e = calculate_weights_indices(in_len, out_len, scale, 'cubic', 4, True)
    weights, indices = weights.numpy().astype(np.float64), indices.numpy().astype(np.int64)
    data = np.moveaxis(img.astype(np.float64), axis, 0)
    padded = np.concatenate([data[:sym_s][::-1], data, data[in_len - sym_e:][::-1]], axis=0)
    taps = padded[indices[:, 0][:, None] + np.arange(weights.shape[1])[None, :]]  # (out, taps, ...)
    out = np.einsum('ot,ot...->o...', weights, taps)
    return np.moveaxis(np.clip(np.round(out), 0, peak).astype(img.dtype), 0, axis)


def downscale(img, scale, mode='basicsr-round'):
    """Bicubic LR of an integer image (uint8 / uint16, ``(H, W)`` or ``(H, W, C)``), in the same type and shape.

    Args:
        img (ndarray): HR image; its sides should be multiples of ``scale`` (see :func:`mod_crop`).
        scale (int | float): Down-scaling factor.
        mode (str): ``'basicsr-round'``: basicsr's MATLAB-style ``imresize`` on float in [0, 1], then rounded and
            clipped to the input type (MATLAB's ``imresize`` of a double image written with ``imwrite``).
            ``'matlab-uint8'``: MATLAB ``imresize`` on the integer image itself, rounding after each axis (H, then
            W); for uint16 input the rounding is at 16 bit, as MATLAB does for every integer class.

    Returns:
        ndarray: The LR image, ``ceil(H / scale) x ceil(W / scale)``.
    """
    if mode not in LR_MODES:
        raise ValueError(f'mode must be one of {LR_MODES}, got {mode!r}')
    peak = _peak(img.dtype)
    if mode == 'matlab-uint8':
        return _resize_axis_integer(_resize_axis_integer(img, 1. / scale, 0), 1. / scale, 1)
    lr = _imresize(img.astype(np.float64) / peak, 1. / scale)
    return np.clip(np.round(lr * peak), 0, peak).astype(img.dtype)


def bicubic_downscale(img_rgb_uint8, scale):
    """MATLAB-style bicubic downscale (basicsr ``imresize``), rounded to uint8 (the demo data's LR)."""
    return downscale(img_rgb_uint8, scale, 'basicsr-round')


def mod_crop(img, scale):
    """Crop the bottom / right so that both sides are multiples of ``scale`` (basicsr's ``mod_crop``)."""
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    return img[:h, :w]


def read_unchanged(path):
    """An image file as stored (8 / 16 bit, grey / colour / alpha; channel order BGR), or a ValueError naming it."""
    import cv2
    raw = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise ValueError(f'{path}: cannot decode this image file')
    return img


def write_image(path, img):
    """Atomically write ``img`` (as :func:`read_unchanged` returns it) in the format of ``path``'s extension."""
    import cv2
    ext = osp.splitext(path)[1].lower() or '.png'
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise OSError(f'{path}: could not encode a {img.dtype} image of shape {img.shape} as {ext}')
    atomic_write_bytes(path, buf.tobytes())


def _write_png(path, img_rgb):
    os.makedirs(osp.dirname(path), exist_ok=True)
    write_image(path, img_rgb[..., ::-1] if img_rgb.ndim == 3 else img_rgb)


def _digest(img):
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


def build(root=DEMO_ROOT, force=False, verbose=True, gray16=False):
    """Create (or verify) the demo dataset under ``root``. Returns the absolute root.

    With ``gray16`` every image (HR and LR) is the 16-bit single-channel version (:func:`to_gray16`; LR by
    :func:`downscale` at 16 bit); the layout is the same.
    """
    root = osp.abspath(root)
    manifest_path = osp.join(root, 'manifest.json')
    manifest = {}
    if osp.isfile(manifest_path) and not force:
        with open(manifest_path, encoding='utf-8') as f:
            manifest = json.load(f)
    changed = False
    for split, names in (('train', TRAIN_IMAGES), ('val', VAL_IMAGES)):
        for name in names:
            hr = load_sample(name)
            if gray16:
                hr = to_gray16(hr)
            key = f'{split}/{name}'
            outputs = {osp.join(root, split, 'HR', f'{name}.png'): None}
            outputs.update({osp.join(root, split, 'LR_bicubic', f'X{s}', f'{name}.png'): s for s in SCALES})
            digest = _digest(hr)
            if not force and manifest.get(key) == digest and all(osp.isfile(p) for p in outputs):
                continue
            for path, scale in outputs.items():
                _write_png(path, hr if scale is None else downscale(hr, scale))
            manifest[key] = digest
            changed = True
            if verbose:
                print(f'wrote {key}: HR {hr.shape[1]}x{hr.shape[0]} and LR x{"/x".join(map(str, SCALES))}')
    if changed:
        with atomic_write(manifest_path, 'w') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
    elif verbose:
        print(f'{root} is up to date')
    return root


def list_images(folder, what='-i'):
    """Sorted image file names (not paths) of ``folder``."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{what} {folder}: folder not found')
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMG_EXTS) and osp.isfile(osp.join(folder, f)))
    if not names:
        raise ValueError(f'{what} {folder}: no image files ({", ".join(IMG_EXTS)})')
    return names


def make_lr(hr_dir, lr_dir, scale, mode='basicsr-round', name_tmpl='{}', verbose=True):
    """Write ``lr_dir/<name_tmpl.format(stem)>.png`` for every image of ``hr_dir``: mod-crop, then
    :func:`downscale`. Returns the written paths."""
    if scale <= 0 or int(scale) != scale:
        raise ValueError(f'--scale must be a positive integer, got {scale}')
    scale = int(scale)
    if '{}' not in name_tmpl:
        raise ValueError(f'--name-tmpl {name_tmpl!r} must contain "{{}}" for the HR file stem (e.g. "{{}}x2")')
    os.makedirs(lr_dir, exist_ok=True)
    written = []
    for name in list_images(hr_dir):
        img = read_unchanged(osp.join(hr_dir, name))
        if img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f'{osp.join(hr_dir, name)}: {img.dtype} images are not supported (8 or 16 bit)')
        path = osp.join(lr_dir, name_tmpl.format(osp.splitext(name)[0]) + '.png')
        write_image(path, downscale(mod_crop(img, scale), scale, mode))
        written.append(path)
    if verbose:
        print(f'wrote {len(written)} x{scale} LR images ({mode}) to {lr_dir}')
    return written


def crop_positions(length, crop_size, step, thresh_size):
    """Top-left offsets along one side: every ``step`` pixels, plus a last crop flush with the border when the
    remainder is larger than ``thresh_size`` (BasicSR's ``extract_subimages``). A side shorter than ``crop_size``
    gives no crop."""
    if length < crop_size:
        return []
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def _subimage_stem(stem):
    import re
    return re.sub(r'x\d+$', '', stem)


def subimages(in_dir, out_dir, crop_size=480, step=240, thresh_size=0, verbose=True):
    """Crop every image of ``in_dir`` into overlapping ``crop_size`` squares written as ``<stem>_s<NNN><ext>``
    (row-major, numbered from 1, at the file's bit depth and channels). Returns the number of crops."""
    if crop_size <= 0 or step <= 0 or thresh_size < 0:
        raise ValueError(f'--crop-size and --step must be positive and --thresh-size >= 0, got {crop_size}, {step}, '
                         f'{thresh_size}')
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for name in list_images(in_dir):
        path = osp.join(in_dir, name)
        img = read_unchanged(path)
        stem, ext = osp.splitext(name)
        ys = crop_positions(img.shape[0], crop_size, step, thresh_size)
        xs = crop_positions(img.shape[1], crop_size, step, thresh_size)
        if not ys or not xs:
            print(
                f'WARNING: {path} ({img.shape[1]}x{img.shape[0]}) is smaller than --crop-size {crop_size}; skipped',
                file=sys.stderr)
        index = 0
        for y in ys:
            for x in xs:
                index += 1
                crop = np.ascontiguousarray(img[y:y + crop_size, x:x + crop_size])
                write_image(osp.join(out_dir, f'{_subimage_stem(stem)}_s{index:03d}{ext}'), crop)
        total += index
    if verbose:
        print(f'wrote {total} sub-images to {out_dir}')
    return total


def _relative_images(folder, root):
    names = []
    for dirpath, _, files in os.walk(folder):
        names += [osp.join(dirpath, f) for f in files if f.lower().endswith(IMG_EXTS)]
    if not names:
        raise ValueError(f'{folder}: no image files ({", ".join(IMG_EXTS)})')
    return sorted(osp.relpath(p, root).replace(os.sep, '/') for p in names)


def meta_info(folders, out, roots=None, paired=False):
    """Write the meta_info file ``out`` and return its lines.

    Unpaired: every image under each folder (recursively), one path per line relative to its root (default: the
    folder itself), sorted. Paired (``folders = [gt, lq]``): ``<gt path>, <lq path>`` per line, the two folders
    paired by file stem (an image without a partner is an error naming it), Real-ESRGAN's paired meta_info format.
    """
    roots = list(roots or [])
    if roots and len(roots) != len(folders):
        raise ValueError(f'--root: give one root per input folder ({len(folders)}), got {len(roots)}')
    roots = roots or list(folders)
    for folder in folders:
        if not osp.isdir(folder):
            raise FileNotFoundError(f'-i {folder}: folder not found')
    if paired:
        if len(folders) != 2:
            raise ValueError(f'--paired needs two input folders (GT, LQ), got {len(folders)}')
        gt, lq = (_relative_images(f, r) for f, r in zip(folders, roots))
        by_stem = []
        for files, folder in ((gt, folders[0]), (lq, folders[1])):
            table = {}
            for rel in files:
                stem = osp.splitext(osp.basename(rel))[0]
                if stem in table:
                    raise ValueError(f'{folder}: {table[stem]} and {rel} share the stem {stem!r}')
                table[stem] = rel
            by_stem.append(table)
        only_gt = sorted(set(by_stem[0]) - set(by_stem[1]))
        only_lq = sorted(set(by_stem[1]) - set(by_stem[0]))
        if only_gt or only_lq:
            raise ValueError(f'--paired: files without a partner of the same stem: GT only {only_gt[:5]}, '
                             f'LQ only {only_lq[:5]} (use strip-suffix to align names)')
        lines = [f'{by_stem[0][s]}, {by_stem[1][s]}' for s in sorted(by_stem[0])]
    else:
        lines = [rel for folder, root in zip(folders, roots) for rel in _relative_images(folder, root)]
    if osp.dirname(osp.abspath(out)):
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with atomic_write(out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


def build_parser():
    parser = argparse.ArgumentParser(
        prog='srplugins-data',
        description="data preparation for the SR recipes (see each command\x27s -h)",
        formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    demo = sub.add_parser(
        'demo',
        help='the embedded demo dataset (datasets/demo)',
        formatter_class=HelpFormatter,
        description='Build the embedded demo dataset from scikit-image\'s bundled photographs (nothing is '
        'downloaded): datasets/demo/{train,val}/HR and LR_bicubic/X{2,3,4}; with --gray16 the 16-bit single-channel '
        'version under datasets/demo_gray16.')
    demo.add_argument('--root', help='output folder (default: datasets/demo, with --gray16 datasets/demo_gray16)')
    demo.add_argument('--gray16', action='store_true', help='16-bit single-channel version')
    demo.add_argument('--force', action='store_true', help='rebuild every file')

    lr = sub.add_parser(
        'make-lr',
        help='bicubic LR images (MATLAB-style)',
        formatter_class=HelpFormatter,
        description='Mod-crop each HR image to the scale and write its bicubic LR image as PNG (same channels and '
        'bit depth). basicsr-round: basicsr imresize on float, rounded to the file\'s integer type; matlab-uint8: '
        'MATLAB imresize on the integer image (rounded after each axis), as the EDSR benchmark LR sets were made.')
    lr.add_argument('-i', '--input', required=True, help='folder of HR images')
    lr.add_argument('-o', '--output', required=True, help='output folder for the LR images')
    lr.add_argument('--scale', type=int, required=True, help='down-scaling factor')
    lr.add_argument('--mode', choices=LR_MODES, default='basicsr-round', help='resize emulation')
    lr.add_argument('--name-tmpl', default='{}', help='LR file stem for an HR stem, e.g. "{}x2" for EDSR names')

    crops = sub.add_parser(
        'subimages',
        help='overlapping crops of large images',
        formatter_class=HelpFormatter,
        description='Crop every image into overlapping squares (<stem>_s001.png, ...) as BasicSR / Real-ESRGAN '
        'prepare DIV2K: crops every --step pixels, plus a crop flush with the border when more than --thresh-size '
        'pixels remain. For the LR folder of a pair, divide all three sizes by the scale.')
    crops.add_argument('-i', '--input', required=True, help='folder of images')
    crops.add_argument('-o', '--output', required=True, help='output folder')
    crops.add_argument('--crop-size', type=int, default=480, help='crop side in pixels')
    crops.add_argument('--step', type=int, default=240, help='distance between crops')
    crops.add_argument('--thresh-size', type=int, default=0, help='smallest remainder that gets its own crop')

    meta = sub.add_parser(
        'meta-info',
        help='meta_info text file of a dataset',
        formatter_class=HelpFormatter,
        description='Write the meta_info file the datasets read: one image path per line relative to its root; '
        'with --paired "<gt path>, <lq path>" per line (Real-ESRGAN\'s paired format), paired by file stem.')
    meta.add_argument('-i', '--input', nargs='+', required=True, help='image folder(s); with --paired: GT LQ')
    meta.add_argument('-o', '--output', required=True, help='meta_info text file to write')
    meta.add_argument(
        '--root',
        nargs='+',
        help='root of each folder, the dataroot_* of the option file '
        '(default: each folder itself)')
    meta.add_argument('--paired', action='store_true', help='GT / LQ pairs')

    from srplugins.tools.dasr_generate import strip_suffix_parser
    strip_suffix_parser(
        sub.add_parser(
            'strip-suffix', help='align paired file names by removing a suffix', formatter_class=HelpFormatter))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'demo':
            root = args.root or (DEMO_GRAY16_ROOT if args.gray16 else DEMO_ROOT)
            build(root, force=args.force, gray16=args.gray16)
        elif args.command == 'make-lr':
            make_lr(args.input, args.output, args.scale, args.mode, args.name_tmpl)
        elif args.command == 'subimages':
            subimages(args.input, args.output, args.crop_size, args.step, args.thresh_size)
        elif args.command == 'meta-info':
            lines = meta_info(args.input, args.output, args.root, args.paired)
            print(f'wrote {len(lines)} lines to {args.output}')
        else:
            from srplugins.tools.dasr_generate import strip_suffix_run
            return strip_suffix_run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f'srplugins-data {args.command}: error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
