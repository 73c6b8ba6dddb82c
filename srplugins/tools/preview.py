"""``srplugins-preview``: what a degradation pipeline does to your photo.

``srplugins-preview METHOD -i IMAGE -n N -o SHEET.png`` draws ``N`` seeded samples of the degradation ``METHOD`` of a
square crop of ``IMAGE`` and writes one PNG sheet: one row per sample, LQ (nearest-upscaled to the HQ size) | HQ,
each row captioned with the sampled parameters; the same parameters go to ``SHEET.json`` beside the sheet.

Methods:
    ``bsrgan``       BSRGAN (``srplugins.ops.bsrgan_degradation.sample_bsrgan_plan`` + ``apply_plan``, the
                     training degradation of ``BSRGANDataset``): op order, blur kernels, resize modes, noise, JPEG.
    ``bsrgan_plus``  BSRGAN+ (``sample_bsrgan_plus_plan``).
    ``realesrgan``   Real-ESRGAN's second-order degradation as basicsr's ``RealESRGANModel.feed_data`` runs it (same
                     primitives: ``filter2D``, ``F.interpolate``, Gaussian / Poisson noise, ``DiffJPEG``, final sinc),
                     with the options of a Real-ESRGAN recipe (``--opt``, default the shipped
                     ``train_RealESRNet_x4plus.yml``); each parameter drawn is recorded. Blur kernels are described by
                     type, size and effective standard deviation (square root of half the kernel's second moment).
    ``dsn``          a trained DASR down-sampling network (``--checkpoint``, ``models/dsn_<iter>.pth`` or an official
                     DSN ``.tar``); deterministic, so the rows differ only by their (seeded) crop position.

Sample ``i`` uses seed ``--seed + i``, so a row can be reproduced alone.
"""
import argparse
import json
import math
import numpy as np
import os
import os.path as osp
import sys

from srplugins.tools._cli import HelpFormatter
from srplugins.utils.atomic import atomic_write

METHODS = ('bsrgan', 'bsrgan_plus', 'realesrgan', 'dsn')
_CV2_INTERP = {1: 'bilinear', 2: 'bicubic', 3: 'area', 0: 'nearest'}  # cv2.INTER_* codes


def read_rgb(path):
    """``IMAGE`` as float32 ``(H, W, C)`` in [0, 1] (RGB, or one channel for grey files), at its full precision."""
    import cv2
    raw = np.fromfile(str(path), dtype=np.uint8) if osp.isfile(path) else np.zeros(0, np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise FileNotFoundError(f'-i {path}: not a readable image file')
    peak = {np.dtype(np.uint8): 255., np.dtype(np.uint16): 65535.}.get(img.dtype, 1.)
    img = img.astype(np.float32) / peak
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] in (2, 4):
        img = img[..., :-1]
    if img.shape[2] == 3:
        img = img[..., ::-1]
    return np.ascontiguousarray(np.clip(img, 0, 1))


def square_crop(img, size, multiple, rng=None):
    """A ``size`` square (rounded down to ``multiple``, at most the short side) of ``img``: centred, or at a position
    drawn from ``rng``. Returns the crop and its top-left corner."""
    side = min(size, img.shape[0], img.shape[1])
    side -= side % multiple
    if side <= 0:
        raise ValueError(f'the image ({img.shape[1]}x{img.shape[0]}) is smaller than the scale multiple {multiple}')
    max_y, max_x = img.shape[0] - side, img.shape[1] - side
    if rng is None:
        y, x = max_y // 2, max_x // 2
    else:
        y, x = int(rng.integers(0, max_y + 1)), int(rng.integers(0, max_x + 1))
    return np.ascontiguousarray(img[y:y + side, x:x + side]), (y, x)


def kernel_std(kernel):
    """Effective standard deviation of a blur kernel: ``sqrt((var_x + var_y) / 2)`` of its normalised weights."""
    k = np.asarray(kernel, np.float64)
    k = k / k.sum()
    ys, xs = np.mgrid[:k.shape[0], :k.shape[1]]
    my, mx = (k * ys).sum(), (k * xs).sum()
    return float(math.sqrt(((k * (ys - my)**2).sum() + (k * (xs - mx)**2).sum()) / 2))


