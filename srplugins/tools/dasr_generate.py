"""DASR step 2: generate the LR training set and the domain-distance maps with a trained down-sampling network.

For every HR image of ``--hr`` (the clean target domain): mod-crop to the scale, run the DSN generator ``G_d``
(tiled, so 2K images fit in memory) to get the generated LR ``y^g``, run the DSN discriminator ``D_y`` on it and turn
its probabilities into the domain-distance map

    FSD:            ddm = avg_pool2d(sigmoid(D_y(y^g)), 17, stride 1, pad 8, count_include_pad=False)
    nld_s1 / nld_s2: each probability spread over its receptive-field window (13 px step 1 / 34 px step 4) on the
                    discriminator-input canvas, divided by the window count

(official ``receptive_cal.getWeights`` with the ``convnet`` of ``create_dataset_modified.py``; higher = closer to the
real-LR domain). Writes ``<out>/lq/<stem>.png`` and ``<out>/ddm/<stem>.npy`` (float32, shape (1, 1, h, w), on the
discriminator-input grid: LR size for gau / avg_pool / rgb, ceil(LR/2) for wavelet). Files are paired by stem and the
folders are checked at the end; ``DASRPairedDataset`` reads them. Every file is written atomically. A scale-1
generator trained with ``scale: 1`` (the x1 recipe) maps the HR image at its size; a scale-1 generator trained at a
larger scale (DSGAN variant, bicubic LR input) or an official one (no recorded scale) is refused.

Channels and bit depth follow the HR files: an 8-bit HR file gives an 8-bit PNG, a 16-bit (or float) one a 16-bit
PNG, rounded at that depth (the map is computed on the rounded LR the SR stage reads); a grey HR file with a
1-channel DSN (``num_in_ch: 1``) gives a 1-channel PNG, with a 3-channel DSN it is replicated to RGB (as DASR's
reader does). A generated image that is constant (standard deviation < 1e-3) or all black is reported by name (a
collapsed DSN); when every image of the set collapsed, the written files are removed and the command fails unless
``--force``.

Checkpoints: ``experiments/<name>/models/dsn_<iter>.pth`` written by ``DASRDownsamplerModel`` (carries every network
option), or an official DASR DSN checkpoint (``*.tar`` with ``model_g_state_dict`` / ``models_d_state_dict``); for
the latter the discriminator options are inferred from the keys and the recorded ``fs_type`` / ``fs_kernel_size`` /
``D_type``, and can be overridden with ``--filter`` / ``--norm`` / ``--d-arch`` / ``--kernel-size`` /
``--cat-or-sum``.

Example:
    srplugins-dasr-generate --checkpoint experiments/DASR_DSN_AIM2019/models/dsn_latest.pth \\
        --hr datasets/AIM2019/DIV2K_train_HR --out datasets/AIM2019/DASR_generated

Helper for paired folders whose file names differ by a suffix (RealSR: ``Canon_001_LR4.png`` / ``Canon_001_HR.png``),
which basicsr's ``PairedImageDataset`` cannot pair: link (or copy) the files under their common stem:
    srplugins-data strip-suffix --src datasets/RealSR_V3/Canon/Test/4/LR \\
        --dst datasets/RealSR_V3/Canon/Test/4_stems/LR --suffix _LR4

(``srplugins-dasr-generate strip-suffix ...`` is the same command.)
"""
import argparse
import numpy as np
import os
import os.path as osp
import shutil
import sys

from srplugins.tools._cli import HelpFormatter, warn
from srplugins.utils.atomic import atomic_write, atomic_write_bytes


def load_dsn(path, overrides=None, device='cpu'):
    """Loads a DSN checkpoint (srplugins bundle or official ``.tar``) onto ``device``.

    Args:
        path (str): Checkpoint file.
        overrides (dict | None): Discriminator options that replace the stored / inferred ones.
        device (str | torch.device): Target device.

    Returns:
        tuple: ``(net_g, net_d, info)``; both networks in eval mode; ``info`` holds the two option dicts and
        ``scale``, the data scale the file records (``None`` for official files).
    """
    net_g, net_d, info = _load_dsn(path, overrides)
    return net_g.to(device).eval(), net_d.to(device).eval(), info


