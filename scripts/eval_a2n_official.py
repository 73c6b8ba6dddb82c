"""Evaluate A2N weights (the authors' ``aan_x{2,3,4}.pt`` or a BasicSR checkpoint) on a folder of HR images.

Protocol (docs/A2N.md; the A2N paper's evaluation): mod-crop each HR image to a multiple of the scale, make the LR
image with MATLAB-style bicubic, run ``A2N`` (which scales [0, 1] input to the official 0..255 internally), round
and clip SR to uint8, and score PSNR / SSIM with basicsr's ``calculate_psnr`` / ``calculate_ssim`` on BGR uint8
images with ``crop_border=scale`` and ``test_y_channel=True``. The bicubic baseline (MATLAB-style bicubic
upsampling of the same LR) is reported alongside.

LR modes:
    basicsr-round  basicsr.utils.matlab_functions.imresize on float [0, 1], then round to uint8 (default).
    basicsr-float  the same, LR kept as float (not a real image file; reference only).
    matlab-uint8   emulates MATLAB imresize on uint8 input: resize along H, round and clip to uint8, resize along W,
                   round and clip (this is how the EDSR benchmark LR PNGs were produced).
    files          read LR images from --lr (same file names as the HR images, or with an ``x{scale}`` suffix).

Example:
    python scripts/eval_a2n_official.py --weights experiments/pretrained_models/A2N/aan_x2.pt --scale 2 \\
        --hr datasets/benchmark/Set5/HR --save-lr datasets/benchmark/Set5/LR_bicubic/X2
"""
import argparse
import glob
import numpy as np
import os
import os.path as osp
import sys
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# isort: off
import srplugins  # noqa: E402,F401  (applies the stack fixes before basicsr is imported, registers A2N)
from basicsr.metrics import calculate_psnr, calculate_ssim  # noqa: E402
from basicsr.utils.matlab_functions import imresize  # noqa: E402

from srplugins.tools.data import downscale  # noqa: E402
# isort: on

IMG_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff')


