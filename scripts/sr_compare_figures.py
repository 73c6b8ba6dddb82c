"""Super-resolve every image of a folder and write, per image, the SR result and a side-by-side figure for human
rating (e.g. "save the SR outputs of every Set5 image for human evaluation").

Per LR image ``<stem>`` the output folder gets:

* ``<stem>_<name>.png``: the SR image alone (what raters score);
* ``<stem>_compare.png``: LR upscaled by MATLAB-style bicubic | SR | HR (when an HR folder is given), each panel with a
  caption; with HR, the captions carry PSNR / SSIM (basicsr, Y channel, crop border = scale, SR rounded to uint8);

and, with HR, ``metrics.csv`` (per image and mean, bicubic and SR) and ``metrics.md``.

HR files are matched to LR files by stem, ignoring a trailing ``x<scale>`` of the LR name (``babyx4.png`` ->
``baby.png``). The network comes from a BasicSR option file (``network_g`` + ``path.pretrain_network_g``, or
``--model_path``) and runs in eval mode (BatchNorm with running statistics). A generator built with
``output_range: [-1, 1]`` (tanh SRResNet) is mapped back to [0, 1].

Examples::

    python scripts/sr_compare_figures.py --opt options/test/SRGAN/test_SRGAN_x4_VGG54.yml \\
        --input datasets/benchmark/Set5/LR_bicubic/X4 --gt datasets/benchmark/Set5/HR \\
        -o results/human_eval/Set5 --name SRGAN
    python scripts/sr_compare_figures.py --opt options/demo/demo_SRGAN_x4.yml \\
        --model_path experiments/demo_SRGAN_x4/models/net_g_latest.pth \\
        --input datasets/demo/val/LR_bicubic/X4 --gt datasets/demo/val/HR -o results/demo_SRGAN_x4_compare
"""
import argparse
import csv
import numpy as np
import os
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from srplugins.tools._cli import HelpFormatter  # noqa: E402

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
CAPTION_H = 44
GAP = 8


def load_network(opt, model_path=None, device=None):
    """Upscaler for the option file's ``network_g`` (``srplugins.inference.load_upscaler``: a [-1, 1] generator
    gets its output mapped to [0, 1]; a checkpoint whose name says another scale than the option, weights that do not
    fit ``network_g`` or an unregistered ``type`` are ValueErrors naming the option file and the checkpoint)."""
    from srplugins.inference import load_upscaler
    return load_upscaler(model_path=model_path, opt=opt, device=device, model_path_flag='--model_path')


def match_hr(lr_name, hr_names, scale):
    """HR file name for an LR file name (same stem, or the stem without a trailing ``x<scale>``), else None."""
    stem = osp.splitext(lr_name)[0]
    by_stem = {osp.splitext(n)[0]: n for n in hr_names}
    return by_stem.get(stem) or by_stem.get(re.sub(rf'x{scale}$', '', stem))