def _load_dsn(path, overrides=None):
    """``(net_g, net_d, {'network_g': ..., 'network_d': ..., 'scale': ...})`` on CPU, read by
    :func:`srplugins.checkpoints.load_dsn` (srplugins bundle ``dsn_<iter>.pth`` or official DASR ``.tar``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a DSN file, or weights that do not fit the (overridden) options; names ``--checkpoint``.
    """
    from srplugins.checkpoints import load_dsn as read_dsn
    if not osp.isfile(path):
        raise FileNotFoundError(f'--checkpoint: {path} does not exist (expected models/dsn_<iter>.pth written by '
                                'DASRDownsamplerModel, or an official DASR DSN .tar).')
    try:
        return read_dsn(path, overrides=overrides, option='--checkpoint')
    except ValueError as err:
        if overrides and any(v is not None for v in overrides.values()):
            raise ValueError(f'{err}\nCheck --filter / --norm / --d-arch / --kernel-size / --cat-or-sum.') from None
        raise


def tiled_downsample(net_g, hr, scale, tile=512, tile_pad=32):
    """Runs ``net_g`` over ``hr`` ``(1, C, H, W)`` in overlapping tiles; ``H``, ``W`` must be multiples of ``scale``.

    :func:`srplugins.inference.tile_forward` with output scale ``1 / scale``: ``tile`` and ``tile_pad`` are rounded
    up to multiples of ``scale``; with ``tile_pad`` at least the generator's receptive-field radius (24 HR pixels for
    the official 8-block x4 network) the result equals a full-image pass. ``tile <= 0`` disables tiling.
    """
    import torch

    from srplugins.inference import tile_forward
    _, _, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f'HR size {w}x{h} must be a multiple of the scale {scale} (mod-crop first).')
    with torch.no_grad():
        return tile_forward(net_g, hr, tile=max(tile, 0), tile_pad=tile_pad, scale=1. / scale, size_multiple=scale)


def discriminator_canvas(net_d, height, width):
    """Grid of the discriminator input for an LR image of ``height x width``: the LR grid, or the Haar grid
    ``ceil(h / 2) x ceil(w / 2)`` for the wavelet filter (the official canvas is ``h // 2``; equal for even sizes)."""
    from srplugins.ops import frequency as fq
    if net_d.filter_type == 'wavelet':
        return fq.ceil_half(height), fq.ceil_half(width)
    return height, width


def domain_distance_map(net_d, lr, field=None):
    """Domain-distance map of the LR image ``lr`` ``(1, C, h, w)``; ``(1, 1, h', w')`` on the discriminator-input grid.

    FSD: ``avg_pool2d(sigmoid(net_d(lr)), field, 1, field // 2, count_include_pad=False)`` with ``field`` default 17
    (official window of four 5x5 convs). nld_s1 / nld_s2: the official receptive-field windows of
    ``DSN_RECEPTIVE_LAYERS`` on the discriminator-input canvas; ``field`` does not apply.
    """
    import torch

    from srplugins.ops import frequency as fq
    with torch.no_grad():
        prob = torch.sigmoid(net_d(lr))
    if net_d.d_arch == 'fsd':
        return fq.receptive_field_average(prob, fq.fsd_receptive_field() if field is None else field)
    if field is not None:
        raise ValueError(f'--field applies to the fsd discriminator only; {net_d.d_arch} maps use the official '
                         'receptive-field windows of its layers.')
    canvas = discriminator_canvas(net_d, lr.size(-2), lr.size(-1))
    return fq.spread_over_receptive_fields(prob, fq.DSN_RECEPTIVE_LAYERS[net_d.d_arch], canvas)


def save_png(tensor, path, bit_depth=8):
    """Saves a ``(1, C, H, W)`` RGB / grey tensor in [0, 1] as an 8- or 16-bit PNG (atomically), rounding (the
    official code truncates); one channel gives a 1-channel PNG."""
    import cv2
    peak = 255 if bit_depth == 8 else 65535
    arr = tensor[0].clamp(0, 1).mul(peak).round().permute(1, 2, 0).cpu().numpy()
    arr = arr.astype(np.uint8 if bit_depth == 8 else np.uint16)
    arr = arr[..., 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr[..., ::-1])  # cv2 writes BGR
    ok, buf = cv2.imencode('.png', arr)
    if not ok:
        raise OSError(f'{path}: PNG encoding failed')
    atomic_write_bytes(path, buf.tobytes())