def read_rgb_uint8(path):
    """Read an image file as RGB uint8 (H, W, 3)."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'Cannot read image {path!r}.')
    return img[:, :, ::-1].copy()


def make_lr(hr_rgb_uint8, scale, mode):
    """Downscale a mod-cropped HR image (RGB uint8) by ``scale``; returns float32 RGB in [0, 1].

    ``matlab-uint8`` / ``basicsr-round``: :func:`srplugins.tools.data.downscale` (the ``srplugins-data`` LR maker);
    ``basicsr-float``: basicsr's ``imresize`` without rounding.
    """
    if mode in ('matlab-uint8', 'basicsr-round'):
        return downscale(hr_rgb_uint8, scale, mode).astype(np.float32) / 255.
    return imresize(hr_rgb_uint8.astype(np.float32) / 255., 1 / scale).astype(np.float32)


def check_scale_in_name(path, scale):
    """Refuse a checkpoint whose file name says ``_x{N}`` with N != scale (x2 and x3 files have equal shapes).

    The name is parsed by :func:`srplugins.compat.scale_from_filename`: a name with two different scales is refused.
    """
    from srplugins.compat import scale_from_filename
    found = scale_from_filename(path)
    if found is not None and found != scale:
        raise ValueError(f'Checkpoint {path!r} is named for x{found} but --scale is {scale}; '
                         'x2 and x3 A2N weights have identical shapes, so a wrong scale would load silently.')


def load_a2n(weights, scale, non_attention_kernel, device):
    """Build A2N from ``weights`` through :mod:`srplugins.checkpoints` (the authors' raw state dict, a BasicSR
    ``{'params': ...}`` file or a training checkpoint recording its ``network_opt``) and load it strictly.

    The A2N family reads every hyper-parameter from the shapes except x2 vs x3, which comes from ``scale`` (checked
    against a ``_x{N}`` in the file name); ``non_attention_kernel`` (1 = A2N-M) must agree with the weights.
    """
    from srplugins import checkpoints
    check_scale_in_name(weights, scale)
    net, info = checkpoints.build_network(weights, scale=scale, option='--weights')
    if info.arch_type != 'A2N':
        raise ValueError(f'--weights {weights}: holds {info.description} ({info.arch_type}), not A2N.')
    found_kernel = info.arch_opt.get('non_attention_kernel', 3)
    if found_kernel != non_attention_kernel:
        raise ValueError(f'--weights {weights}: the non-attention branch is {found_kernel}x{found_kernel} but '
                         f'--non-attention-kernel is {non_attention_kernel} (1 = A2N-M, 3 = A2N).')
    return net.eval().to(device)


def write_png(img_bgr_uint8, path):
    """Encode with OpenCV and write atomically (srplugins.utils.atomic)."""
    import cv2

    from srplugins.utils.atomic import atomic_write_bytes
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    ok, buf = cv2.imencode(osp.splitext(path)[1] or '.png', np.ascontiguousarray(img_bgr_uint8))
    if not ok:
        raise OSError(f'Could not encode {path!r}.')
    atomic_write_bytes(path, buf.tobytes())


def find_lr_file(lr_dir, name, scale):
    stem, ext = osp.splitext(name)
    for candidate in (name, f'{stem}x{scale}{ext}', f'{stem}_x{scale}{ext}'):
        if osp.isfile(osp.join(lr_dir, candidate)):
            return osp.join(lr_dir, candidate)
    raise FileNotFoundError(f'No LR image for {name!r} in {lr_dir!r} (tried {name}, {stem}x{scale}{ext}, '
                            f'{stem}_x{scale}{ext}).')


def to_bgr_uint8(rgb01):
    return np.clip(np.round(rgb01 * 255.), 0, 255).astype(np.uint8)[:, :, ::-1]


def score(sr_bgr, hr_bgr, scale):
    return (calculate_psnr(sr_bgr, hr_bgr, crop_border=scale,
                           test_y_channel=True), calculate_ssim(sr_bgr, hr_bgr, crop_border=scale, test_y_channel=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', required=True, help='aan_x{s}.pt (official) or a BasicSR net_g_*.pth')
    parser.add_argument('--scale', type=int, required=True, choices=(2, 3, 4))
    parser.add_argument('--hr', required=True, help='folder of HR images (e.g. Set5 HR)')
    parser.add_argument(
        '--lr-mode', default='basicsr-round', choices=('basicsr-round', 'basicsr-float', 'matlab-uint8', 'files'))
    parser.add_argument('--lr', help='LR folder, with --lr-mode files')
    parser.add_argument('--non-attention-kernel', type=int, default=3, choices=(1, 3), help='1 for A2N-M')
    parser.add_argument(
        '--save-lr',
        help='write the LR images here as <stem>x<scale>.png (EDSR benchmark layout, '
        'filename_tmpl {}x<scale> in options/test/A2N)')
    parser.add_argument('--save-sr', help='write the SR images here')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--precision',
        default='fp32',
        choices=('fp32', 'fp16', 'bf16'),
        help='autocast precision of the network (fp16 needs CUDA; bf16 works on the CPU too)')
    parser.add_argument('--ensemble', action='store_true', help='x8 self-ensemble (the authors\' --self_ensemble)')
    args = parser.parse_args(argv)
    if args.lr_mode == 'files' and not args.lr:
        parser.error('--lr-mode files needs --lr')
    if not osp.isfile(args.weights):
        raise FileNotFoundError(f'--weights {args.weights!r} does not exist (the authors\' files are '
                                'code/experiment/model/aan_x{2,3,4}.pt in github.com/haoyuc/A2N).')
    hr_paths = sorted(p for p in glob.glob(osp.join(args.hr, '*')) if p.lower().endswith(IMG_EXTENSIONS))
    if not hr_paths:
        raise FileNotFoundError(f'No images in --hr {args.hr!r}.')

    from srplugins.inference import ensemble_forward
    from srplugins.inference.images import autocast_context, check_precision
    check_precision(args.precision, args.device)
    net = load_a2n(args.weights, args.scale, args.non_attention_kernel, args.device)
    s = args.scale
    rows = []
    for path in hr_paths:
        name = osp.basename(path)
        hr = read_rgb_uint8(path)
        hr = hr[:hr.shape[0] - hr.shape[0] % s, :hr.shape[1] - hr.shape[1] % s]
        if args.lr_mode == 'files':
            lr = read_rgb_uint8(find_lr_file(args.lr, name, s)).astype(np.float32) / 255.
        else:
            lr = make_lr(hr, s, args.lr_mode)
        if lr.shape[0] * s != hr.shape[0] or lr.shape[1] * s != hr.shape[1]:
            raise ValueError(f'{name}: LR {lr.shape[:2]} x{s} does not match the mod-cropped HR {hr.shape[:2]}.')
        if args.save_lr:
            stem, ext = osp.splitext(name)
            write_png(to_bgr_uint8(lr), osp.join(args.save_lr, f'{stem}x{s}.png'))
        with torch.no_grad(), autocast_context(args.precision, args.device):
            inp = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None].to(args.device)
            out = ensemble_forward(net, inp) if args.ensemble else net(inp)
            sr = out[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
        sr_bgr, hr_bgr = to_bgr_uint8(sr), hr[:, :, ::-1]
        if args.save_sr:
            write_png(sr_bgr, osp.join(args.save_sr, name))
        bic_bgr = to_bgr_uint8(np.clip(imresize(lr, s), 0, 1))
        rows.append((name, *score(sr_bgr, hr_bgr, s), *score(bic_bgr, hr_bgr, s)))
        print(f'{name:24s} A2N {rows[-1][1]:.4f} dB / {rows[-1][2]:.4f}   bicubic {rows[-1][3]:.4f} dB / '
              f'{rows[-1][4]:.4f}')
    mean = np.mean([r[1:] for r in rows], axis=0)
    print(f'Average x{s} ({len(rows)} images, LR {args.lr_mode}, {args.precision}'
          f'{", ensemble" if args.ensemble else ""}, Y channel, crop {s}): A2N PSNR {mean[0]:.4f} dB '
          f'SSIM {mean[1]:.4f} | bicubic PSNR {mean[2]:.4f} dB SSIM {mean[3]:.4f}')
    return mean


if __name__ == '__main__':
    main()
