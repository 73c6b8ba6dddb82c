"""Evaluation report: PSNR / SSIM (Y channel, crop = scale) and LPIPS per image and per dataset, as Markdown and CSV,
plus a comparison figure (crops of LR-bicubic | each method | GT).

Examples::

    # folders: one GT folder, any number of SR folders (NAME=FOLDER), optional LR folder for the bicubic column
    srplugins-evaluate --gt datasets/demo/val/HR --lr datasets/demo/val/LR_bicubic/X4 --scale 4 \
        --sr A2N=results/demo_a2n/visualization/val --sr SRGAN=results/demo_srgan/visualization/val -o reports/demo

    # an option file of srplugins/test.py: every test dataset, SR images from results/<name>/visualization/<dataset>
    srplugins-evaluate --opt options/test/A2N/test_A2N_x4.yml -o reports/a2n_x4

SR files are matched to GT files by name: ``<stem>.<ext>``, ``<stem>_<anything>.<ext>`` (basicsr's
``<stem>_<suffix>.png``, ``srplugins-infer``'s ``<stem>_out.png``) or ``<stem>x<scale>.<ext>`` (``--save-lr`` / EDSR
names); a method folder in which no file matches a GT stem is an error that names its files. LR files by
``filename_tmpl.format(<stem>)`` (the option file's per dataset, or ``--lr_filename_tmpl``; ``{}x4`` finds
``babyx4.png`` for ``baby.png``). PSNR / SSIM are basicsr's
``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True`` and ``crop_border=scale`` (the protocol of the SR
literature); LPIPS is srplugins' ``calculate_lpips`` (AlexNet, v0.1, RGB, same crop), which needs torchvision's
``alexnet-owt-7be5be79.pth`` offline (``$SRPLUGINS_PRETRAINED_DIR``, ``experiments/pretrained_models/`` or the
torch.hub cache): without it the default metrics drop LPIPS with one warning, an explicit ``--metrics lpips`` fails.
The bicubic column upsamples the LR image with basicsr's MATLAB-style ``imresize``.

Outputs in ``-o``: ``<name>.md``, ``<name>.csv`` (one row per dataset, method and image, plus ``AVERAGE`` rows) and
``<name>_comparison.png``.
"""
import argparse
import csv
import io
import numpy as np
import os
import os.path as osp
import sys

from srplugins.tools._cli import HelpFormatter, warn
from srplugins.utils.atomic import atomic_write, atomic_write_bytes

IMG_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')
METRICS = ('psnr', 'ssim', 'lpips')


def _read(path):
    from srplugins.inference import read_image
    img = read_image(path)
    if img is None:
        raise ValueError(f'Cannot decode image {path!r}.')
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.).round().astype(np.uint8)
    return img


def list_images(folder):
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Folder not found: {folder!r}.')
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMG_EXTS) and osp.isfile(osp.join(folder, f)))


def _check_tmpl(tmpl, what='filename_tmpl'):
    try:
        tmpl.format('x')
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(f'{what} {tmpl!r} must contain one "{{}}" for the GT file stem (e.g. "{{}}x4"): {err}.')
    if tmpl.format('') == tmpl:
        raise ValueError(f'{what} {tmpl!r} must contain "{{}}" for the GT file stem (e.g. "{{}}x4").')


def match_files(gt_names, folder, tmpl='{}', scale=None):
    """Map each GT file name to a file of ``folder`` (None if absent).

    With ``<name> = tmpl.format(<GT stem>)`` (basicsr's ``filename_tmpl`` of paired datasets: ``'{}x4'`` matches
    ``babyx4.png`` to ``baby.png``), the first of: ``<name>.*``; ``<name>_*.*`` (basicsr's ``<stem>_<suffix>``,
    ``srplugins-infer``'s ``<stem>_out``), shortest first; ``<name>x<scale>.*`` when ``scale`` is given.
    """
    _check_tmpl(tmpl)
    candidates = list_images(folder)
    matched = {}
    for gt in gt_names:
        stem = tmpl.format(osp.splitext(gt)[0])
        exact = [c for c in candidates if osp.splitext(c)[0] == stem]
        prefixed = sorted((c for c in candidates if osp.splitext(c)[0].startswith(stem + '_')), key=len)
        scaled = [c for c in candidates if scale is not None and osp.splitext(c)[0] == f'{stem}x{scale}']
        hit = (exact or prefixed or scaled or [None])[0]
        matched[gt] = osp.join(folder, hit) if hit else None
    return matched


