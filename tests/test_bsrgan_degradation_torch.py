"""The torch (on-device) BSRGAN degradation against independent references: OpenCV, scipy, basicsr, the CPU path.

The batched execution (greedy rounds on a padded canvas) is checked sample by sample against the CPU path and the
single-sample execution, in both its modes (``exact_sizes`` True: the CPU default, False: the CUDA default).
"""
import cv2
import math
import numpy as np
import pytest
import torch
from scipy import ndimage

import srplugins  # noqa: F401
from srplugins.ops import bsrgan_degradation as cpu
from srplugins.ops.bsrgan_degradation_torch import (TorchBSRGANDegradation, add_poisson_noise_torch, compile_plan,
                                                    convolve_torch, gaussian_noise_torch, imresize_matlab_torch,
                                                    jpeg_quality_to_factor, jpeg_torch, reflect101_index, resize_torch,
                                                    schedule, split_by_size)

NOISE_STEPS = ('gaussian_noise', 'speckle_noise', 'poisson_noise')
MODES = pytest.mark.parametrize('exact_sizes', [True, False], ids=['exact_sizes', 'padded'])


def _photo(size=288):
    from skimage import data
    img = data.astronaut()[100:100 + size, 100:100 + size]
    return np.ascontiguousarray(img).astype(np.float32) / 255.0


def _chw(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def _hwc(tensor):
    return tensor.permute(1, 2, 0).cpu().numpy()


def _psnr(a, b):
    mse = np.mean((np.round(np.clip(a, 0, 1) * 255) - np.round(np.clip(b, 0, 1) * 255))**2)
    return float('inf') if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _psnr_bicubic_up(lq, hq):
    up = cv2.resize(lq, (hq.shape[1], hq.shape[0]), interpolation=cv2.INTER_CUBIC)
    return _psnr(up, hq)


@pytest.mark.parametrize('interp', [1, 2, 3], ids=['bilinear', 'bicubic', 'area'])
def test_resize_equals_opencv(interp):
    rng = np.random.default_rng(interp)
    sizes = [((40, 40), (13, 13)), ((40, 40), (97, 97)), ((37, 53), (21, 77)), ((1, 9), (4, 3)), ((58, 93), (58, 174)),
             ((21, 13), (54, 33)), ((288, 288), (72, 72)), ((50, 50), (50, 50))]
    sizes += [((int(h), int(w)), (int(h2), int(w2))) for h, w, h2, w2 in rng.integers(1, 120, (20, 4))]
    for (h, w), (h2, w2) in sizes:
        img = rng.random((h, w, 3), dtype=np.float32)
        ref = cv2.resize(img, (w2, h2), interpolation=interp).reshape(h2, w2, 3)
        out = _hwc(resize_torch(_chw(img).double(), (w2, h2), interp))
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=2e-5, err_msg=f'{(h, w)} -> {(h2, w2)} mode {interp}')


@pytest.mark.parametrize('scale', [0.5, 0.25, 2.0])
def test_imresize_matlab_equals_basicsr(scale):
    from basicsr.utils.matlab_functions import imresize
    img = np.random.default_rng(0).random((24, 30, 3)).astype(np.float32)
    out = _hwc(imresize_matlab_torch(_chw(img).double(), scale))
    np.testing.assert_allclose(out, imresize(img, scale), atol=1e-5)


@pytest.mark.parametrize('n, pad', [(5, 2), (5, 4), (5, 9), (3, 12), (2, 7), (1, 3)])
def test_reflect101_index_equals_opencv_border(n, pad):
    row = np.arange(n, dtype=np.float32)[None, :]
    ref = cv2.copyMakeBorder(row, 0, 0, pad, pad, cv2.BORDER_REFLECT_101)[0]
    np.testing.assert_array_equal(reflect101_index(n, pad), ref.astype(np.int64))