def caption_panel(img, lines):
    """Put a white caption bar with one or two text lines above a BGR uint8 image."""
    import cv2
    bar = np.full((CAPTION_H, img.shape[1], 3), 255, np.uint8)
    font_scale = max(0.35, min(0.6, img.shape[1] / 600))
    for i, text in enumerate(lines[:2]):
        cv2.putText(bar, text, (4, 18 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def side_by_side(panels):
    """Concatenate captioned panels horizontally (white gaps; shorter panels padded at the bottom)."""
    height = max(p.shape[0] for p in panels)
    row = []
    for i, p in enumerate(panels):
        if p.shape[0] < height:
            p = np.concatenate([p, np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)], axis=0)
        if i:
            row.append(np.full((height, GAP, 3), 255, np.uint8))
        row.append(p)
    return np.concatenate(row, axis=1)


def process_folder(upscaler, input_dir, output_dir, gt_dir=None, name='SR', tile=0):
    """Run the network on every image of ``input_dir``; returns the metric rows (empty without ``gt_dir``)."""
    from srplugins.inference import write_image
    from srplugins.tools.evaluate import _align, _read, bicubic_upscale, compute_metrics
    scale = int(round(upscaler.scale))
    names = sorted(n for n in os.listdir(input_dir) if n.lower().endswith(IMG_EXTS))
    if not names:
        raise FileNotFoundError(f'--input {input_dir}: no images ({", ".join(IMG_EXTS)}).')
    hr_names = sorted(n for n in os.listdir(gt_dir) if n.lower().endswith(IMG_EXTS)) if gt_dir else []
    os.makedirs(output_dir, exist_ok=True)
    rows = []
    for lr_name in names:
        stem = osp.splitext(lr_name)[0]
        lr = _read(osp.join(input_dir, lr_name))
        sr, _ = upscaler.enhance(lr, tile=tile)
        write_image(osp.join(output_dir, f'{stem}_{name}.png'), sr)
        bicubic = bicubic_upscale(lr, scale, sr.shape[:2])
        hr_name = match_hr(lr_name, hr_names, scale) if gt_dir else None
        if gt_dir and hr_name is None:
            print(f'warning: no HR image for {lr_name} in {gt_dir}; figure without HR')
        if hr_name:
            hr = _read(osp.join(gt_dir, hr_name))
            sr_a, hr_a = _align(sr, hr, scale)
            bic_a, _ = _align(bicubic, hr, scale)
            m_sr = compute_metrics(sr_a, hr_a, scale, ('psnr', 'ssim'))
            m_bic = compute_metrics(bic_a, hr_a, scale, ('psnr', 'ssim'))
            rows += [dict(image=stem, method='Bicubic', **m_bic), dict(image=stem, method=name, **m_sr)]
            panels = [
                caption_panel(bic_a, ['Bicubic', f'{m_bic["psnr"]:.2f} dB / SSIM {m_bic["ssim"]:.4f}']),
                caption_panel(sr_a, [name, f'{m_sr["psnr"]:.2f} dB / SSIM {m_sr["ssim"]:.4f}']),
                caption_panel(hr_a, ['HR (ground truth)', stem])
            ]
        else:
            panels = [caption_panel(bicubic, ['Bicubic', stem]), caption_panel(sr, [name, f'x{scale}'])]
        write_image(osp.join(output_dir, f'{stem}_compare.png'), side_by_side(panels))
    if rows:
        write_metrics(rows, output_dir, scale)
    return rows


def mean_rows(rows):
    """One ``image='MEAN'`` row per method."""
    methods = list(dict.fromkeys(r['method'] for r in rows))
    return [
        dict(
            image='MEAN',
            method=m,
            **{k: float(np.mean([r[k] for r in rows if r['method'] == m]))
               for k in ('psnr', 'ssim')}) for m in methods
    ]


def write_metrics(rows, output_dir, scale):
    """``metrics.csv`` and ``metrics.md`` (per image and mean) in ``output_dir``."""
    means = mean_rows(rows)
    methods = [m['method'] for m in means]
    with open(osp.join(output_dir, 'metrics.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['image', 'method', 'psnr', 'ssim'])
        for r in rows + means:
            writer.writerow([r['image'], r['method'], f'{r["psnr"]:.4f}', f'{r["ssim"]:.4f}'])
    lines = [
        f'PSNR (dB) / SSIM: basicsr, Y channel, crop border {scale}, SR rounded to uint8.', '',
        '| image | ' + ' | '.join(methods) + ' |', '|---|' + '---|' * len(methods)
    ]
    for stem in list(dict.fromkeys(r['image'] for r in rows + means)):
        cells = [
            next(f'{r["psnr"]:.2f} / {r["ssim"]:.4f}' for r in rows + means if r['image'] == stem and r['method'] == m)
            for m in methods
        ]
        lines.append(f'| {stem} | ' + ' | '.join(cells) + ' |')
    with open(osp.join(output_dir, 'metrics.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=HelpFormatter)
    parser.add_argument('--opt', required=True, help='BasicSR option file with network_g (and path.pretrain_network_g)')
    parser.add_argument('--model_path', help='weights overriding path.pretrain_network_g')
    parser.add_argument('-i', '--input', required=True, help='folder of LR images')
    parser.add_argument('--gt', help='folder of HR images (adds the HR panel and PSNR / SSIM)')
    parser.add_argument('-o', '--output', required=True, help='output folder')
    parser.add_argument('--name', default='SR', help='method name in file names and captions')
    parser.add_argument('-t', '--tile', type=int, default=0, help='tile size in LR pixels, 0 = whole image')
    parser.add_argument('--device', default=None, help='cpu, cuda, ...; default: cuda if available')
    args = parser.parse_args(argv)
    try:
        for flag, folder in (('--input', args.input), ('--gt', args.gt)):
            if folder and not osp.isdir(folder):
                raise FileNotFoundError(f'{flag} {folder}: folder not found.')
        upscaler = load_network(args.opt, args.model_path, args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f'sr_compare_figures: error: {err}', file=sys.stderr)
        return 2
    rows = process_folder(upscaler, args.input, args.output, args.gt, args.name, args.tile)
    for mean in mean_rows(rows):
        print(f'{mean["method"]:<12} PSNR {mean["psnr"]:.2f} dB  SSIM {mean["ssim"]:.4f}')
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