def lpips_available():
    """Whether the LPIPS AlexNet backbone ``alexnet-owt-7be5be79.pth`` is found offline (``None``) or the reason."""
    from srplugins.utils.pretrained import resolve_pretrained
    try:
        resolve_pretrained('alexnet-owt-7be5be79.pth', 'LPIPS-alex backbone')
    except FileNotFoundError as err:
        return str(err)
    return None


def _align(sr, gt, scale):
    """Crop both to the common size (GT is usually mod-cropped to the scale by the SR pipeline)."""
    if sr.shape == gt.shape:
        return sr, gt
    h, w = min(sr.shape[0], gt.shape[0]), min(sr.shape[1], gt.shape[1])
    if max(abs(sr.shape[0] - gt.shape[0]), abs(sr.shape[1] - gt.shape[1])) >= max(scale, 1):
        raise ValueError(f'SR size {sr.shape[:2]} and GT size {gt.shape[:2]} differ by more than the scale {scale}.')
    return sr[:h, :w], gt[:h, :w]


def bicubic_upscale(lr, scale, size=None):
    """MATLAB-style bicubic upscaling (basicsr ``imresize``) of a uint8 BGR image, rounded to uint8."""
    import srplugins  # noqa: F401  (stack fixes before basicsr is imported: must stay first)
    # isort: split
    from basicsr.utils.matlab_functions import imresize
    out = imresize(lr.astype(np.float64) / 255., scale)
    out = np.clip(out * 255., 0, 255).round().astype(np.uint8)
    if size is not None:
        out = out[:size[0], :size[1]]
    return out


def compute_metrics(sr, gt, crop_border, metrics=METRICS):
    """PSNR / SSIM on Y (basicsr) and LPIPS (srplugins) of uint8 BGR images."""
    import srplugins  # noqa: F401  (registers calculate_lpips; stack fixes before basicsr: must stay first)
    # isort: split
    from basicsr.metrics import calculate_psnr, calculate_ssim
    out = {}
    if 'psnr' in metrics:
        out['psnr'] = float(calculate_psnr(sr, gt, crop_border=crop_border, test_y_channel=True))
    if 'ssim' in metrics:
        out['ssim'] = float(calculate_ssim(sr, gt, crop_border=crop_border, test_y_channel=True))
    if 'lpips' in metrics:
        from srplugins.metrics.lpips_metric import calculate_lpips
        out['lpips'] = calculate_lpips(sr, gt, crop_border=crop_border)
    return out


def evaluate_dataset(name, gt_dir, methods, scale, lr_dir=None, crop_border=None, metrics=METRICS, lr_tmpl='{}'):
    """Score every method folder of one dataset.

    Args:
        name (str): Dataset name for the report.
        gt_dir (str): GT folder.
        methods (list[tuple[str, str]]): ``(method name, SR folder)``.
        scale (int): SR scale (bicubic baseline, default crop border).
        lr_dir (str | None): LR folder; adds a ``Bicubic`` method.
        crop_border (int | None): Default: ``scale``.
        metrics (tuple[str]): Subset of ``('psnr', 'ssim', 'lpips')``.
        lr_tmpl (str): LR file name (without extension) for a GT stem, basicsr's ``filename_tmpl``. Default: ``'{}'``.

    Returns:
        dict: ``{'name', 'gt_dir', 'lr_dir', 'scale', 'images': [...], 'methods': [...],
        'rows': [{'dataset', 'method', 'image', metric...}], 'files': {method: {image: path}}}``.
    """
    crop_border = scale if crop_border is None else crop_border
    gt_names = list_images(gt_dir)
    if not gt_names:
        raise ValueError(f'No images in GT folder {gt_dir!r}.')
    files = {}
    if lr_dir:
        files['Bicubic'] = match_files(gt_names, lr_dir, lr_tmpl)
    for method, folder in methods:
        files[method] = match_files(gt_names, folder, scale=scale)
        if not any(files[method].values()):
            found = list_images(folder)
            shown = ', '.join(found[:5]) + (', ...' if len(found) > 5 else '') if found else 'no image files'
            stems = ', '.join(osp.splitext(g)[0] for g in gt_names[:3])
            raise ValueError(f'{name}/{method}: no file of {folder} matches a GT image of {gt_dir} ({shown}); '
                             f'expected <stem>.<ext>, <stem>_<suffix>.<ext> or <stem>x{scale}.<ext> for the GT stems '
                             f'{stems}{", ..." if len(gt_names) > 3 else ""}.')
    rows = []
    for method, mapping in files.items():
        missing = [g for g, p in mapping.items() if p is None]
        if missing:
            kind = 'LR' if method == 'Bicubic' else 'SR'
            warn(f'{name}/{method}: no {kind} file for {len(missing)} GT image(s), e.g. {missing[:3]}; skipped.')
        for gt_name, path in mapping.items():
            if path is None:
                continue
            gt = _read(osp.join(gt_dir, gt_name))
            img = _read(path)
            if method == 'Bicubic':
                img = bicubic_upscale(img, scale, gt.shape[:2])
            sr, ref = _align(img, gt, scale)
            rows.append(
                dict(
                    dataset=name,
                    method=method,
                    image=osp.splitext(gt_name)[0],
                    **compute_metrics(sr, ref, crop_border, metrics)))
    for method in files:
        sel = [r for r in rows if r['method'] == method]
        if sel:
            avg = {m: float(np.mean([r[m] for r in sel])) for m in metrics}
            rows.append(dict(dataset=name, method=method, image='AVERAGE', **avg))
    return dict(
        name=name,
        gt_dir=gt_dir,
        lr_dir=lr_dir,
        lr_tmpl=lr_tmpl,
        scale=scale,
        crop_border=crop_border,
        images=gt_names,
        methods=list(files),
        rows=rows,
        files=files,
        metrics=list(metrics))