@pytest.mark.parametrize('shape', [(40, 31), (9, 7), (3, 4)])
def test_convolve_equals_scipy_mirror_convolution(shape):
    rng = np.random.default_rng(1)
    img = rng.random(shape + (3, )).astype(np.float32)
    kernels = [cpu.anisotropic_gaussian_kernel(15, 0.7, 6.0, 1.5),
               cpu.gaussian_kernel(25, 2.0),
               rng.random((5, 5))]  # non-symmetric: a correlation would differ
    for kernel in kernels:
        ref = ndimage.convolve(img.astype(np.float64), kernel[..., None], mode='mirror')
        out = _hwc(convolve_torch(_chw(img).double()[None], kernel)[0])
        np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.slow
def test_plans_without_noise_and_jpeg_equal_the_cpu_path():
    """Same plan, deterministic steps only: the torch execution equals the numpy/OpenCV one."""
    img = _photo()
    for sf in (2, 3, 4):
        for kind in ('bsrgan', 'bsrgan_plus'):
            degrader = TorchBSRGANDegradation(
                sf, 64 if sf < 4 else 72, kind, shuffle_prob=0.5, use_sharp=kind == 'bsrgan_plus')
            for seed in range(6):
                plan = degrader.sample_plan(np.random.default_rng(seed), img.shape[:2])
                plan['steps'] = [
                    s for s in plan['steps'] if s[0] not in ('gaussian_noise', 'speckle_noise', 'poisson_noise', 'jpeg')
                ]
                ref_lq, ref_hq = cpu.apply_plan(img, plan, np.random.default_rng(0))
                plan['steps'].append(('jpeg', {'quality': 90}))
                out, hq, quality = degrader.apply_plan(_chw(img), plan, None)
                assert quality == 90
                top, left = plan['crop']
                p = plan['lq_patchsize']
                np.testing.assert_allclose(_hwc(out[:, top:top + p, left:left + p]), ref_lq, atol=1e-4)
                np.testing.assert_allclose(
                    _hwc(hq[:, top * sf:(top + p) * sf, left * sf:(left + p) * sf]), ref_hq, atol=1e-5)


def test_same_plans_give_matching_psnr_to_the_cpu_path():
    """Noise realisations and the JPEG codec differ; per-sample PSNR(bicubic-up LQ, HQ) stays within a fraction of a dB.
    """
    img = _photo()
    for sf, kind in ((4, 'bsrgan'), (2, 'bsrgan'), (4, 'bsrgan_plus')):
        degrader = TorchBSRGANDegradation(sf, 72 if sf == 4 else 64, kind, shuffle_prob=0.5)
        jpeger = degrader._tools(torch.device('cpu'))[0]
        diffs = []
        for seed in range(12):
            plan = degrader.sample_plan(np.random.default_rng(seed), img.shape[:2])
            lq, hq = cpu.apply_plan(img, plan, np.random.default_rng(1000 + seed))
            out, thq, quality = degrader.apply_plan(_chw(img), plan, torch.Generator().manual_seed(seed))
            out = jpeg_torch(out[None], [quality], jpeger)[0]
            top, left = plan['crop']
            p = plan['lq_patchsize']
            tlq = _hwc(out[:, top:top + p, left:left + p])
            diffs.append(_psnr_bicubic_up(tlq, hq) - _psnr_bicubic_up(lq, hq))
        diffs = np.array(diffs)
        assert abs(diffs.mean()) < 0.15 and np.abs(diffs).max() < 1.0, (sf, kind, diffs)


def test_jpeg_matches_opencv_closely_and_respects_per_sample_quality():
    img = _photo(96)
    from basicsr.utils import DiffJPEG
    jpeger = DiffJPEG(differentiable=False)
    batch = torch.stack([_chw(img[:90, :90]), _chw(img[:90, :90])])  # 90: not a multiple of 16
    out = jpeg_torch(batch, [30, 95], jpeger)
    assert out.shape == batch.shape and not out.requires_grad
    np.testing.assert_allclose((out * 255).numpy(), np.round((out * 255).numpy()), atol=1e-4)  # 8-bit values
    for k, quality in enumerate((30, 95)):
        ref = cpu.jpeg_compress(img[:90, :90], quality)
        assert _psnr(_hwc(out[k]), ref) > 33, quality
    assert _psnr(_hwc(out[0]), img[:90, :90]) < _psnr(_hwc(out[1]), img[:90, :90]) - 3