def describe_bsrgan_step(name, params):
    """A JSON-able dict of one step of a BSRGAN plan (kernels summarised by size and effective std)."""
    if name in ('blur', 'shifted_nearest'):
        out = {
            'op': name,
            'kernel_size': int(params['kernel'].shape[0]),
            'kernel_std': round(kernel_std(params['kernel']), 3)
        }
        if name == 'shifted_nearest':
            out['sf'] = int(params['sf'])
        return out
    if name == 'resize':
        return {'op': 'resize', 'size_wh': [int(v) for v in params['size']], 'mode': _CV2_INTERP[params['interp']]}
    if name == 'imresize_matlab':
        return {'op': 'resize', 'scale': params['scale'], 'mode': 'matlab-bicubic'}
    if name in ('gaussian_noise', 'speckle_noise'):
        return {
            'op':
            name,
            'mode':
            params['mode'],
            'sigma_255':
            round(float(params['sigma'] if params['cov'] is None else np.sqrt(np.trace(params['cov']) / 3)) * 255, 2)
        }
    if name == 'poisson_noise':
        return {'op': name, 'vals': round(float(params['vals']), 1), 'gray': bool(params['gray'])}
    if name == 'jpeg':
        return {'op': 'jpeg', 'quality': int(params['quality'])}
    return {'op': name}


def _caption_step(step):
    op = step['op']
    if op in ('blur', 'shifted_nearest'):
        return f'{op} {step["kernel_size"]}px std {step["kernel_std"]:.2f}'
    if op == 'resize':
        size = f'{step["size_wh"][0]}x{step["size_wh"][1]}' if 'size_wh' in step else f'x{step["scale"]:.2f}'
        return f'resize {size} {step["mode"]}'
    if op in ('gaussian_noise', 'speckle_noise'):
        return f'{op.split("_")[0]} noise {step["mode"]} {step["sigma_255"]:.1f}/255'
    if op == 'poisson_noise':
        return f'poisson {"gray" if step["gray"] else "color"} x{step["vals"]:.0f}'
    if op == 'jpeg':
        return f'JPEG q{step["quality"]}'
    if op == 'sinc':
        return f'sinc {step["kernel_size"]}px' if step.get('kernel_size') else 'no sinc'
    return op


