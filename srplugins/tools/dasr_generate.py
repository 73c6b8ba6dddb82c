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
folders are checked at the end; ``DASRPairedDataset`` reads them. Every file is written atomically.

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
import re
import shutil
import sys
import warnings

from srplugins.tools._cli import HelpFormatter, warn
from srplugins.utils.atomic import atomic_write, atomic_write_bytes

BUNDLE_FORMAT = 'srplugins.DASR.dsn.v1'


def _strip_module(state_dict):
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state_dict.items()}


def infer_generator_config(state_dict):
    """``DASRDownsampler`` options from an official ``De_resnet`` / ``Generator`` state dict."""
    blocks = {int(m.group(1)) for k in state_dict for m in [re.match(r'res_blocks\.(\d+)\.', k)] if m}
    downs = {int(m.group(1)) for k in state_dict for m in [re.match(r'down_sample\.(\d+)\.', k)] if m}
    scale = {0: 1, 1: 2, 2: 4}[len([i for i in downs if i % 2 == 0])]
    return dict(
        type='DASRDownsampler',
        num_in_ch=state_dict['block_input.0.weight'].shape[1],
        num_out_ch=state_dict['block_output.weight'].shape[0],
        num_feat=state_dict['block_input.0.weight'].shape[0],
        num_block=len(blocks),
        scale=scale)


def infer_discriminator_config(state_dict, fs_type=None, kernel_size=None, d_type=None):
    """``DASRFSDiscriminator`` options from an official DSN discriminator state dict.

    The keys tell the filter (Gaussian key -> gau, ``DWT2.*`` -> wavelet), the norm (BatchNorm running statistics ->
    batch), the body (``net.net`` -> fsd, ``net.model`` -> nld) and the wavelet band combination (first conv input
    channels). Values that keys cannot tell (avg_pool vs rgb, nld_s1 vs nld_s2) come from the recorded
    ``fs_type`` / ``D_type`` of the checkpoint or the arguments.
    """
    keys = list(state_dict)
    gauss_key = 'filter.filter_low.filter.gaussian_filter.weight'
    if gauss_key in state_dict:
        filter_type = 'gau'
        kernel_size = state_dict[gauss_key].shape[-1]
    elif any(k.startswith('DWT2.') for k in keys):
        filter_type = 'wavelet'
    else:
        filter_type = (fs_type or 'avg_pool').lower()
        if filter_type not in ('avg_pool', 'rgb'):
            raise ValueError(f'The discriminator state dict has neither a Gaussian nor a wavelet key, so its filter '
                             f'is avg_pool or rgb (--no_highpass); got fs_type {fs_type!r}. Pass --filter.')
    norm = 'batch' if any(k.endswith('running_mean') for k in keys) else 'instance'
    if any(k.startswith('net.net.') for k in keys):
        d_arch, first = 'fsd', 'net.net.0.weight'
    elif any(k.startswith('net.model.') for k in keys):
        d_arch, first = (d_type or 'nld_s2').lower(), 'net.model.0.weight'
        if d_arch not in ('nld_s1', 'nld_s2'):
            raise ValueError(f'net.model.* keys mean nld_s1 or nld_s2, got D_type {d_type!r}. Pass --d-arch.')
    else:
        raise ValueError('Not a DASR DSN discriminator state dict: no net.net.* or net.model.* keys.')
    in_ch = state_dict[first].shape[1]
    cat_or_sum = 'cat'
    num_in_ch = in_ch
    if filter_type == 'wavelet':
        cat_or_sum = 'cat' if in_ch % 3 == 0 and in_ch >= 9 else 'sum'
        num_in_ch = in_ch // 3 if cat_or_sum == 'cat' else in_ch
    return dict(
        type='DASRFSDiscriminator',
        num_in_ch=num_in_ch,
        filter_type=filter_type,
        kernel_size=int(kernel_size or 5),
        cat_or_sum=cat_or_sum,
        norm=norm,
        d_arch=d_arch,
        num_feat=state_dict[first].shape[0])


def _build(opt, registry_cls):
    opt = dict(opt)
    opt.pop('type', None)
    return registry_cls(**opt)


def load_dsn(path, overrides=None, device='cpu'):
    """Loads a DSN checkpoint (srplugins bundle or official ``.tar``) onto ``device``.

    Args:
        path (str): Checkpoint file.
        overrides (dict | None): Discriminator options that replace the stored / inferred ones.
        device (str | torch.device): Target device.

    Returns:
        tuple: ``(net_g, net_d, info)``; both networks in eval mode; ``info`` holds the two option dicts.
    """
    net_g, net_d, info = _load_dsn(path, overrides)
    return net_g.to(device).eval(), net_d.to(device).eval(), info