def test_noise_fields_have_the_drawn_statistics():
    g = torch.Generator().manual_seed(0)
    color = gaussian_noise_torch((3, 200, 200), 'color', 0.05, g)
    assert color.shape == (3, 200, 200) and abs(color.std().item() - 0.05) < 1e-3
    gray = gaussian_noise_torch((3, 200, 200), 'gray', 0.05, g)
    assert gray.shape == (1, 200, 200)
    cov = next(c for c in (cpu.sample_noise(np.random.default_rng(s)) for s in range(100)) if c['mode'] == 'correlated')
    field = gaussian_noise_torch((3, 300, 300), 'correlated', cov['sigma'], g, cov['cov']).reshape(3, -1).double()
    np.testing.assert_allclose(torch.cov(field).numpy(), cov['cov'], atol=3e-4)
    img = torch.full((3, 100, 100), 0.5, dtype=torch.float32)
    noisy = add_poisson_noise_torch(img, 100.0, True, g)
    assert torch.equal(noisy[0], noisy[1]) and torch.equal(noisy[1], noisy[2])
    colour = add_poisson_noise_torch(img, 100.0, False, g)
    assert not torch.equal(colour[0], colour[1])
    assert abs(colour.var().item() - 0.5 / 100.0) < 5e-4  # Poisson(50)/100: variance 0.005


@MODES
@pytest.mark.parametrize('sf', [2, 3, 4])
def test_batched_call_shapes_alignment_and_seeding(sf, exact_sizes):
    torch.manual_seed(0)
    hr = torch.rand(3, 3, 77 * sf // 2 * 2 + 1, 70 * sf + 2)  # odd sizes: mod crop
    p = 32
    degrader = TorchBSRGANDegradation(sf, p, exact_sizes=exact_sizes)
    lq, gt = degrader(hr, 7)
    assert lq.shape == (3, 3, p, p) and gt.shape == (3, 3, p * sf, p * sf)
    assert lq.min() >= 0 and lq.max() <= 1
    np.testing.assert_allclose((lq * 255).numpy(), np.round((lq * 255).numpy()), atol=1e-4)
    rng = np.random.default_rng(7)
    for i in range(3):  # gt is the HR crop aligned with the LQ crop of the plan drawn for sample i
        plan = degrader.sample_plan(rng, hr.shape[-2:])
        top, left = plan['crop']
        assert torch.equal(gt[i], hr[i, :, top * sf:(top + p) * sf, left * sf:(left + p) * sf])
    lq2, gt2 = degrader(hr, 7)
    assert torch.equal(lq, lq2) and torch.equal(gt, gt2)
    lq3, _ = degrader(hr, 8)
    assert not torch.equal(lq, lq3)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='scale must be 2, 3 or 4'):
        TorchBSRGANDegradation(5, 16)
    with pytest.raises(ValueError, match='degradation_type'):
        TorchBSRGANDegradation(4, 16, 'real_esrgan')
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        TorchBSRGANDegradation(4, 16)(torch.rand(3, 64, 64), 0)
    with pytest.raises(ValueError, match='smaller than lq_patchsize'):
        TorchBSRGANDegradation(4, 32)(torch.rand(1, 3, 100, 100), 0)


def _plans(degrader, hw, num, seed, drop=NOISE_STEPS):
    plans = [degrader.sample_plan(np.random.default_rng([seed, i]), hw) for i in range(num)]
    for plan in plans:
        plan['steps'] = [step for step in plan['steps'] if step[0] not in drop]
    return plans