def sample_bsrgan(img, seed, scale, plus=False):
    """One BSRGAN / BSRGAN+ sample of the square ``img`` (RGB float32): ``(lq, hq, params)``."""
    from srplugins.ops import bsrgan_degradation as bd
    rng = np.random.default_rng(seed)
    side = img.shape[0]
    sampler = bd.sample_bsrgan_plus_plan if plus else bd.sample_bsrgan_plan
    plan = sampler(rng, scale, img.shape, side // scale)
    lq, hq = bd.apply_plan(img, plan, rng)
    steps = [describe_bsrgan_step(n, p) for n, p in plan['steps'] if n not in ('clip', 'isp')]
    params = {'seed': seed, 'scale': scale, 'op_order': [int(o) for o in plan['order']], 'steps': steps}
    if not plus:
        params['prestep_half'] = bool(plan['prestep'])
    return lq, hq, params


def realesrgan_options(opt_path=None):
    """The degradation options of a Real-ESRGAN option file: top-level second-order keys + ``datasets.train``."""
    import yaml
    if opt_path is None:
        opt_path = osp.join(
            osp.dirname(osp.dirname(osp.abspath(__file__))), 'recipes', 'train', 'RealESRGAN',
            'train_RealESRNet_x4plus.yml')
    with open(opt_path, encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    try:
        merged = dict(opt['datasets']['train'])
    except (KeyError, TypeError):
        raise ValueError(f'--opt {opt_path}: expected a Real-ESRGAN option file with datasets.train')
    merged.update({k: v for k, v in opt.items() if k not in ('datasets', )})
    return merged


def _realesrgan_kernel(opt, suffix):
    """One blur kernel as ``RealESRGANGTDataset`` draws it, with its type recorded."""
    import random
    from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels
    max_size = opt.get('blur_kernel_size' + suffix, 21)
    size = random.choice(range(7, max_size + 1, 2))
    if np.random.uniform() < opt['sinc_prob' + suffix]:
        omega = np.random.uniform(np.pi / 3, np.pi) if size < 13 else np.random.uniform(np.pi / 5, np.pi)
        kernel, kind = circular_lowpass_kernel(omega, size, pad_to=False), 'sinc'
    else:
        kind = random.choices(opt['kernel_list' + suffix], opt['kernel_prob' + suffix])[0]
        sigma = opt['blur_sigma' + suffix]
        kernel = random_mixed_kernels([kind], [1],
                                      size,
                                      sigma,
                                      sigma, [-math.pi, math.pi],
                                      opt['betag_range' + suffix],
                                      opt['betap_range' + suffix],
                                      noise_range=None)
    pad = (max_size - size) // 2
    kernel = np.pad(kernel, ((pad, pad), (pad, pad)))
    return kernel, {'op': 'blur', 'kind': kind, 'kernel_size': size, 'kernel_std': round(kernel_std(kernel), 3)}


def _caption_blur(step):
    return f'blur {step["kind"]} {step["kernel_size"]}px std {step["kernel_std"]:.2f}'


def sample_realesrgan(img, seed, scale, opt):
    """One sample of Real-ESRGAN's second-order degradation (basicsr ``RealESRGANModel.feed_data`` order and
    primitives) of the square RGB ``img``: ``(lq, hq, params)``; every random draw is recorded in ``params``."""
    import torch
    with torch.no_grad():
        return _sample_realesrgan(img, seed, scale, opt)


def _sample_realesrgan(img, seed, scale, opt):
    import random
    import torch
    from torch.nn import functional as F

    import srplugins  # noqa: F401  (stack fixes before basicsr)
    # isort: split
    from basicsr.data.degradations import add_gaussian_noise_pt, add_poisson_noise_pt
    from basicsr.utils import DiffJPEG
    from basicsr.utils.img_process_util import filter2D
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    jpeger = DiffJPEG(differentiable=False)
    gt = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].float()
    ori_h, ori_w = gt.shape[2:]
    steps = []
    kernels = [_realesrgan_kernel(opt, ''), _realesrgan_kernel(opt, '2')]

    def resize_noise_jpeg(out, order):
        sfx = '' if order == 1 else '2'
        updown = random.choices(['up', 'down', 'keep'], opt['resize_prob' + sfx])[0]
        factor = {
            'up': lambda: np.random.uniform(1, opt['resize_range' + sfx][1]),
            'down': lambda: np.random.uniform(opt['resize_range' + sfx][0], 1),
            'keep': lambda: 1.
        }[updown]()
        mode = random.choice(['area', 'bilinear', 'bicubic'])
        if order == 1:
            out = F.interpolate(out, scale_factor=factor, mode=mode)
        else:
            out = F.interpolate(out, size=(int(ori_h / scale * factor), int(ori_w / scale * factor)), mode=mode)
        steps.append({
            'op': 'resize',
            'size_wh': [out.shape[3], out.shape[2]],
            'mode': mode,
            'factor': round(factor, 3)
        })
        gray = np.random.uniform() < opt['gray_noise_prob' + sfx]
        if np.random.uniform() < opt['gaussian_noise_prob' + sfx]:
            sigma = float(np.random.uniform(*opt['noise_range' + sfx]))
            out = add_gaussian_noise_pt(out, sigma=sigma, gray_noise=float(gray), clip=True)
            steps.append({'op': 'gaussian_noise', 'mode': 'gray' if gray else 'color', 'sigma_255': round(sigma, 2)})
        else:
            pscale = float(np.random.uniform(*opt['poisson_scale_range' + sfx]))
            out = add_poisson_noise_pt(out, scale=pscale, gray_noise=float(gray), clip=True)
            steps.append({'op': 'poisson_noise', 'gray': bool(gray), 'vals': round(pscale, 3)})
        return out

    def jpeg(out, key):
        quality = float(np.random.uniform(*opt[key]))
        steps.append({'op': 'jpeg', 'quality': int(round(quality))})
        return jpeger(torch.clamp(out, 0, 1).contiguous(), quality=out.new_tensor([quality]))

    out = filter2D(gt, torch.from_numpy(kernels[0][0]).float()[None])
    steps.append(kernels[0][1])
    out = jpeg(resize_noise_jpeg(out, 1), 'jpeg_range')
    if np.random.uniform() < opt['second_blur_prob']:
        out = filter2D(out, torch.from_numpy(kernels[1][0]).float()[None])
        steps.append(kernels[1][1])
    out = resize_noise_jpeg(out, 2)
    from srplugins.data.realesrgan_dataset import sample_final_sinc_kernel
    sinc = sample_final_sinc_kernel(opt['final_sinc_prob'])
    sinc_size = int((np.abs(sinc).sum(axis=0) > 0).sum())
    sinc_step = {'op': 'sinc', 'kernel_size': sinc_size if sinc_size > 1 else 0}
    mode = random.choice(['area', 'bilinear', 'bicubic'])
    size = (ori_h // scale, ori_w // scale)
    if np.random.uniform() < 0.5:
        out = filter2D(F.interpolate(out, size=size, mode=mode), torch.from_numpy(sinc)[None])
        steps += [{'op': 'resize', 'size_wh': [size[1], size[0]], 'mode': mode}, sinc_step]
        out = jpeg(out, 'jpeg_range2')
    else:
        out = jpeg(out, 'jpeg_range2')
        out = filter2D(F.interpolate(out, size=size, mode=mode), torch.from_numpy(sinc)[None])
        steps += [{'op': 'resize', 'size_wh': [size[1], size[0]], 'mode': mode}, sinc_step]
    lq = (torch.clamp(out * 255.0, 0, 255).round() / 255.)[0].numpy().transpose(1, 2, 0)
    return lq, img, {'seed': seed, 'scale': scale, 'steps': steps}


def build_dsn(checkpoint):
    from srplugins.tools.dasr_generate import _load_dsn
    net_g, _, info = _load_dsn(checkpoint)
    return net_g.eval(), info


def sample_dsn(img_full, seed, size, net_g, scale):
    """The DSN output for a seeded ``size`` crop of the image: ``(lq, hq, params)``."""
    import torch
    hq, (y, x) = square_crop(img_full, size, scale, np.random.default_rng(seed))
    channels = net_g.block_input[0].in_channels
    if hq.shape[2] != channels:
        if hq.shape[2] == 1 and channels == 3:
            hq = np.repeat(hq, 3, axis=2)
        else:
            raise ValueError(f'the image has {hq.shape[2]} channels, the DSN expects {channels}')
    with torch.no_grad():
        lq = net_g(torch.from_numpy(hq.transpose(2, 0, 1).copy())[None].float())
    lq = lq[0].clamp(0, 1).mul(255).round().div(255).numpy().transpose(1, 2, 0)
    return lq, hq, {'seed': seed, 'scale': scale, 'steps': [{'op': 'dsn', 'crop_yx': [y, x]}]}


def caption(params):
    parts = [(_caption_blur(s) if s['op'] == 'blur' and 'kind' in s else _caption_step(s)) for s in params['steps']]
    if params['steps'] and params['steps'][0]['op'] == 'dsn':
        y, x = params['steps'][0]['crop_yx']
        parts = [f'DSN (deterministic), crop at y={y}, x={x}']
    head = f'seed {params["seed"]}'
    if 'op_order' in params:
        head += f', op order {params["op_order"]}'
    if params.get('prestep_half'):
        head += ', x1/2 first'
    lines, line = [head + ':'], ''
    for part in parts:
        if len(line) + len(part) > 90:
            lines.append(line)
            line = ''
        line += ('' if not line else ' -> ') + part
    return '\n'.join(lines + [line])


def write_sheet(rows, path):
    """One PNG: a row per sample (LQ nearest-upscaled | HQ) with its caption; written atomically."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(rows)
    fig, axes = plt.subplots(n, 2, figsize=(7, 4.3 * n), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.25 / n, bottom=0.45 / n, wspace=0.03, hspace=0.45)
    for r, (lq, hq, params) in enumerate(rows):
        factor_y, factor_x = hq.shape[0] / lq.shape[0], hq.shape[1] / lq.shape[1]
        up = np.repeat(np.repeat(lq, int(math.ceil(factor_y)), axis=0), int(math.ceil(factor_x)), axis=1)
        up = up[:hq.shape[0], :hq.shape[1]]
        for c, (img, title) in enumerate(((up, f'LQ {lq.shape[1]}x{lq.shape[0]} (nearest x{params["scale"]})'),
                                          (hq, f'HQ {hq.shape[1]}x{hq.shape[0]}'))):
            ax = axes[r][c]
            ax.imshow(
                img[..., 0] if img.shape[2] == 1 else img,
                cmap='gray' if img.shape[2] == 1 else None,
                vmin=0,
                vmax=1,
                interpolation='nearest')
            ax.set_title(title, fontsize=8)
            ax.axis('off')
        axes[r][0].text(
            0, -0.08, caption(params), transform=axes[r][0].transAxes, fontsize=7, va='top', family='monospace')
    with atomic_write(path) as f:
        fig.savefig(f, format='png', dpi=100)
    plt.close(fig)


def preview(method, image, n, out, seed=0, scale=4, size=256, checkpoint=None, opt=None):
    """Write the sheet ``out`` and ``<out stem>.json``; returns the list of parameter dicts."""
    if method not in METHODS:
        raise ValueError(f'METHOD must be one of {METHODS}, got {method!r}')
    if n < 1:
        raise ValueError(f'-n must be at least 1, got {n}')
    if (method == 'dsn') != (checkpoint is not None):
        raise ValueError('--checkpoint is required for dsn and only used by dsn')
    img = read_rgb(image)
    rows = []
    if method == 'dsn':
        net_g, info = build_dsn(checkpoint)
        scale = int(info['network_g'].get('scale', 4))
        for i in range(n):
            rows.append(sample_dsn(img, seed + i, size, net_g, scale))
    else:
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        hq, _ = square_crop(img, size, scale)
        if method == 'realesrgan':
            options = realesrgan_options(opt)
        for i in range(n):
            if method == 'realesrgan':
                rows.append(sample_realesrgan(hq, seed + i, scale, options))
            else:
                rows.append(sample_bsrgan(hq, seed + i, scale, plus=method == 'bsrgan_plus'))
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    write_sheet(rows, out)
    params = [dict(p, method=method, image=osp.abspath(image)) for _, _, p in rows]
    with atomic_write(osp.splitext(out)[0] + '.json', 'w') as f:
        json.dump(params, f, indent=1)
    return params


def build_parser():
    parser = argparse.ArgumentParser(
        prog='srplugins-preview',
        description='Preview a degradation pipeline on your photo: N seeded samples as one PNG sheet (LQ | HQ per '
        'row, captioned with the sampled parameters) and the parameters as JSON beside it.',
        formatter_class=HelpFormatter)
    parser.add_argument('method', choices=METHODS, help='degradation pipeline')
    parser.add_argument('-i', '--input', required=True, help='image file')
    parser.add_argument('-n', type=int, default=4, help='number of samples')
    parser.add_argument('-o', '--output', default='preview.png', help='sheet (PNG); the JSON goes beside it')
    parser.add_argument('--seed', type=int, default=0, help='seed of the first sample (sample i: seed + i)')
    parser.add_argument('--scale', type=int, default=4, choices=(2, 3, 4), help='scale (dsn: read from the file)')
    parser.add_argument('--size', type=int, default=256, help='side of the square HQ crop')
    parser.add_argument('--checkpoint', help='dsn only: models/dsn_<iter>.pth or an official DSN .tar')
    parser.add_argument(
        '--opt',
        help='realesrgan only: option file with the degradation settings (default: '
        'the shipped train_RealESRNet_x4plus.yml)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        params = preview(args.method, args.input, args.n, args.output, args.seed, args.scale, args.size,
                         args.checkpoint, args.opt)
    except (ValueError, FileNotFoundError) as err:
        print(f'srplugins-preview: error: {err}', file=sys.stderr)
        return 2
    print(f'wrote {args.output} and {osp.splitext(args.output)[0]}.json ({len(params)} samples)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
