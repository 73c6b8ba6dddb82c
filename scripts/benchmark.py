"""Benchmarks for srplugins.

Subcommands:
    degradation  Throughput (images/s) of the BSRGAN degradation on HR patches (default 288x288, x4): our per-sample
                 CPU path, our batched torch path (``--torch``, on ``--device``, batch ``--batch``) and, when
                 --kair_root points at a KAIR checkout, KAIR's reference ``utils_blindsr``, side by side in one run,
                 then the speed targets with PASS / FAIL: per-sample path >= 3x KAIR's images/s; batched torch path
                 on CUDA >= 20x KAIR's (CPU) images/s (no target for the torch path on the CPU). Exit status 1 when a
                 checked target fails. On CUDA every clock read follows ``torch.cuda.synchronize``, so the time of a
                 batch includes all its device work. Tiny inputs (``--hr_size 32 --lq_size 8``) measure the
                 per-sample host overhead.
    infer        srplugins inference: A2N x4 and RRDBNet x4 frames/s for a 1920x1080 output per precision, whole
                 image and tiled; ``--tiled``: ``tile_forward`` vs Real-ESRGAN's ``RealESRGANer.tile_process`` (same
                 weights and input, one thread, interleaved pairs; ratio <= 1.0 is the target); ``--memory``: peak
                 RSS of untiled vs tiled A2N x2 inference, each in a fresh process.
    fidelity     Statistical fidelity: mean / std over N seeded samples of PSNR(bicubic-upsampled LQ, HQ) on the same
                 HR crop (scikit-image's bundled sample photo) for our per-sample path, the batched torch path
                 (``--torch``) and KAIR's reference, with the differences to KAIR / to the per-sample path
                 (PASS: |mean diff| <= 0.3 dB and |std diff| <= 0.2 dB).

    train-step   Iterations/s of a recipe's training step (generator + discriminator for GAN recipes) on random batches
                 of the recipe's size: srplugins' drop-in model (``SRGANPlusModel`` / ``SRPlusModel``, or the recipe's
                 own srplugins model) with amp off / bf16 / fp16 and channels_last off / on, against basicsr's own
                 ``SRGANModel`` / ``SRModel`` (fp32) in the same run. Variants run round-robin, one step each, so the
                 machine's load hits all of them alike; the median step time of each is reported.

KAIR is imported with two compatibility patches for SciPy >= 1.14 (``np.finfo`` for ``scipy.finfo``;
``RectBivariateSpline(kx=1, ky=1)`` for ``interp2d``) and stub matplotlib modules when matplotlib is missing. KAIR is
never copied; point --kair_root at a checkout (``git clone https://github.com/cszn/KAIR``).

Examples:
    python scripts/benchmark.py degradation --num 100 --kair_root /tmp/KAIR
    python scripts/benchmark.py degradation --num 480 --torch --device cuda --batch 48 --kair_root /tmp/KAIR
    python scripts/benchmark.py degradation --num 480 --torch --hr_size 32 --lq_size 8   # host overhead
    python scripts/benchmark.py fidelity --num 200 --kair_root /tmp/KAIR
    python scripts/benchmark.py fidelity --num 400 --torch --device cpu
    python scripts/benchmark.py infer --tiled --frames 0                     # tile_forward vs RealESRGANer
    python scripts/benchmark.py infer --memory --frames 0                    # peak RSS untiled vs tiled
    python scripts/benchmark.py infer --device cuda --frames 20              # 1080p frames/s per precision
    python scripts/benchmark.py train-step --opt options/demo/demo_SRGAN_x4.yml --iters 20 --threads 2
    python scripts/benchmark.py train-step --opt options/train/RealESRGAN/train_RealESRGAN_x4plus.yml --device cuda
"""
import argparse
import math
import numpy as np
import os
import os.path as osp
import random
import sys
import time
import types

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from srplugins.ops.bsrgan_degradation import degradation_bsrgan, degradation_bsrgan_plus  # noqa: E402