@MODES
@pytest.mark.parametrize('sf, kind', [(4, 'bsrgan'), (3, 'bsrgan'), (2, 'bsrgan_plus')])
def test_batched_deterministic_plans_equal_the_cpu_path_sample_by_sample(sf, kind, exact_sizes):
    """Twelve different plans in one batch (different op orders, sizes, kernels): each sample as on the CPU path."""
    img = _photo(96)  # intermediate images smaller than the 25-tap kernels: repeated reflection
    degrader = TorchBSRGANDegradation(
        sf, 16, kind, shuffle_prob=0.5, use_sharp=kind == 'bsrgan_plus', exact_sizes=exact_sizes)
    plans = _plans(degrader, img.shape[:2], 12, sf, drop=NOISE_STEPS + ('jpeg', ))
    hr = _chw(img)[None].repeat(12, 1, 1, 1)
    lq, gt = degrader.degrade_plans(hr, plans)
    assert lq.shape == (12, 3, 16, 16) and gt.shape == (12, 3, 16 * sf, 16 * sf)
    assert degrader.last_num_calls < sum(len(compile_plan(p['steps'], (96, 96))[0]) for p in plans)
    for i, plan in enumerate(plans):
        ref_lq, ref_hq = cpu.apply_plan(img, plan, None)
        np.testing.assert_allclose(_hwc(lq[i]), ref_lq, atol=1e-4, err_msg=f'sample {i}')
        np.testing.assert_allclose(_hwc(gt[i]), ref_hq, atol=1e-5, err_msg=f'sample {i}')


@MODES
@pytest.mark.parametrize('kind', ['bsrgan', 'bsrgan_plus'])
def test_batched_jpeg_plans_equal_single_sample_execution(kind, exact_sizes):
    """With every JPEG step kept, a batch gives each sample what it gets alone (the codec sees its own 16x16 MCUs)."""
    img = _photo(96)
    degrader = TorchBSRGANDegradation(4, 16, kind, shuffle_prob=0.5, exact_sizes=exact_sizes)
    plans = _plans(degrader, img.shape[:2], 12, 7)
    hr = _chw(img)[None].repeat(12, 1, 1, 1)
    lq, gt = degrader.degrade_plans(hr, plans)
    jpeger = degrader._tools(torch.device('cpu'))[0]
    for i, plan in enumerate(plans):
        out, hq, quality = degrader.apply_plan(hr[i], plan, None)
        top, left = plan['crop']
        alone = jpeg_torch(out[None], [quality], jpeger)[0, :, top:top + 16, left:left + 16]
        np.testing.assert_allclose(lq[i].numpy(), alone.numpy(), atol=1e-6, err_msg=f'sample {i}')
        assert torch.equal(gt[i], hq[:, 4 * top:4 * (top + 16), 4 * left:4 * (left + 16)])


@MODES
def test_batched_noise_steps_have_the_drawn_statistics(exact_sizes):
    """Per-sample noise of every kind in one batch: levels, gray = one field, covariance, Poisson variance."""
    cov = next(c for c in (cpu.sample_noise(np.random.default_rng(s)) for s in range(100)) if c['mode'] == 'correlated')
    steps = [('gaussian_noise', {
        'mode': 'color',
        'sigma': 0.05,
        'cov': None
    }), ('gaussian_noise', {
        'mode': 'gray',
        'sigma': 0.08,
        'cov': None
    }), ('gaussian_noise', cov), ('speckle_noise', {
        'mode': 'color',
        'sigma': 0.1,
        'cov': None
    }), ('poisson_noise', {
        'vals': 100.0,
        'gray': False
    }), ('poisson_noise', {
        'vals': 100.0,
        'gray': True
    })]
    size = (160, 160) if exact_sizes else (160, 128)
    plans = [{'sf': 4, 'hr_hw': size, 'steps': [step], 'crop': (0, 0), 'lq_patchsize': 8} for step in steps]
    degrader = TorchBSRGANDegradation(4, 8, exact_sizes=exact_sizes)
    hr = torch.full((len(plans), 3) + size, 0.5)
    canvas = degrader._run(hr, plans, torch.Generator().manual_seed(0), final_crop=False)[0].double()
    residual = canvas[:, :, :size[0], :size[1]].reshape(len(plans), 3, -1) - 0.5
    np.testing.assert_allclose(residual[0].std(1).numpy(), 0.05, rtol=0.02)
    assert torch.equal(residual[1][0], residual[1][1]) and abs(residual[1][0].std().item() - 0.08) < 0.002
    np.testing.assert_allclose(torch.cov(residual[2]).numpy(), cov['cov'], atol=4e-4)
    np.testing.assert_allclose(residual[3].std(1).numpy(), 0.05, rtol=0.02)  # 0.5 * 0.1
    np.testing.assert_allclose(residual[4].var(1).numpy(), 0.005, rtol=0.05)  # Poisson(50) / 100
    assert torch.equal(residual[5][0], residual[5][1]) and abs(residual[5][0].var().item() - 0.005) < 3e-4