def _fmt(metric, value):
    return f'{value:.4f}' if metric != 'psnr' else f'{value:.2f}'


def write_csv(results, path):
    metrics = results[0]['metrics']
    buffer = io.StringIO(newline='')
    writer = csv.writer(buffer)
    writer.writerow(['dataset', 'method', 'image'] + list(metrics))
    for res in results:
        for row in res['rows']:
            writer.writerow([row['dataset'], row['method'], row['image']] + [f'{row[m]:.6f}' for m in metrics])
    atomic_write_bytes(path, buffer.getvalue().encode('utf-8'))


def write_markdown(results, path, figure=None, command=None):
    metrics = results[0]['metrics']
    heads = {'psnr': 'PSNR (dB) ↑', 'ssim': 'SSIM ↑', 'lpips': 'LPIPS ↓'}
    lines = ['# Evaluation report', '']
    if command:
        lines += ['Command:', '', f'    {command}', '']
    lines += [
        'PSNR / SSIM: basicsr, Y channel (BT.601), crop border = scale. LPIPS: AlexNet v0.1 on RGB, same crop.', ''
    ]
    for res in results:
        lines += [
            f'## {res["name"]} (x{res["scale"]:g}, crop {res["crop_border"]})', '',
            f'GT: `{res["gt_dir"]}`' + (f', LR: `{res["lr_dir"]}`' if res['lr_dir'] else ''), ''
        ]
        lines += [
            '| method | images | ' + ' | '.join(heads[m] for m in metrics) + ' |', '|---|---|' + '---|' * len(metrics)
        ]
        for method in res['methods']:
            avg = [r for r in res['rows'] if r['method'] == method and r['image'] == 'AVERAGE']
            n = len([r for r in res['rows'] if r['method'] == method and r['image'] != 'AVERAGE'])
            if avg:
                lines.append(f'| {method} | {n} | ' + ' | '.join(_fmt(m, avg[0][m]) for m in metrics) + ' |')
        lines += [
            '', '<details><summary>Per image</summary>', '',
            '| image | method | ' + ' | '.join(heads[m] for m in metrics) + ' |', '|---|---|' + '---|' * len(metrics)
        ]
        for row in sorted((r for r in res['rows'] if r['image'] != 'AVERAGE'),
                          key=lambda r: (r['image'], res['methods'].index(r['method']))):
            lines.append(f'| {row["image"]} | {row["method"]} | ' + ' | '.join(_fmt(m, row[m]) for m in metrics) + ' |')
        lines += ['', '</details>', '']
    if figure:
        lines += [
            '## Comparison', '', f'![comparison]({osp.basename(figure)})', '',
            'Each row: a crop of one test image; columns: LR upscaled by bicubic, each method, GT. Titles give '
            'the whole-image PSNR / LPIPS.', ''
        ]
    with atomic_write(path, 'w') as f:
        f.write('\n'.join(lines))