def load_kair(kair_root):
    """Import KAIR's ``utils.utils_blindsr`` from a checkout with the SciPy >= 1.14 patches; None if impossible."""
    if not kair_root:
        return None
    if not osp.isfile(osp.join(kair_root, 'utils', 'utils_blindsr.py')):
        raise FileNotFoundError(f'--kair_root {kair_root!r} has no utils/utils_blindsr.py (expected a KAIR checkout)')
    import scipy
    import scipy.interpolate as interpolate

    class _Interp2dLinear:
        """Drop-in for the removed ``interp2d(x, y, z, kind='linear')`` on rectangular grids."""

        def __init__(self, x, y, z):
            self.spline = interpolate.RectBivariateSpline(y, x, z, kx=1, ky=1, s=0)

        def __call__(self, x_new, y_new):
            return self.spline(y_new, x_new)

    scipy.finfo = np.finfo
    interpolate.interp2d = _Interp2dLinear
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:  # KAIR's utils_image imports matplotlib only for plotting helpers
        for name in ('matplotlib', 'matplotlib.pyplot', 'mpl_toolkits', 'mpl_toolkits.mplot3d'):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules['mpl_toolkits.mplot3d'].Axes3D = None
    sys.path.insert(0, kair_root)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from utils import utils_blindsr
    utils_blindsr.interp2d = _Interp2dLinear
    return utils_blindsr


def hr_crop(name, size):
    """Centre crop ``size`` x ``size`` of a scikit-image sample photo as float32 RGB in [0, 1]."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError('the benchmark uses scikit-image sample photos: pip install scikit-image') from error
    img = getattr(data, name)()
    if img.ndim != 3 or img.shape[0] < size or img.shape[1] < size:
        raise ValueError(f'skimage.data.{name} ({img.shape}) is not an RGB image of at least {size}x{size}')
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size, :3]).astype(np.float32) / 255.0


def psnr_bicubic_up(lq, hq):
    """PSNR of OpenCV-bicubic-upsampled LQ vs HQ on 8-bit RGB (peak 255, no border shave)."""
    import cv2
    up = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
    a = np.round(np.clip(up, 0, 1) * 255).astype(np.float64)
    b = np.round(np.clip(hq, 0, 1) * 255).astype(np.float64)
    mse = np.mean((a - b)**2)
    return float('inf') if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))


def _ours(args):
    if args.plus:
        return lambda img, i: degradation_bsrgan_plus(
            img, args.scale, args.shuffle_prob, args.use_sharp, args.lq_size, rng=np.random.default_rng([args.seed, i]))
    return lambda img, i: degradation_bsrgan(img, args.scale, args.lq_size, rng=np.random.default_rng([args.seed, i]))


def _kair(args, kair):
    random.seed(args.seed)
    np.random.seed(args.seed)
    if args.plus:
        return lambda img, i: kair.degradation_bsrgan_plus(img, args.scale, args.shuffle_prob, args.use_sharp, args.
                                                           lq_size)
    return lambda img, i: kair.degradation_bsrgan(img, args.scale, args.lq_size)


def _torch_degrader(args):
    from srplugins.ops.bsrgan_degradation_torch import TorchBSRGANDegradation
    exact_sizes = {'auto': None, 'exact': True, 'padded': False}[args.torch_mode]
    return TorchBSRGANDegradation(args.scale, args.lq_size, 'bsrgan_plus' if args.plus else 'bsrgan', args.shuffle_prob,
                                  args.use_sharp, exact_sizes)


def _clock(device):
    """``time.perf_counter()`` after the device has finished its queued work (CUDA runs asynchronously)."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _torch_batches(args, img, num, with_psnr):
    """Run the batched torch path on ``num`` copies of ``img`` in batches of ``args.batch``.

    The HR batch is on the device before the clock starts (as in a model's ``feed_data``); one full batch with another
    seed warms up first (cuDNN, the pinned host allocator, the operator caches).

    Returns:
        tuple: (seconds, psnrs, batched calls per batch).
    """
    import torch
    device = torch.device(args.device)
    degrader = _torch_degrader(args)
    hr = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
    degrader(hr.expand(min(args.batch, num), -1, -1, -1).contiguous(), [args.seed, 10**6])
    psnrs, seconds, done, step, calls = [], 0.0, 0, 0, []
    while done < num:
        b = min(args.batch, num - done)
        batch = hr.expand(b, -1, -1, -1).contiguous()
        start = _clock(device)
        lq, hq = degrader(batch, [args.seed, step])
        seconds += _clock(device) - start
        calls.append(degrader.last_num_calls)
        if with_psnr:
            lq = lq.permute(0, 2, 3, 1).float().cpu().numpy()
            hq = hq.permute(0, 2, 3, 1).float().cpu().numpy()
            psnrs += [psnr_bicubic_up(lq[i], hq[i]) for i in range(b)]
        done += b
        step += 1
    return seconds, np.array(psnrs), float(np.mean(calls))