def test_schedule_keeps_every_sample_in_order_and_batches_rounds():
    degrader = TorchBSRGANDegradation(4, 72, 'bsrgan_plus', shuffle_prob=0.5)
    rng = np.random.default_rng(0)
    programs = [compile_plan(degrader.sample_plan(rng, (288, 288))['steps'], (288, 288))[0] for _ in range(48)]
    for calls in (schedule(programs), split_by_size(schedule(programs))):
        seen = [[] for _ in programs]
        for kind, members, ops in calls:
            assert len(set(members)) == len(members) and all(op.kind == kind for op in ops)
            for i, op in zip(members, ops):
                seen[i].append(op)
        assert all(s == list(p) for s, p in zip(seen, programs))
    calls = schedule(programs)
    assert len(calls) < 0.1 * sum(len(p) for p in programs)  # 48 samples x ~11 ops in ~40 batched calls
    for kind, members, ops in split_by_size(calls):
        assert len({(op.in_hw, op.out_hw) for op in ops}) == 1


def test_torch_calls_per_batch_grow_far_slower_than_the_batch():
    """Launch-count proxy for the GPU: dispatched non-view aten ops per batch (the old per-sample loop: ~100/sample),
    and no tensor built from host data inside a call (each would be a blocking host-to-device copy on CUDA)."""
    dispatch = pytest.importorskip('torch.utils._python_dispatch')

    class Count(dispatch.TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.calls = self.from_host = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += not func.is_view
            self.from_host += func.overloadpacket.__name__ in ('lift_fresh', 'lift')
            return func(*args, **(kwargs or {}))

    degrader = TorchBSRGANDegradation(4, 8, 'bsrgan_plus', shuffle_prob=0.5, use_sharp=True, exact_sizes=False)
    degrader(torch.rand(2, 3, 40, 40), 1)  # builds DiffJPEG / USMSharp
    for quality in range(30, 96):
        jpeg_quality_to_factor(quality)  # host-side cache (a CPU scalar op on a miss)
    counts = {}
    for batch in (4, 64):
        hr = torch.rand(batch, 3, 40, 40)
        with Count() as count:
            degrader(hr, 0)
        counts[batch] = count.calls
        assert count.from_host == 0
    assert counts[64] < 20 * 64 and counts[64] < 4 * counts[4], counts


def test_quality_factors_are_bit_identical_to_diffjpeg():
    from basicsr.utils.diffjpeg import quality_to_factor
    for quality in range(1, 101):
        ref = quality_to_factor(torch.tensor(float(quality), dtype=torch.float32))
        assert ref.item() == jpeg_quality_to_factor(quality), quality


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('kind', ['bsrgan', 'bsrgan_plus'])
def test_batched_degradation_on_cuda_runs_without_host_sync_and_matches_the_cpu(kind):
    device = torch.device('cuda')
    img = _photo(96)
    degrader = TorchBSRGANDegradation(4, 16, kind, shuffle_prob=0.5, use_sharp=kind == 'bsrgan_plus')
    hr = _chw(img)[None].repeat(16, 1, 1, 1).to(device)
    degrader(hr, 0)  # warm-up: cuDNN, the pinned host allocator, the operator cache
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')  # any host-device synchronisation raises
    try:
        lq, gt = degrader(hr, 1)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert lq.is_cuda and gt.is_cuda and lq.shape == (16, 3, 16, 16) and gt.shape == (16, 3, 64, 64)
    assert torch.isfinite(lq).all() and lq.min() >= 0 and lq.max() <= 1
    # poisson / speckle / every Gaussian mode with the CUDA generator (the plans of bsrgan_plus draw them rarely)
    noisy = _plans(degrader, img.shape[:2], 16, 3, drop=())
    for i, step in enumerate(['poisson_gray', 'poisson_color', 'speckle', 'correlated'] * 4):
        extra = {
            'poisson_gray': ('poisson_noise', {
                'vals': 300.0,
                'gray': True
            }),
            'poisson_color': ('poisson_noise', {
                'vals': 300.0,
                'gray': False
            }),
            'speckle': ('speckle_noise', {
                'mode': 'gray',
                'sigma': 0.05,
                'cov': None
            }),
            'correlated': ('gaussian_noise',
                           next(
                               c for c in (cpu.sample_noise(np.random.default_rng(s)) for s in range(100))
                               if c['mode'] == 'correlated'))
        }[step]
        noisy[i]['steps'].insert(0, extra)
    lq, _ = degrader.degrade_plans(hr, noisy, torch.Generator(device=device).manual_seed(0))
    assert lq.is_cuda and torch.isfinite(lq).all()
    # deterministic plans: the device execution equals the CPU path (TF32 off inside the degradation)
    plans = _plans(degrader, img.shape[:2], 16, 5, drop=NOISE_STEPS + ('jpeg', ))
    lq, gt = degrader.degrade_plans(hr, plans)
    for i, plan in enumerate(plans):
        ref_lq, ref_hq = cpu.apply_plan(img, plan, None)
        np.testing.assert_allclose(_hwc(lq[i]), ref_lq, atol=2e-4)
        np.testing.assert_allclose(_hwc(gt[i]), ref_hq, atol=1e-5)


@MODES
def test_hand_edited_plans_standalone_clip_and_mixed_sharpening(exact_sizes):
    """Plans are executed as given: a clip with no resize before it, USM sharpening on some samples only."""
    img = _photo(96) * 1.2 - 0.1  # out of [0, 1]: the leading clip matters
    degrader = TorchBSRGANDegradation(4, 16, 'bsrgan_plus', shuffle_prob=0.5, exact_sizes=exact_sizes)
    plans = _plans(degrader, img.shape[:2], 4, 11, drop=NOISE_STEPS + ('jpeg', ))
    for i, plan in enumerate(plans):
        plan['steps'].insert(0, ('clip', {}))
        plan['sharpen'] = i % 2 == 0
    lq, gt = degrader.degrade_plans(_chw(img)[None].repeat(4, 1, 1, 1), plans)
    for i, plan in enumerate(plans):
        ref_lq, ref_hq = cpu.apply_plan(img, plan, None)
        np.testing.assert_allclose(_hwc(lq[i]), ref_lq, atol=1e-4, err_msg=f'sample {i}')
        np.testing.assert_allclose(_hwc(gt[i]), ref_hq, atol=1e-5, err_msg=f'sample {i}')


def test_padded_mode_keeps_far_apart_sizes_in_separate_calls():
    """BSRGAN+ can enlarge to 4x: samples above 512 pixels get their own calls, and every sample stays exact."""
    img = _photo(128)
    kernel = cpu.anisotropic_gaussian_kernel(9, 0.3, 3.0, 1.0)
    sizes = [(600, 560), (40, 44), (300, 300)]
    plans = [{
        'sf':
        4,
        'hr_hw': (128, 128),
        'steps': [('resize', {
            'size': size,
            'interp': 2
        }), ('clip', {}), ('blur', {
            'kernel': kernel
        }), ('resize', {
            'size': (32, 32),
            'interp': 3
        }), ('clip', {})],
        'crop': (3 * i, 5),
        'lq_patchsize':
        16
    } for i, size in enumerate(sizes)]
    calls = split_by_size(schedule([compile_plan(p['steps'], (128, 128))[0] for p in plans]), exact=False)
    assert [members for _, members, _ in calls] == [[0], [1, 2]] * 3  # 600 apart from 40 and 300
    degrader = TorchBSRGANDegradation(4, 16, exact_sizes=False)
    lq, gt = degrader.degrade_plans(_chw(img)[None].repeat(3, 1, 1, 1), plans)
    for i, plan in enumerate(plans):
        ref_lq, ref_hq = cpu.apply_plan(img, plan, None)
        np.testing.assert_allclose(_hwc(lq[i]), ref_lq, atol=1e-4, err_msg=f'sample {i}')
        np.testing.assert_array_equal(_hwc(gt[i]), ref_hq)


# ------------------------------------------------------------------------------------------------ one channel
def test_grey_jpeg_codes_only_the_luma_plane():
    grey = torch.from_numpy(_photo(96).mean(axis=2, keepdims=True)).permute(2, 0, 1)[None]
    jpeger = TorchBSRGANDegradation(4, 16)._tools(torch.device('cpu'))[0]
    out = jpeg_torch(grey, [40], jpeger)
    colour = jpeg_torch(grey.expand(-1, 3, -1, -1), [40], jpeger)
    assert out.shape == grey.shape
    assert torch.allclose(out[:, 0], colour[:, 1], atol=1.5 / 255)  # the Y plane of the R = G = B colour JPEG
    # the libjpeg greyscale JPEG of the CPU path, up to DiffJPEG's float DCT
    ref = cpu.jpeg_compress(_hwc(grey[0]), 40)
    assert _psnr(_hwc(out[0]), ref) > 33  # the bound of the colour comparison above


@MODES
@pytest.mark.parametrize('kind', ['bsrgan', 'bsrgan_plus'])
def test_grey_batches_follow_the_cpu_grey_path(kind, exact_sizes):
    grey = _photo(96).mean(axis=2, keepdims=True)
    degrader = TorchBSRGANDegradation(4, 16, kind, shuffle_prob=0.5, exact_sizes=exact_sizes)
    plans = _plans(degrader, grey.shape[:2], 6, 3, drop=NOISE_STEPS + ('jpeg', ))
    hr = _chw(grey)[None].repeat(6, 1, 1, 1)
    lq, gt = degrader.degrade_plans(hr, plans)
    assert lq.shape == (6, 1, 16, 16) and gt.shape == (6, 1, 64, 64)
    for i, plan in enumerate(plans):
        ref_lq, ref_hq = cpu.apply_plan(grey, plan, None)
        np.testing.assert_allclose(_hwc(lq[i]), ref_lq, atol=1e-4, err_msg=f'sample {i}')
    lq, gt = degrader(hr, 0)  # full random plans, noise and JPEG included
    assert lq.shape == (6, 1, 16, 16) and torch.isfinite(lq).all() and 0 <= lq.min() and lq.max() <= 1


def test_grey_noise_operator_is_the_luma_row():
    from srplugins.ops.bsrgan_degradation_torch import _noise_matrix, _run_step
    cov = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.5, 1.0, 2.0]]) * 1e-3
    for params in ({'mode': 'color', 'sigma': 0.1}, {'mode': 'gray', 'sigma': 0.1}, {'mode': 'correlated', 'cov': cov}):
        mat = torch.tensor(_noise_matrix(params), dtype=torch.float32)[None]
        img = torch.full((1, 1, 300, 300), 0.5)
        out = _run_step({'kind': 'noise', 'mat': 0}, img, lambda _: mat, torch.Generator().manual_seed(0), None)
        std = cpu.luma_noise_std(params['mode'], params.get('sigma'), cov)
        assert out.shape == img.shape and float((out - 0.5).std()) == pytest.approx(std, rel=0.02), params['mode']