def _auto_crop(gt, size):
    """Top-left corner of the ``size`` window with the most gradient energy (texture shows differences best)."""
    import cv2
    gray = cv2.cvtColor(gt, cv2.COLOR_BGR2GRAY).astype(np.float32)
    energy = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    box = cv2.boxFilter(energy, -1, (size, size), normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    h, w = gray.shape
    box = box[:h - size + 1, :w - size + 1]
    y, x = np.unravel_index(np.argmax(box), box.shape)
    return int(y), int(x)


def comparison_figure(res, path, images=None, crop_size=96, crop_xy=None, max_images=3):
    """Save a grid: one row per image, columns LR-bicubic (if an LR folder was given) | methods | GT."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    images = images or [osp.splitext(n)[0] for n in res['images']][:max_images]
    names = {osp.splitext(n)[0]: n for n in res['images']}
    columns = res['methods'] + ['GT']
    fig, axes = plt.subplots(len(images), len(columns), figsize=(2.2 * len(columns), 2.4 * len(images)), squeeze=False)
    for r, stem in enumerate(images):
        if stem not in names:
            raise ValueError(f'Figure image {stem!r} is not in the GT folder {res["gt_dir"]!r}.')
        gt = _read(osp.join(res['gt_dir'], names[stem]))
        size = min(crop_size, gt.shape[0], gt.shape[1])
        y, x = crop_xy if crop_xy else _auto_crop(gt, size)
        for c, method in enumerate(columns):
            ax = axes[r][c]
            ax.axis('off')
            if method == 'GT':
                img, title = gt, 'GT'
            else:
                p = res['files'][method].get(names[stem])
                if p is None:
                    ax.set_title(f'{method}\n(missing)', fontsize=8)
                    continue
                img = _read(p)
                if method == 'Bicubic':
                    img = bicubic_upscale(img, res['scale'], gt.shape[:2])
                row = [q for q in res['rows'] if q['method'] == method and q['image'] == stem]
                scores = []
                if row and 'psnr' in row[0]:
                    scores.append(f'{row[0]["psnr"]:.2f} dB')
                if row and 'lpips' in row[0]:
                    scores.append(f'{row[0]["lpips"]:.3f}')
                title = method + ('\n' + ' / '.join(scores) if scores else '')
            crop = img[y:y + size, x:x + size, ::-1]
            ax.imshow(crop, interpolation='nearest')
            ax.set_title(title, fontsize=8)
        axes[r][0].text(
            -0.05, 0.5, f'{stem}\n({x},{y})', transform=axes[r][0].transAxes, ha='right', va='center', fontsize=7)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, dpi=120, format='png')
    plt.close(fig)
    return path


def datasets_from_opt(opt_path):
    """``(name, gt_dir, lr_dir, sr_dir, scale, method, lr_tmpl)`` for every test dataset of a srplugins / basicsr test
    option file; ``lr_tmpl`` is the dataset's ``filename_tmpl`` (default ``'{}'``), as basicsr's paired datasets use
    it to find the LR file of a GT file."""
    import yaml
    with open(opt_path) as f:
        opt = yaml.safe_load(f)
    if not isinstance(opt, dict) or 'datasets' not in opt or 'name' not in opt:
        raise ValueError(f'{opt_path}: expected a test option file with "name" and "datasets".')
    scale = int(opt.get('scale', 1))
    out = []
    for key, ds in opt['datasets'].items():
        if not isinstance(ds, dict) or 'dataroot_gt' not in ds:
            continue
        ds_name = ds.get('name', key)
        sr_dir = osp.join('results', opt['name'], 'visualization', ds_name)
        tmpl = str(ds.get('filename_tmpl', '{}'))
        _check_tmpl(tmpl, f'{opt_path}: datasets.{key}.filename_tmpl')
        out.append((ds_name, ds['dataroot_gt'], ds.get('dataroot_lq'), sr_dir, scale, opt['name'], tmpl))
    if not out:
        raise ValueError(f'{opt_path}: no dataset with dataroot_gt.')
    return out


def build_parser():
    parser = argparse.ArgumentParser(
        prog='srplugins-evaluate', description=__doc__.split('\n\n')[0], formatter_class=HelpFormatter)
    parser.add_argument('--gt', help='GT folder')
    parser.add_argument('--lr', help='LR folder (adds the Bicubic column)')
    parser.add_argument(
        '--lr_filename_tmpl',
        default='{}',
        help='LR file name for a GT stem, as basicsr\'s filename_tmpl ("{}x4": babyx4.png for baby.png; default '
        '"{}"); with --opt each dataset\'s filename_tmpl is used')
    parser.add_argument('--sr', action='append', default=[], metavar='NAME=FOLDER', help='method folder, repeatable')
    parser.add_argument('--opt', help='test option file instead of --gt/--sr (reads results/<name>/visualization)')
    parser.add_argument('--scale', type=int, help='SR scale (required with --gt)')
    parser.add_argument('--crop_border', type=int, help='pixels ignored at each border; default: the scale')
    parser.add_argument('--dataset', default='dataset', help='dataset name in the report (with --gt)')
    parser.add_argument(
        '--metrics',
        nargs='+',
        choices=METRICS,
        help='default: psnr ssim lpips, where lpips is dropped with a warning when alexnet-owt-7be5be79.pth is not '
        'found offline; an explicit lpips without the file is an error')
    parser.add_argument('-o', '--output', default='reports', help='output folder')
    parser.add_argument('--name', default='report', help='base name of the output files')
    parser.add_argument('--figure_images', nargs='+', help='image stems shown in the figure (default: first 3)')
    parser.add_argument('--crop_size', type=int, default=96, help='figure crop size in GT pixels')
    parser.add_argument(
        '--crop_xy',
        type=int,
        nargs=2,
        metavar=('Y', 'X'),
        help='figure crop corner (default: the '
        'most textured window)')
    parser.add_argument('--no_figure', action='store_true')
    return parser


def choose_metrics(requested):
    """The metrics to compute: ``requested``, or all of :data:`METRICS` with LPIPS dropped (one warning) when its
    AlexNet file is not available offline. An explicitly requested LPIPS without the file raises FileNotFoundError."""
    if requested:
        if 'lpips' in requested:
            reason = lpips_available()
            if reason is not None:
                raise FileNotFoundError(f'--metrics lpips: {reason}')
        return tuple(dict.fromkeys(requested))
    reason = lpips_available()
    if reason is None:
        return METRICS
    warn('LPIPS skipped: alexnet-owt-7be5be79.pth not found offline (put it in $SRPLUGINS_PRETRAINED_DIR, '
         'experiments/pretrained_models/ or the torch.hub cache); reporting PSNR / SSIM.')
    return tuple(m for m in METRICS if m != 'lpips')


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args, argv)
    except (ValueError, FileNotFoundError) as err:
        print(f'srplugins-evaluate: error: {err}', file=sys.stderr)
        return 2


def _run(args, argv):
    args.metrics = list(choose_metrics(args.metrics))
    results = []
    if args.opt:
        for ds_name, gt_dir, lr_dir, sr_dir, scale, method, lr_tmpl in datasets_from_opt(args.opt):
            results.append(
                evaluate_dataset(
                    ds_name,
                    gt_dir, [(method, sr_dir)],
                    scale,
                    lr_dir=lr_dir,
                    crop_border=args.crop_border,
                    metrics=tuple(args.metrics),
                    lr_tmpl=lr_tmpl))
    else:
        if not args.gt or args.scale is None or not (args.sr or args.lr):
            build_parser().error('give --gt, --scale and at least one --sr NAME=FOLDER (or --lr), or --opt')
        methods = []
        for item in args.sr:
            if '=' not in item:
                build_parser().error(f'--sr expects NAME=FOLDER, got {item!r}')
            methods.append(tuple(item.split('=', 1)))
        results.append(
            evaluate_dataset(
                args.dataset,
                args.gt,
                methods,
                args.scale,
                lr_dir=args.lr,
                crop_border=args.crop_border,
                metrics=tuple(args.metrics),
                lr_tmpl=args.lr_filename_tmpl))
    os.makedirs(args.output, exist_ok=True)
    base = osp.join(args.output, args.name)
    figure = None
    if not args.no_figure:
        figure = comparison_figure(
            results[0],
            base + '_comparison.png',
            images=args.figure_images,
            crop_size=args.crop_size,
            crop_xy=args.crop_xy)
    write_csv(results, base + '.csv')
    command = 'srplugins-evaluate ' + ' '.join(argv if argv is not None else sys.argv[1:])
    write_markdown(results, base + '.md', figure=figure, command=command)
    for res in results:
        for row in res['rows']:
            if row['image'] == 'AVERAGE':
                scores = '  '.join(f'{m} {_fmt(m, row[m])}' for m in res['metrics'])
                print(f'{res["name"]:<12} {row["method"]:<16} {scores}')
    print(f'wrote {base}.md, {base}.csv' + (f', {figure}' if figure else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