def _run(fn, img, num):
    psnrs, start = [], time.perf_counter()
    for i in range(num):
        lq, hq = fn(img, i)
        psnrs.append(psnr_bicubic_up(lq, hq))
    return time.perf_counter() - start, np.array(psnrs)


def _timed(fn, img, num):
    start = time.perf_counter()
    for i in range(num):
        fn(img, i)
    return time.perf_counter() - start


def _pin_threads(threads):
    """The same intra-op thread count for OpenCV (ours, KAIR) and torch (batched path) in this process."""
    import cv2
    import torch
    if threads > 0:
        cv2.setNumThreads(threads)
        torch.set_num_threads(threads)


def _timed_indices(fn, img, indices):
    start = time.perf_counter()
    for i in indices:
        fn(img, i)
    return time.perf_counter() - start


def cmd_degradation(args):
    """Ours (per-sample), ours (batched torch) and KAIR interleaved chunk by chunk, threads pinned on both sides.

    Each chunk (``--batch`` samples with ``--torch``, else 10) runs the per-sample path, KAIR and the torch batch
    back to back, so a change of the machine's load affects every path alike; the speed-ups are reported as total
    ratios and as the median of the per-chunk ratios.
    """
    kair = load_kair(args.kair_root)
    _pin_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    img = rng.random((args.hr_size, args.hr_size,
                      3), dtype=np.float32) if args.image == 'random' else hr_crop(args.image, args.hr_size)
    name = 'bsrgan_plus' if args.plus else 'bsrgan'
    print(f'{name} degradation, HR {args.hr_size}x{args.hr_size}, x{args.scale}, LQ {args.lq_size}, '
          f'{args.num} samples, OpenCV threads {_cv2_threads()}, torch threads {_torch_threads()}, image {args.image}, '
          'interleaved chunks')
    ours_fn = _ours(args)
    kair_fn = _kair(args, kair) if kair is not None else None
    chunk = args.batch if args.torch else 10
    chunks = {'ours': [], 'torch': [], 'KAIR': []}
    calls = []
    if args.torch:
        import torch
        device = torch.device(args.device)
        degrader = _torch_degrader(args)
        hr = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
        degrader(hr.expand(min(args.batch, args.num), -1, -1, -1).contiguous(), [args.seed, 10**6])  # warm-up
    done, step = 0, 0
    while done < args.num:
        b = min(chunk, args.num - done)
        indices = range(done, done + b)
        chunks['ours'].append(_timed_indices(ours_fn, img, indices))
        if kair_fn is not None:
            chunks['KAIR'].append(_timed_indices(kair_fn, img, indices))
        if args.torch:
            batch = hr.expand(b, -1, -1, -1).contiguous()
            start = _clock(device)
            degrader(batch, [args.seed, step])
            chunks['torch'].append(_clock(device) - start)
            calls.append(degrader.last_num_calls)
        done += b
        step += 1
    rows = {'ours': ('ours (per-sample, numpy/OpenCV)', sum(chunks['ours']))}
    if args.torch:
        rows['torch'] = (f'ours (batched torch, {_device_name(args.device)}, batch {args.batch})', sum(chunks['torch']))
        calls = float(np.mean(calls))
    if kair_fn is not None:
        rows['KAIR'] = ('KAIR utils_blindsr (patched, CPU)', sum(chunks['KAIR']))
    for label, seconds in rows.values():
        print(f'  {label:52s} {args.num / seconds:8.1f} images/s  ({1000 * seconds / args.num:.2f} ms/image)')
    if args.torch:
        print(f'  batched torch path: {calls:.1f} batched calls per batch ({args.torch_mode} sizes)')
        print(f'  batched torch / per-sample time per image: {rows["torch"][1] / rows["ours"][1]:.2f}x')
    if kair is None:
        print('  targets not checked: KAIR not given (--kair_root or $KAIR_ROOT)')
        return 0
    kair_seconds = rows['KAIR'][1]
    for key, (label, seconds) in rows.items():
        if key != 'KAIR':
            median = float(np.median(np.array(chunks['KAIR']) / np.array(chunks[key])))
            print(f'  speed-up {label} / KAIR: {kair_seconds / seconds:.2f}x (median of {len(chunks[key])} '
                  f'interleaved chunks {median:.2f}x)')
    status = 0
    targets = [('ours', 3.0, 'per-sample CPU path')]
    if args.torch:
        if args.device.startswith('cuda'):
            targets.append(('torch', 20.0, f'batched torch path on {args.device}'))
        else:
            print('  target batched torch path: none on the CPU (the 20x target is for --device cuda)')
    for key, factor, what in targets:
        ratio = kair_seconds / rows[key][1]
        ok = ratio >= factor
        status = status or (0 if ok else 1)
        print(f'  target {what} >= {factor:g}x KAIR images/s: {ratio:.2f}x -> {"PASS" if ok else "FAIL"}')
    return status