def read_hr(path, num_in_ch):
    """An HR file as float32 ``(H, W, num_in_ch)`` in [0, 1] at its full precision, and its bit depth (8 or 16).

    Read by :func:`srplugins.data.image_io.read_image`. A grey file feeds a 1-channel DSN as is and a 3-channel DSN
    replicated; a colour file cannot feed a 1-channel DSN (ValueError naming the file). An alpha channel is dropped
    with a warning. Float files count as 16 bit.
    """
    from srplugins.data.image_io import read_image
    if num_in_ch not in (1, 3):
        raise ValueError(f'the DSN expects {num_in_ch} input channels (num_in_ch of network_g); images have 1 or 3.')
    img, info = read_image(path, 'gray' if num_in_ch == 1 else 'rgb', option='--hr', with_info=True)
    if info['channels'] != 1 and num_in_ch == 1:
        raise ValueError(f'{path} has {info["channels"]} channels, the DSN expects {num_in_ch} (num_in_ch of '
                         'network_g).')
    return img, info['bit_depth']


def collapse_reason(lr):
    """``'all black'`` / ``'constant (std ...)'`` for a collapsed generated image ``(1, C, h, w)`` in [0, 1], else
    None: the failure of a diverged DSN (all pixels one value)."""
    if float(lr.max()) <= 0:
        return 'all black'
    std = float(lr.std())
    if std < 1e-3:
        return f'constant (std {std:.2e} < 1e-3)'
    return None


def _existing_stems(folder, ext):
    if not osp.isdir(folder):
        return set()
    return {osp.splitext(n)[0] for n in os.listdir(folder) if n.lower().endswith(ext)}


def generate(checkpoint,
             hr_dir,
             out_dir,
             tile=512,
             tile_pad=32,
             field=None,
             device='cpu',
             overrides=None,
             progress=True,
             force=False):
    """Generates ``out_dir/lq/<stem>.png`` and ``out_dir/ddm/<stem>.npy`` for every image of ``hr_dir``.

    Collapsed outputs (see :func:`collapse_reason`) are reported by name; if all of them collapsed, the files written
    by this call are removed and a ValueError is raised, unless ``force``.

    Raises:
        ValueError: If ``out_dir`` already holds files whose stems are not in ``hr_dir`` (mismatched folders), if
            two HR files share a stem, if the written folders do not pair up, or if every image collapsed.

    Returns:
        list[str]: The stems written.
    """
    import torch

    from srplugins.data.dasr_dataset import index_by_stem, list_images, pair_by_stem
    net_g, net_d, info = load_dsn(checkpoint, overrides, device)
    scale = info['network_g'].get('scale', 4)
    if scale == 1 and info.get('scale') != 1:
        trained = (f'was trained at scale {info["scale"]:g}'
                   if info.get('scale') is not None else 'records no training scale (official DSGAN variant)')
        raise ValueError(f'--checkpoint {checkpoint}: this DSN generator has scale 1 and {trained}, so it maps '
                         'bicubic-downscaled LR images, not HR images; generation supports generators that map HR '
                         'images: scale 2 or 4 (DeResnet), or scale 1 trained with scale: 1 (LR = HR size).')
    if field is not None and net_d.d_arch != 'fsd':
        raise ValueError(f'--field applies to the fsd discriminator only, this checkpoint has {net_d.d_arch}.')
    hr_table = index_by_stem(list_images(hr_dir, '--hr'), '--hr')
    lq_dir, ddm_dir = osp.join(out_dir, 'lq'), osp.join(out_dir, 'ddm')
    stale = (_existing_stems(lq_dir, '.png') | _existing_stems(ddm_dir, '.npy')) - set(hr_table)
    if stale:
        shown = ', '.join(sorted(stale)[:5])
        raise ValueError(f'{out_dir} already holds {len(stale)} generated file(s) whose stems are not in {hr_dir} '
                         f'({shown}); use an empty --out folder so LR images, maps and HR images pair by stem.')
    os.makedirs(lq_dir, exist_ok=True)
    os.makedirs(ddm_dir, exist_ok=True)

    stems = sorted(hr_table)
    iterator = stems
    if progress:
        from tqdm import tqdm
        iterator = tqdm(stems, unit='image', desc='DASR generation')
    num_in_ch = net_g.block_input[0].in_channels
    written, collapsed = [], []
    for stem in iterator:
        img, depth = read_hr(hr_table[stem], num_in_ch)
        h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
        hr = torch.from_numpy(np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)))[None].float().to(device)
        lr = tiled_downsample(net_g, hr, scale, tile, tile_pad)
        # the map is computed on the quantised LR that the SR stage will actually read
        peak = 255. if depth == 8 else 65535.
        lr = lr.clamp(0, 1).mul(peak).round().div(peak)
        reason = collapse_reason(lr)
        if reason:
            collapsed.append(stem)
            warn(f'DSN output for {hr_table[stem]} collapsed: {reason}.')
        ddm = domain_distance_map(net_d, lr, field)
        lq_path, ddm_path = osp.join(lq_dir, f'{stem}.png'), osp.join(ddm_dir, f'{stem}.npy')
        save_png(lr, lq_path, depth)
        written.append(lq_path)
        with atomic_write(ddm_path) as f:
            np.save(f, ddm.cpu().numpy().astype(np.float32))
        written.append(ddm_path)
    if collapsed and len(collapsed) == len(stems) and not force:
        for path in written:
            os.remove(path)
        raise ValueError(f'every generated image collapsed (constant or all black: {", ".join(collapsed[:5])}'
                         f'{", ..." if len(collapsed) > 5 else ""}); the DSN checkpoint {checkpoint} has diverged, so '
                         'nothing was written. Use --force to write the set anyway.')

    pair_by_stem({
        '--hr': {
            s: hr_table[s]
            for s in stems
        },
        'lq': {
            s: s
            for s in _existing_stems(lq_dir, '.png')
        },
        'ddm': {
            s: s
            for s in _existing_stems(ddm_dir, '.npy')
        }
    })
    return stems


