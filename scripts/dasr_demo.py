"""Run the whole DASR pipeline (DSN -> generation -> SR) on the embedded demo data, on CPU, in a few minutes.

The demo has no real-world LR set, so it makes a synthetic "real" domain: the x4 bicubic LR images of one half of
the demo training photographs are degraded with a Gaussian blur, Gaussian noise and JPEG compression (a fixed,
seeded pipeline). The other half of the training photographs is the clean HR target domain, so the two domains stay
unpaired, as DASR requires. The held-out validation photographs get the same degradation for the paired checks.

Everything is written under the current folder (``datasets/``, ``experiments/``, ``tb_logger/``), as the option
files' relative paths expect. Steps (each can be skipped with ``--skip``):

1. ``data``: ``datasets/demo`` (``srplugins-data demo``) and ``datasets/demo/dasr/{source_lr,target_hr,val_lr}``;
2. ``dsn``: ``srplugins-train -opt <recipes>/demo/demo_DASR_DSN_x4.yml``;
3. ``generate``: ``srplugins-dasr-generate`` -> ``datasets/demo/dasr/generated/{lq,ddm}``;
4. ``sr``: ``srplugins-train -opt <recipes>/demo/demo_DASR_SR_x4.yml``.

The LPIPS terms need torchvision's AlexNet ImageNet weights ``alexnet-owt-7be5be79.pth`` offline
(``$SRPLUGINS_PRETRAINED_DIR``, ``experiments/pretrained_models/`` or the torch.hub cache). Without that file the
demo warns and switches the LPIPS terms off (``--force_yml train:perceptual_opt=false``) unless ``--require-lpips``.

Usage::

    python scripts/dasr_demo.py                 # everything
    python scripts/dasr_demo.py --only data     # just build the synthetic domain
    python scripts/dasr_demo.py --gray16        # the same on 16-bit single-channel data (datasets/demo_gray16,
                                                # demo_DASR_{DSN,SR}_x4_gray16.yml: the single-channel MRI case)

With ``--gray16`` the synthetic real domain is blurred and noisy but not JPEG-compressed (JPEG has no 16-bit mode;
medical and scientific data are not JPEG-compressed either), and every file stays a 16-bit single-channel PNG.
"""
import argparse
import hashlib
import numpy as np
import os
import os.path as osp
import shutil
import subprocess
import sys

# the checkout holding this script: its srplugins is used (here and in the steps' subprocesses)
PACKAGE_PARENT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, PACKAGE_PARENT)
DEMO = osp.join('datasets', 'demo')
DASR = osp.join(DEMO, 'dasr')
DEMO_GRAY16 = osp.join('datasets', 'demo_gray16')
STEPS = ('data', 'dsn', 'generate', 'sr')


def degrade_real(img, seed):
    """Synthetic real-world degradation of an RGB uint8 ``(H, W, 3)`` LR image: Gaussian blur (sigma 0.8),
    Gaussian noise (sigma 6/255, per channel) and JPEG (quality 50), seeded by ``seed``. Returns uint8 RGB."""
    import cv2
    rng = np.random.default_rng(seed)
    out = cv2.GaussianBlur(img.astype(np.float32) / 255., (0, 0), 0.8)
    out = np.clip(out + rng.normal(0, 6 / 255., out.shape).astype(np.float32), 0, 1)
    out = np.round(out * 255).astype(np.uint8)
    ok, buf = cv2.imencode('.jpg', out[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), 50])
    if not ok:
        raise OSError('JPEG encoding failed')
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def degrade_real_gray16(img, seed):
    """The 16-bit single-channel counterpart of :func:`degrade_real` for a uint16 ``(H, W)`` LR image: Gaussian blur
    (sigma 0.8) and Gaussian noise (sigma 6/255), seeded by ``seed``, no JPEG. Returns uint16 ``(H, W)``."""
    import cv2
    rng = np.random.default_rng(seed)
    out = cv2.GaussianBlur(img.astype(np.float32) / 65535., (0, 0), 0.8)
    out = np.clip(out + rng.normal(0, 6 / 255., out.shape).astype(np.float32), 0, 1)
    return np.round(out * 65535).astype(np.uint16)


def _seed(name):
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)