def _report_fidelity(results, num):
    """Print the PSNR statistics of each path and the differences with PASS / FAIL; returns 1 if one fails."""
    for label, (seconds, psnr) in results.items():
        print(f'  {label:5s} mean {psnr.mean():6.2f} dB  std {psnr.std():5.2f} dB  min {psnr.min():6.2f}  '
              f'max {psnr.max():6.2f}  ({1000 * seconds / num:.1f} ms/sample)')
    status = 0
    pairs = [(a, b) for a, b in (('ours', 'KAIR'), ('torch', 'KAIR'), ('torch', 'ours'))
             if a in results and b in results]
    for a, b in pairs:
        d_mean = results[a][1].mean() - results[b][1].mean()
        d_std = results[a][1].std() - results[b][1].std()
        ok = abs(d_mean) <= 0.3 and abs(d_std) <= 0.2
        status = status or (0 if ok else 1)
        print(f'  difference {a} - {b}: mean {d_mean:+.3f} dB, std {d_std:+.3f} dB -> '
              f'{"PASS" if ok else "FAIL"} (|mean| <= 0.3, |std| <= 0.2)')
    return status


def cmd_fidelity(args):
    kair = load_kair(args.kair_root)
    img = hr_crop(args.image, args.hr_size)
    seeds = args.seeds or [args.seed]
    print(f'PSNR(bicubic-up LQ, HQ) over {args.num} samples per seed of skimage.data.{args.image} centre crop '
          f'{args.hr_size}x{args.hr_size}, x{args.scale}, LQ {args.lq_size}, seeds {seeds}')
    runs = []
    for seed in seeds:
        args.seed = seed
        results = {'ours': _run(_ours(args), img, args.num)}
        if args.torch:
            results['torch'] = _torch_batches(args, img, args.num, True)[:2]
        if kair is not None:
            results['KAIR'] = _run(_kair(args, kair), img, args.num)
        print(f'seed {seed}, N={args.num}:')
        status = _report_fidelity(results, args.num)
        runs.append(results)
    if len(runs) > 1:  # the exit status is the pooled comparison's
        pooled = {key: (sum(r[key][0] for r in runs), np.concatenate([r[key][1] for r in runs])) for key in runs[0]}
        print(f'pooled over seeds {seeds}, N={args.num * len(runs)}:')
        status = _report_fidelity(pooled, args.num * len(runs))
    return status


# --------------------------------------------------------------------------------------------------------------- #
#  train-step
# --------------------------------------------------------------------------------------------------------------- #
_PLUS_OF = {'SRGANModel': 'SRGANPlusModel', 'SRModel': 'SRPlusModel'}


def _read_recipe(path):
    import srplugins  # noqa: F401
    # isort: split
    import yaml
    from basicsr.utils.options import ordered_yaml
    if not osp.isfile(path):
        raise FileNotFoundError(f'--opt {path!r}: option file not found')
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def _train_step_models(recipe):
    """(our model type, basicsr baseline model type) for a recipe."""
    import srplugins  # noqa: F401
    # isort: split
    from basicsr.models.srgan_model import SRGANModel
    from basicsr.utils.registry import MODEL_REGISTRY
    model_type = recipe['model_type']
    if model_type in _PLUS_OF:
        return _PLUS_OF[model_type], model_type
    cls = MODEL_REGISTRY.get(model_type)
    if not hasattr(cls, '_controlled_step'):
        raise ValueError(f'model_type {model_type} of the recipe has no srplugins training options')
    return model_type, 'SRGANModel' if issubclass(cls, SRGANModel) else 'SRModel'


def _train_step_opt(recipe,
                    model_type,
                    device,
                    folder,
                    amp=None,
                    channels_last=False,
                    compile_mode=False,
                    perceptual=True):
    import copy
    opt = copy.deepcopy(recipe)
    opt.update(
        model_type=model_type,
        is_train=True,
        dist=False,
        rank=0,
        world_size=1,
        num_gpu=1 if device.type == 'cuda' else 0,
        high_order_degradation=False)
    opt['path'] = {
        'pretrain_network_g': None,
        'pretrain_network_d': None,
        'strict_load_g': True,
        'models': folder,
        'training_states': folder,
        'visualization': folder
    }
    train = opt['train']
    for key in ('amp', 'channels_last', 'compile', 'accum_iter', 'grad_clip'):
        train.pop(key, None)
    train.update(net_d_iters=1, net_d_init_iters=0)  # every step updates G and D
    if not perceptual:
        train.pop('perceptual_opt', None)
    if amp is not None:  # ours
        train.update(amp=amp, channels_last=channels_last, compile=compile_mode)
    return opt