def link_by_stem(src_dir, dst_dir, suffix, copy=False):
    """Links (or copies) every image of ``src_dir`` into ``dst_dir`` with ``suffix`` removed from its stem.

    For paired folders whose names differ by a suffix, e.g. RealSR ``Canon_001_LR4.png`` / ``Canon_001_HR.png``:
    after ``link_by_stem(LR, LR_stems, '_LR4')`` and ``link_by_stem(HR, HR_stems, '_HR')`` both folders hold
    ``Canon_001.png``, which basicsr's ``PairedImageDataset`` pairs. The extension is kept.

    Args:
        src_dir (str): Folder of images.
        dst_dir (str): Output folder (created).
        suffix (str): Text at the end of every stem, removed in ``dst_dir``.
        copy (bool): Copy the files instead of creating symbolic links.

    Returns:
        list[str]: The written paths, sorted.

    Raises:
        ValueError: If a stem does not end with ``suffix`` (or equals it), two files map to the same stem, or
            ``dst_dir`` already holds a different file under a target name.
    """
    from srplugins.data.dasr_dataset import list_images
    if not suffix:
        raise ValueError('--suffix must not be empty.')
    targets = {}
    for path in list_images(src_dir, '--src'):
        stem, ext = osp.splitext(osp.basename(path))
        if not stem.endswith(suffix) or stem == suffix:
            raise ValueError(f'--src: {path} does not end with the suffix {suffix!r} (+ extension); every image of '
                             f'{src_dir} must.')
        new_stem = stem[:-len(suffix)]
        if new_stem in targets:
            raise ValueError(f'--src: {targets[new_stem]} and {path} both become the stem {new_stem!r}.')
        targets[new_stem] = (path, osp.join(dst_dir, new_stem + ext))
    os.makedirs(dst_dir, exist_ok=True)
    written = []
    for path, target in targets.values():
        if osp.lexists(target):  # a rerun is fine; a different file under the same name is not
            if not (osp.isfile(target) and (osp.samefile(path, target) or _same_content(path, target))):
                raise ValueError(f'--dst: {target} already exists and differs from {path}; use an empty folder.')
        elif copy:
            with open(path, 'rb') as f:
                atomic_write_bytes(target, f.read())
            shutil.copystat(path, target)
        else:
            os.symlink(osp.abspath(path), target)
        written.append(target)
    return sorted(written)