def _load_dsn(path, overrides=None):
    """The one place that reads a DSN checkpoint: ``(net_g, net_d, {'network_g': ..., 'network_d': ...})`` on CPU.

    Knows the srplugins bundle (``format: srplugins.DASR.dsn.v1``, written by ``DASRDownsamplerModel``) and the
    official DASR ``.tar`` (``model_g_state_dict`` / ``models_d_state_dict``, options inferred from the keys).
    """
    import torch

    import srplugins  # noqa: F401  (stack fixes and registration)
    from srplugins.archs.dasr_arch import DASRDownsampler, DASRFSDiscriminator
    if not osp.isfile(path):
        raise FileNotFoundError(f'--checkpoint: {path} does not exist (expected models/dsn_<iter>.pth written by '
                                'DASRDownsamplerModel, or an official DASR DSN .tar).')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(ckpt, dict) and ckpt.get('format') == BUNDLE_FORMAT:
        g_opt, d_opt = dict(ckpt['network_g']), dict(ckpt['network_d'])
        g_sd, d_sd = ckpt['params_g'], ckpt['params_d']
    elif isinstance(ckpt, dict) and 'model_g_state_dict' in ckpt:
        g_sd = _strip_module(ckpt['model_g_state_dict'])
        d_sd = _strip_module(ckpt.get('models_d_state_dict', ckpt.get('model_d_state_dict', {})))
        if not d_sd:
            raise ValueError(f'{path}: official checkpoint without models_d_state_dict; a discriminator is needed.')
        g_opt = infer_generator_config(g_sd)
        d_opt = infer_discriminator_config(d_sd, ckpt.get('fs_type'), ckpt.get('fs_kernel_size'), ckpt.get('D_type'))
    else:
        raise ValueError(f'{path}: unknown checkpoint layout; expected a dsn_<iter>.pth bundle (format '
                         f'{BUNDLE_FORMAT}) or an official DSN .tar with model_g_state_dict / models_d_state_dict.')
    for key, value in (overrides or {}).items():
        if value is not None:
            d_opt[key] = value
    net_g = _build(g_opt, DASRDownsampler)
    net_d = _build(d_opt, DASRFSDiscriminator)
    try:
        net_g.load_state_dict(g_sd, strict=True)
        net_d.load_state_dict(d_sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f'{path}: the state dicts do not match the networks built from {g_opt} / {d_opt}. '
                         f'Check --filter / --norm / --d-arch / --kernel-size / --cat-or-sum.\n{err}') from err
    return net_g, net_d, {'network_g': g_opt, 'network_d': d_opt}


def tiled_downsample(net_g, hr, scale, tile=512, tile_pad=32):
    """Runs ``net_g`` over ``hr`` ``(1, C, H, W)`` in overlapping tiles; ``H``, ``W`` must be multiples of ``scale``.

    ``tile`` and ``tile_pad`` are rounded up to multiples of ``scale``; with ``tile_pad`` at least the generator's
    receptive-field radius (24 HR pixels for the official 8-block x4 network) the result equals a full-image pass.
    ``tile <= 0`` disables tiling.
    """
    import torch
    with torch.no_grad():
        return _tiled_downsample(net_g, hr, scale, tile, tile_pad)


def _tiled_downsample(net_g, hr, scale, tile, tile_pad):
    _, _, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f'HR size {w}x{h} must be a multiple of the scale {scale} (mod-crop first).')
    if tile <= 0 or (h <= tile and w <= tile):
        return net_g(hr)
    tile = -(-tile // scale) * scale
    tile_pad = -(-tile_pad // scale) * scale
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            py1, px1 = min(y1 + tile_pad, h), min(x1 + tile_pad, w)
            patch = net_g(hr[..., py0:py1, px0:px1])
            if out is None:
                out = patch.new_zeros(1, patch.size(1), h // scale, w // scale)
            oy, ox = (y0 - py0) // scale, (x0 - px0) // scale
            out[..., y0 // scale:y1 // scale, x0 // scale:x1 // scale] = \
                patch[..., oy:oy + (y1 - y0) // scale, ox:ox + (x1 - x0) // scale]
    return out


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

    A grey file feeds a 1-channel DSN as is and a 3-channel DSN replicated; a colour file cannot feed a 1-channel DSN
    (ValueError naming the file). An alpha channel is dropped with a warning. Float files count as 16 bit.
    """
    import cv2
    raw = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if arr is None:  # formats OpenCV cannot decode: the DASR reader (PIL fallback), 8 bit RGB
        from srplugins.data.dasr_dataset import read_image_rgb
        arr, depth = read_image_rgb(path), 8
        if num_in_ch == 1:
            raise ValueError(f'{path}: a 1-channel DSN needs a grey image; OpenCV cannot decode this file.')
        return arr, depth
    depth = 8 if arr.dtype == np.uint8 else 16
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        warnings.warn(f'{path}: image has an alpha channel; it is dropped.')
        arr = arr[..., :arr.shape[2] - 1]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.
    else:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f'{path}: the image holds non-finite (NaN / inf) pixels.')
        arr = np.clip(arr, 0, 1)
    channels = arr.shape[2]
    if channels == num_in_ch:
        return np.ascontiguousarray(arr), depth
    if channels == 1 and num_in_ch == 3:
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2)), depth
    raise ValueError(f'{path} has {channels} channels, the DSN expects {num_in_ch} (num_in_ch of network_g).')


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
    if scale == 1:
        raise ValueError('This DSN generator has scale 1 (DSGAN variant, bicubic LR input); generation supports the '
                         'DeResnet variant (scale 2 or 4) that maps HR images directly.')
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