def _train_step_batch(recipe, batch, device):
    import torch
    scale = recipe['scale']
    train_set = recipe['datasets']['train']
    gt_size = recipe.get('gt_size') or train_set.get('gt_size', 128)
    batch = batch or train_set.get('batch_size_per_gpu', 4)
    channels = recipe['network_g'].get('num_in_ch', 3)
    gen = torch.Generator().manual_seed(0)
    gt = torch.nn.functional.avg_pool2d(torch.rand(batch, channels, gt_size, gt_size, generator=gen), 3, 1, 1)
    return {'lq': torch.nn.functional.avg_pool2d(gt, scale).to(device), 'gt': gt.to(device)}, gt_size, batch


def _amp_available(device, dtype):
    import torch
    try:
        with torch.autocast(device_type=device.type, dtype=dtype):
            conv = torch.nn.Conv2d(3, 3, 3).to(device)
            return conv(torch.rand(1, 3, 8, 8, device=device)).dtype == dtype
    except Exception:
        return False


def cmd_train_step(args):
    import srplugins  # noqa: F401
    # isort: split
    import statistics
    import tempfile
    import torch
    from basicsr.models import build_model
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.compile = {'true': True, 'false': False}.get(str(args.compile).lower(), args.compile)
    recipe = _read_recipe(args.opt)
    ours, baseline = _train_step_models(recipe)
    data, gt_size, batch = _train_step_batch(recipe, args.batch, device)
    amps = [a for a in (args.amp or ('off,bf16,fp16' if device.type == 'cuda' else 'off,bf16')).split(',') if a]
    unknown = sorted(set(amps) - {'off', 'bf16', 'fp16'})
    if unknown:
        raise ValueError(f'--amp: unknown precision(s) {unknown}; use off, bf16, fp16')
    variants = [(f'basicsr {baseline} fp32', baseline, None, False)]
    for amp in amps:
        dtype = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
        if dtype is not None and not _amp_available(device, dtype):
            print(f'  {amp}: autocast not available on {device}, skipped')
            continue
        for channels_last in (False, True):
            label = f'ours {ours} {"fp32" if amp == "off" else amp}{" channels_last" if channels_last else ""}'
            variants.append((label, ours, amp, channels_last))
    print(f'train-step: {args.opt} ({recipe["model_type"]}), {recipe["network_g"]["type"]}'
          f'{" + " + recipe["network_d"]["type"] if "network_d" in recipe else ""}, batch {batch}, GT {gt_size}, '
          f'x{recipe["scale"]}, device {_device_name(args.device)}, torch threads {torch.get_num_threads()}, '
          f'{args.iters} timed steps each after {args.warmup} warm-up, round-robin')
    perceptual = not args.no_perceptual
    models = []
    with tempfile.TemporaryDirectory() as folder:
        for label, model_type, amp, channels_last in variants:
            torch.manual_seed(0)
            opt = _train_step_opt(recipe, model_type, device, folder, amp, channels_last, args.compile, perceptual)
            try:
                model = build_model(opt)
            except (FileNotFoundError, OSError, RuntimeError) as err:
                if not perceptual or 'perceptual_opt' not in recipe['train']:
                    raise
                print(f'  perceptual loss dropped for every variant (cannot build it here: {str(err)[:120]})')
                perceptual = False
                models = []
                break
            models.append((label, model))
        if not models:  # rebuilt without the perceptual loss
            for label, model_type, amp, channels_last in variants:
                torch.manual_seed(0)
                models.append((label,
                               build_model(
                                   _train_step_opt(recipe, model_type, device, folder, amp, channels_last, args.compile,
                                                   False))))
        times = {label: [] for label, _ in models}
        for it in range(1, args.warmup + args.iters + 1):
            for label, model in models:
                start = _clock(device)
                model.feed_data(data)
                model.optimize_parameters(it)
                seconds = _clock(device) - start
                if it > args.warmup:
                    times[label].append(seconds)
        base = statistics.median(times[models[0][0]])
        for label, model in models:
            med = statistics.median(times[label])
            finite = all(math.isfinite(v) for v in model.get_current_log().values())
            print(f'  {label:52s} {1000 * med:9.1f} ms/step {1 / med:7.2f} it/s  x{base / med:5.2f} vs basicsr'
                  f'{"" if finite else "  NON-FINITE LOSSES"}')
    return 0