def _same_content(path_a, path_b):
    with open(path_a, 'rb') as fa, open(path_b, 'rb') as fb:
        return fa.read() == fb.read()


def strip_suffix_parser(parser=None, prog='srplugins-data strip-suffix'):
    """The arguments of ``strip-suffix`` (on ``parser``, a sub-command parser, or a new one)."""
    parser = parser or argparse.ArgumentParser(prog=prog, formatter_class=HelpFormatter)
    parser.description = (
        'Link (or copy) the images of --src into --dst with --suffix removed from each stem, so that paired folders '
        'share file names (RealSR: Canon_001_LR4.png / Canon_001_HR.png -> Canon_001.png).')
    parser.add_argument('--src', required=True, help='folder of images whose stems end with --suffix')
    parser.add_argument('--dst', required=True, help='output folder')
    parser.add_argument('--suffix', required=True, help='stem suffix to remove, e.g. _LR4 or _HR')
    parser.add_argument('--copy', action='store_true', help='copy instead of creating symbolic links')
    return parser


def strip_suffix_run(args):
    written = link_by_stem(args.src, args.dst, args.suffix, args.copy)
    print(f'{"Copied" if args.copy else "Linked"} {len(written)} images into {args.dst}.')
    return 0


def strip_suffix_main(argv):
    return strip_suffix_run(strip_suffix_parser(prog='srplugins-dasr-generate strip-suffix').parse_args(argv))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == 'strip-suffix':
        return strip_suffix_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog='srplugins-dasr-generate',
        description='DASR: generate LR images (<out>/lq/<stem>.png) and domain-distance maps (<out>/ddm/<stem>.npy) '
        'from HR images with a trained down-sampling network. Other mode: "strip-suffix" links paired files whose '
        'names differ by a suffix under their common stem (see "strip-suffix -h").',
        formatter_class=HelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='models/dsn_<iter>.pth, or an official DSN .tar')
    parser.add_argument('--hr', required=True, help='folder of clean HR images (target domain)')
    parser.add_argument('--out', required=True, help='output folder; lq/ and ddm/ are created inside')
    parser.add_argument('--tile', type=int, default=512, help='HR tile size for the generator (<= 0: no tiling)')
    parser.add_argument('--tile-pad', type=int, default=32, help='HR overlap around each tile')
    parser.add_argument(
        '--field', type=int, default=None, help='FSD only: receptive-field averaging size (default 17, official)')
    parser.add_argument('--device', help='torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)')
    parser.add_argument(
        '--filter',
        default=None,
        choices=['gau', 'avg_pool', 'wavelet', 'rgb'],
        help='override the discriminator filter (official checkpoints)')
    parser.add_argument('--norm', default=None, choices=['batch', 'instance'], help='override the norm')
    parser.add_argument('--d-arch', default=None, choices=['fsd', 'nld_s1', 'nld_s2'], help='override the body')
    parser.add_argument('--kernel-size', type=int, default=None, help='override the filter kernel size')
    parser.add_argument('--cat-or-sum', default=None, choices=['cat', 'sum'], help='override wavelet bands')
    parser.add_argument(
        '--force', action='store_true', help='write the set even when every generated image collapsed (constant)')
    args = parser.parse_args(argv)
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    overrides = {
        'filter_type': args.filter,
        'norm': args.norm,
        'd_arch': args.d_arch,
        'kernel_size': args.kernel_size,
        'cat_or_sum': args.cat_or_sum
    }
    try:
        stems = generate(
            args.checkpoint,
            args.hr,
            args.out,
            args.tile,
            args.tile_pad,
            args.field,
            args.device,
            overrides,
            force=args.force)
    except (ValueError, FileNotFoundError) as err:
        print(f'srplugins-dasr-generate: error: {err}', file=sys.stderr)
        return 2
    print(f'Wrote {len(stems)} LR images to {osp.join(args.out, "lq")} and maps to {osp.join(args.out, "ddm")}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
