#!/usr/bin/env python
"""Build the embedded demo dataset ``datasets/demo`` from scikit-image's bundled sample photographs.

Nothing is downloaded: the photographs ship inside the scikit-image wheel. Layout (PNG, BGR on disk as basicsr
reads it)::

    datasets/demo/train/HR/<name>.png               training images (sides divisible by 12)
    datasets/demo/train/LR_bicubic/X{2,3,4}/<name>.png
    datasets/demo/val/HR/<name>.png                 held-out images, never seen in training
    datasets/demo/val/LR_bicubic/X{2,3,4}/<name>.png

LR images are made from HR by basicsr's MATLAB-style bicubic ``imresize`` (antialiased), rounded to uint8, as the
DIV2K/benchmark LR sets are. The script is idempotent: files that exist with the expected content are left alone
(``--force`` rebuilds).

Usage::

    python scripts/make_demo_data.py [--root datasets/demo] [--force]
"""
import argparse
import hashlib
import json
import numpy as np
import os
import os.path as osp
import sys

# (skimage.data function, target folder). Held-out validation photographs differ from the training ones.
TRAIN_IMAGES = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry')
VAL_IMAGES = ('chelsea', 'coffee')
SCALES = (2, 3, 4)
MULTIPLE = 12  # divisible by 2, 3 and 4


def load_sample(name):
    """RGB uint8 HxWx3 array of a bundled scikit-image photograph, cropped to sides divisible by 12."""
    from skimage import data
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=2)
    img = img[..., :3]
    h, w = (img.shape[0] // MULTIPLE) * MULTIPLE, (img.shape[1] // MULTIPLE) * MULTIPLE
    return np.ascontiguousarray(img[:h, :w])


def bicubic_downscale(img_rgb_uint8, scale):
    """MATLAB-style bicubic downscale (basicsr ``imresize``), rounded to uint8."""
    import srplugins  # noqa: F401  (stack fixes before basicsr is imported: this import must stay first)
    # isort: split
    from basicsr.utils.matlab_functions import imresize
    lr = imresize(img_rgb_uint8.astype(np.float64) / 255., 1. / scale)
    return np.clip(np.round(lr * 255.), 0, 255).astype(np.uint8)


def _write_png(path, img_rgb):
    import cv2
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, img_rgb[..., ::-1]):
        raise OSError(f'could not write {path}')


def _digest(img):
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


def build(root='datasets/demo', force=False, verbose=True):
    """Create (or verify) the demo dataset under ``root``. Returns the absolute root."""
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
            key = f'{split}/{name}'
            outputs = {osp.join(root, split, 'HR', f'{name}.png'): None}
            outputs.update({osp.join(root, split, 'LR_bicubic', f'X{s}', f'{name}.png'): s for s in SCALES})
            digest = _digest(hr)
            if not force and manifest.get(key) == digest and all(osp.isfile(p) for p in outputs):
                continue
            for path, scale in outputs.items():
                _write_png(path, hr if scale is None else bicubic_downscale(hr, scale))
            manifest[key] = digest
            changed = True
            if verbose:
                print(f'wrote {key}: HR {hr.shape[1]}x{hr.shape[0]} and LR x{"/x".join(map(str, SCALES))}')
    if changed:
        with open(manifest_path, 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
    elif verbose:
        print(f'{root} is up to date')
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--force', action='store_true', help='rebuild every file')
    args = parser.parse_args(argv)
    build(args.root, force=args.force)
    return 0


if __name__ == '__main__':
    sys.exit(main())