def build_domains(root='.', gray16=False):
    """Creates (under ``root``, default the current folder) the synthetic source (real LR) / target (HR) domains and
    the degraded validation LR (``gray16``: from the 16-bit single-channel demo data, under
    ``datasets/demo_gray16``)."""
    import cv2

    from srplugins.tools.data import build, write_image
    from srplugins.utils.atomic import atomic_write_bytes
    demo = osp.join(root, DEMO_GRAY16 if gray16 else DEMO)
    build(demo, verbose=False, gray16=gray16)

    def degrade(folder, name, seed):
        if gray16:
            lr = cv2.imread(osp.join(folder, name), cv2.IMREAD_UNCHANGED)
            if lr.dtype != np.uint16 or lr.ndim != 2:
                raise ValueError(f'{osp.join(folder, name)}: expected a 16-bit single-channel PNG of the gray16 demo')
            return degrade_real_gray16(lr, seed)
        lr = cv2.imread(osp.join(folder, name))[..., ::-1]
        return degrade_real(lr, seed)[..., ::-1]

    train_hr = sorted(f for f in os.listdir(osp.join(demo, 'train', 'HR')) if f.endswith('.png'))
    # alternate photos between the domains (the clean HR target gets the first, colourful one: astronaut)
    target, source = train_hr[0::2], train_hr[1::2]
    dasr = osp.join(demo, 'dasr')
    for sub in ('source_lr', 'target_hr', 'val_lr'):
        shutil.rmtree(osp.join(dasr, sub), ignore_errors=True)
        os.makedirs(osp.join(dasr, sub))
    for name in source:
        write_image(
            osp.join(dasr, 'source_lr', name), degrade(osp.join(demo, 'train', 'LR_bicubic', 'X4'), name, _seed(name)))
    for name in target:
        with open(osp.join(demo, 'train', 'HR', name), 'rb') as f:
            atomic_write_bytes(osp.join(dasr, 'target_hr', name), f.read())
    for name in sorted(os.listdir(osp.join(demo, 'val', 'LR_bicubic', 'X4'))):
        write_image(
            osp.join(dasr, 'val_lr', name),
            degrade(osp.join(demo, 'val', 'LR_bicubic', 'X4'), name, _seed('val/' + name)))
    print(f'source (real LR) domain: {source}; target (HR) domain: {target}')


def _run(cmd):
    """Run ``python -m <module> ...`` in the current folder, with this srplugins importable."""
    print('+', ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env['PYTHONPATH'] = PACKAGE_PARENT + os.pathsep + env.get('PYTHONPATH', '')
    subprocess.run(cmd, check=True, env=env)


def recipe(name):
    from srplugins.tools.recipes import find_recipe
    return find_recipe(name)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run the DASR demo pipeline on CPU.')
    parser.add_argument('--only', choices=STEPS, action='append', help='run only these steps')
    parser.add_argument('--skip', choices=STEPS, action='append', default=[], help='skip these steps')
    parser.add_argument(
        '--require-lpips',
        action='store_true',
        help='fail instead of dropping LPIPS when '
        'alexnet-owt-7be5be79.pth is not available offline')
    parser.add_argument(
        '--gray16',
        action='store_true',
        help='16-bit single-channel data (datasets/demo_gray16) and the demo_DASR_*_x4_gray16 recipes')
    args = parser.parse_args(argv)
    suffix = '_gray16' if args.gray16 else ''
    dasr = osp.join(DEMO_GRAY16 if args.gray16 else DEMO, 'dasr')
    steps = [s for s in (args.only or STEPS) if s not in args.skip]
    py = sys.executable
    extra = []
    if 'dsn' in steps or 'sr' in steps:
        from srplugins.utils.pretrained import resolve_pretrained
        try:
            resolve_pretrained('alexnet-owt-7be5be79.pth', 'LPIPS-alex backbone')
        except FileNotFoundError as err:
            if args.require_lpips:
                raise
            print(f'WARNING: {err}\nRunning the demo without the LPIPS terms.', flush=True)
            extra = ['--force_yml', 'train:perceptual_opt=false']
    if 'data' in steps:
        build_domains(gray16=args.gray16)
    if 'dsn' in steps:
        _run([py, '-m', 'srplugins.train', '-opt', recipe('demo_DASR_DSN_x4' + suffix)] + extra)
    if 'generate' in steps:
        out = osp.join(dasr, 'generated')
        shutil.rmtree(out, ignore_errors=True)
        _run([
            py, '-m', 'srplugins.tools.dasr_generate', '--checkpoint',
            f'experiments/demo_DASR_DSN_x4{suffix}/models/dsn_latest.pth', '--hr',
            osp.join(dasr, 'target_hr'), '--out', out, '--device', 'cpu'
        ])
    if 'sr' in steps:
        _run([py, '-m', 'srplugins.train', '-opt', recipe('demo_DASR_SR_x4' + suffix)] + extra)


if __name__ == '__main__':
    sys.exit(main())