def _cv2_threads():
    import cv2
    return cv2.getNumThreads()


def _torch_threads():
    import torch
    return torch.get_num_threads()


def _device_name(device):
    import torch
    if not str(device).startswith('cuda'):
        return str(device)
    return f'{device}: {torch.cuda.get_device_name(torch.device(device))}'


# --------------------------------------------------------------------------------------------------------------- #
#  infer: srplugins' inference (A2N x4 / RRDBNet x4 frames/s per precision, tiled vs RealESRGANer, peak memory)
# --------------------------------------------------------------------------------------------------------------- #
def _infer_net(arch, num_block=None):
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY

    import srplugins  # noqa: F401
    torch.manual_seed(0)
    if arch == 'A2N':
        return ARCH_REGISTRY.get('A2N')(upscale=4, **({'num_block': num_block} if num_block else {})).eval()
    return ARCH_REGISTRY.get('RRDBNet')(3, 3, scale=4, num_block=num_block or 23).eval()


def _infer_precisions(device, requested):
    if requested:
        return requested
    return ['fp32', 'fp16', 'bf16'] if str(device).startswith('cuda') else ['fp32', 'bf16']


def _infer_frames(args):
    """Rows: frames/s of A2N x4 and RRDBNet x4 producing an ``--out_size`` output (1920x1080), per precision, whole
    image and tiled (``--tile`` / ``--tile_pad``)."""
    import torch

    from srplugins.inference import tile_forward
    from srplugins.inference.images import autocast_context
    out_w, out_h = (int(v) for v in args.out_size.lower().split('x'))
    clock = _clock(args.device)
    x = torch.rand(1, 3, out_h // 4, out_w // 4, device=args.device)
    print(f'infer: output {out_w}x{out_h} (input {out_w // 4}x{out_h // 4}, x4), device {_device_name(args.device)}, '
          f'torch threads {_torch_threads()}, {args.frames} frame(s) after {args.warmup} warm-up')
    for arch in ('A2N', 'RRDBNet'):
        net = _infer_net(arch, args.num_block).to(args.device)
        for precision in _infer_precisions(args.device, args.precision):
            for tile in (0, args.tile):
                with torch.no_grad(), autocast_context(precision, args.device):
                    for _ in range(args.warmup):
                        tile_forward(net, x, tile=tile, tile_pad=args.tile_pad, scale=4)
                    start = clock()
                    for _ in range(args.frames):
                        tile_forward(net, x, tile=tile, tile_pad=args.tile_pad, scale=4)
                    elapsed = clock() - start
                where = f'tile {tile} pad {args.tile_pad}' if tile else 'whole image'
                print(f'  {arch:8s} x4 {precision}  {where:18s} {args.frames / elapsed:8.3f} frames/s '
                      f'({elapsed / args.frames:.3f} s/frame)')


def _infer_tiled_vs_realesrganer(args):
    """Interleaved pairs, one torch thread: ``tile_forward`` vs Real-ESRGAN's ``RealESRGANer.tile_process`` on the same
    RRDBNet x4 weights and input; ratio = ours / theirs (<= 1.0 is the target); outputs compared."""
    import contextlib
    import io
    import tempfile
    import torch

    import srplugins  # noqa: F401
    from srplugins.inference import tile_forward
    try:
        from realesrgan import RealESRGANer
    except ImportError:
        print('tiled: realesrgan is not importable; no RealESRGANer baseline')
        return 0
    torch.set_num_threads(1)
    net = _infer_net('RRDBNet', args.num_block)
    with tempfile.TemporaryDirectory() as tmp:
        weights = osp.join(tmp, 'rrdb_x4.pth')
        torch.save({'params_ema': net.state_dict()}, weights)
        theirs = RealESRGANer(
            4,
            weights,
            model=_infer_net('RRDBNet', args.num_block),
            tile=args.tiled_tile,
            tile_pad=args.tiled_pad,
            pre_pad=0,
            half=False,
            device=torch.device('cpu'))
    rng = np.random.default_rng(0)
    img = rng.random((args.tiled_size, args.tiled_size, 3)).astype(np.float32)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    ours_t, theirs_t = [], []
    for _ in range(args.pairs):
        start = time.perf_counter()
        with torch.no_grad():
            ours = tile_forward(net, x, tile=args.tiled_tile, tile_pad=args.tiled_pad, scale=4)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # tile_process prints one line per tile
            theirs.pre_process(img)
            theirs.tile_process()
        theirs_t.append(time.perf_counter() - start)
    with torch.no_grad():
        whole = net(x)
    ratios = [a / b for a, b in zip(ours_t, theirs_t)]
    print(f'tiled: RRDBNet x4 (num_block {args.num_block or 23}), input {args.tiled_size}x{args.tiled_size}, tile '
          f'{args.tiled_tile} pad {args.tiled_pad}, 1 thread, {args.pairs} interleaved pairs')
    print(f'  ours tile_forward      median {np.median(ours_t):.3f} s')
    print(f'  RealESRGANer.tile_process median {np.median(theirs_t):.3f} s')
    print(f'  ratio ours/theirs: median {np.median(ratios):.3f} (pairs: {", ".join(f"{r:.3f}" for r in ratios)}) '
          f'{"PASS" if np.median(ratios) <= 1.0 else "FAIL"} (target <= 1.0)')
    print(f'  max |ours - untiled| = {(ours - whole).abs().max().item():.2e}, '
          f'max |ours - RealESRGANer| = {(ours - theirs.output).abs().max().item():.2e}')
    return 0 if np.median(ratios) <= 1.0 else 1


def _infer_memory_child(args):
    """Runs in a child process: one A2N x2 enhance of a ``--mem_size`` square uint8 image; prints peak RSS (MiB)."""
    import resource
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY

    import srplugins  # noqa: F401
    from srplugins.inference import Upscaler
    torch.set_num_threads(1)
    net = ARCH_REGISTRY.get('A2N')(upscale=2, num_block=args.num_block or 16)
    up = Upscaler(net, 2, device='cpu')
    img = np.random.default_rng(0).integers(0, 256, (args.mem_size, args.mem_size, 3), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out, _ = up.enhance(img, tile=args.mem_tile, tile_pad=args.tile_pad)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'{base:.1f} {peak:.1f} {out.nbytes / 2**20:.1f}')


def _infer_memory(args):
    """Peak RSS of untiled vs tiled A2N x2 inference, each in a fresh process (ru_maxrss)."""
    import subprocess
    rows = []
    for tile in (0, args.mem_tile):
        cmd = [
            sys.executable,
            osp.abspath(__file__), 'infer', '--memory_child', '--mem_size',
            str(args.mem_size), '--mem_tile',
            str(tile), '--tile_pad',
            str(args.tile_pad)
        ] + (['--num_block', str(args.num_block)] if args.num_block else [])
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        base, peak, out_mib = (float(v) for v in result.stdout.split()[-3:])
        rows.append((tile, base, peak, out_mib))
    print(f'memory: A2N x2, {args.mem_size}x{args.mem_size} -> {2 * args.mem_size}x{2 * args.mem_size} uint8, '
          'peak RSS per run in a fresh process')
    for tile, base, peak, out_mib in rows:
        where = f'tile {tile}' if tile else 'untiled'
        print(f'  {where:10s} peak {peak:8.1f} MiB (after model load {base:.1f} MiB, work {peak - base:.1f} MiB; '
              f'uint8 output {out_mib:.1f} MiB)')


def cmd_infer(args):
    if args.memory_child:
        return _infer_memory_child(args)
    status = 0
    if args.tiled:
        status = _infer_tiled_vs_realesrganer(args)
    if args.memory:
        _infer_memory(args)
    if args.frames > 0:
        _infer_frames(args)
    return status


def add_infer_parser(sub):
    p = sub.add_parser('infer', help='inference frames/s, tiled vs RealESRGANer, peak memory')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out_size', default='1920x1080', help='output WxH of the frames/s rows')
    p.add_argument('--frames', type=int, default=1, help='timed frames per row (0 skips the frames/s rows)')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--precision', nargs='+', choices=['fp32', 'fp16', 'bf16'], help='default: all the device runs')
    p.add_argument('--tile', type=int, default=256, help='tile of the tiled frames/s rows')
    p.add_argument('--tile_pad', type=int, default=16)
    p.add_argument('--num_block', type=int, help='blocks of the networks (default: the published 16 / 23)')
    p.add_argument('--tiled', action='store_true', help='tile_forward vs RealESRGANer.tile_process (1 thread)')
    p.add_argument('--tiled_size', type=int, default=256)
    p.add_argument('--tiled_tile', type=int, default=128)
    p.add_argument('--tiled_pad', type=int, default=10)
    p.add_argument('--pairs', type=int, default=3)
    p.add_argument('--memory', action='store_true', help='peak RSS untiled vs tiled (A2N x2)')
    p.add_argument('--mem_size', type=int, default=1000)
    p.add_argument('--mem_tile', type=int, default=256)
    p.add_argument('--memory_child', action='store_true', help=argparse.SUPPRESS)
    return p


def _add_train_step_parser(sub):
    p = sub.add_parser('train-step', help="iterations/s of a recipe's training step, ours vs basicsr's model")
    p.add_argument('--opt', default='options/demo/demo_SRGAN_x4.yml', help='recipe (option file)')
    p.add_argument('--device', default='cpu', help="'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--batch', type=int, default=0, help="batch size (default: the recipe's batch_size_per_gpu)")
    p.add_argument('--iters', type=int, default=10, help='timed steps per variant')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps per variant first')
    p.add_argument(
        '--amp',
        default=None,
        help='comma-separated precisions of our model to time (default: off,bf16 on CPU, where fp16 autocast is '
        'emulated and ~25x slower; off,bf16,fp16 on CUDA)')
    p.add_argument('--compile', default=False, help='train.compile for our variants (false, true or a mode)')
    p.add_argument('--threads', type=int, default=0, help='torch intra-op threads (0: leave as is)')
    p.add_argument('--no_perceptual', action='store_true', help='drop the perceptual loss (no VGG weights needed)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    for name, helptext in (('degradation', 'BSRGAN degradation throughput'),
                           ('fidelity', 'BSRGAN degradation PSNR statistics vs KAIR')):
        p = sub.add_parser(name, help=helptext)
        p.add_argument(
            '--kair_root',
            default=os.environ.get('KAIR_ROOT'),
            help='KAIR checkout to compare against (default: $KAIR_ROOT; omitted: ours only)')
        p.add_argument('--num', type=int, default=200 if name == 'fidelity' else 100, help='number of samples')
        p.add_argument('--scale', type=int, default=4, choices=(2, 3, 4))
        p.add_argument('--hr_size', type=int, default=288, help='HR patch side (default 288)')
        p.add_argument('--lq_size', type=int, default=72, help='LQ patch side (default 72)')
        p.add_argument('--seed', type=int, default=0)
        if name == 'degradation':
            p.add_argument(
                '--threads',
                type=int,
                default=1,
                help='OpenCV and torch intra-op threads, pinned alike for every path (default 1; 0: leave as is)')
        if name == 'fidelity':
            p.add_argument(
                '--seeds',
                type=int,
                nargs='+',
                help='several seeds of --num samples each, reported one by one and pooled (the exit status is the '
                'pooled comparison); overrides --seed')
        p.add_argument(
            '--image',
            default='astronaut' if name == 'fidelity' else 'random',
            help="skimage.data photo name, or 'random' noise (degradation only)")
        p.add_argument('--plus', action='store_true', help='BSRGAN+ (degradation_bsrgan_plus) instead of BSRGAN')
        p.add_argument('--shuffle_prob', type=float, default=0.5, help='BSRGAN+ full-shuffle probability')
        p.add_argument('--use_sharp', action='store_true', help='BSRGAN+ USM sharpening')
        p.add_argument('--torch', action='store_true', help='also run the batched torch path')
        p.add_argument('--device', default='cpu', help="device of the batched torch path ('cpu', 'cuda', 'cuda:1')")
        p.add_argument('--batch', type=int, default=48, help='batch size of the batched torch path (default 48)')
        p.add_argument(
            '--torch_mode',
            default='auto',
            choices=('auto', 'exact', 'padded'),
            help="batched calls at each sample's own size ('exact', the CPU default) or padded to the largest one "
            "of a power-of-two size class ('padded', the CUDA default); 'auto' follows the device")
    add_infer_parser(sub)
    _add_train_step_parser(sub)
    args = parser.parse_args(argv)
    if args.command == 'infer':
        return cmd_infer(args) or 0
    if args.command == 'train-step':
        return cmd_train_step(args) or 0
    if args.hr_size < args.lq_size * args.scale:
        parser.error(f'--hr_size ({args.hr_size}) must be >= lq_size*scale ({args.lq_size * args.scale})')
    return {'degradation': cmd_degradation, 'fidelity': cmd_fidelity}[args.command](args) or 0


if __name__ == '__main__':
    sys.exit(main())
