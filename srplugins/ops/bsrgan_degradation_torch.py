"""BSRGAN degradation run with torch on the model's device (CPU or CUDA), for batches of HR patches.

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 3. Official behaviour followed: KAIR ``utils/utils_blindsr.py`` through the plans of
``srplugins.ops.bsrgan_degradation``: every random parameter of a sample (op order, kernels, sizes, interpolation
modes, noise types and levels, JPEG qualities, crop) is drawn per sample by the same ``sample_bsrgan_plan`` /
``sample_bsrgan_plus_plan`` as the CPU path, so both paths draw from the same distribution; only the execution
differs. The ops are the CPU primitives written as tensor ops:

    * blur and the shifted-kernel "nearest" branch: true convolution (flipped kernel) with whole-sample-symmetric
      padding (cv2 BORDER_REFLECT_101, repeated for images smaller than the kernel), separable for rank-1 kernels;
    * resize: the exact linear operators of ``cv2.resize`` for float images (INTER_LINEAR, INTER_CUBIC with
      A = -0.75 and replicated borders, INTER_AREA in both its down-scaling and up-scaling forms) and of MATLAB's
      bicubic ``imresize``, applied as two matrix products ``M_h @ img @ M_w^T``;
    * Gaussian (colour / gray / channel-correlated), Poisson and speckle noise drawn from a ``torch.Generator``;
    * USM sharpening with basicsr's ``USMSharp``.

Deliberate difference: JPEG runs through basicsr's ``DiffJPEG`` (non-differentiable rounding, 4:2:0, the standard
IJG tables scaled by quality), the JPEG model Real-ESRGAN trains with, instead of libjpeg through OpenCV. The image
is edge-replicated to a multiple of 16 first (as libjpeg extends partial blocks; DiffJPEG alone pads with zeros) and
the result is rounded to 8 bits like a decoded file. DiffJPEG is not bit-identical to libjpeg (float DCT, no fancy
chroma upsampling), so samples differ from the CPU path in the JPEG artefacts; ``scripts/benchmark.py fidelity
--torch`` measures the statistical match (figures in docs/BSRGAN.md).

Batched execution (why it is fast on a GPU): the samples of a batch follow different op orders through different
intermediate sizes, so the batch is run as a schedule of batched calls. Each plan is compiled on the host into
primitive ops (``conv_sep``, ``conv_full``, ``linear`` = resize / MATLAB resize / stride-sf sampling with its clip,
``noise``, ``speckle``, ``poisson_*``, ``jpeg``); a greedy scheduler (``schedule``) forms rounds, each advancing
every sample whose next op is of one class, and each round runs as one batched call per op kind on a zero-initialised
canvas ``(B, 3, H_max, W_max)`` in which sample i occupies its top-left ``h_i x w_i`` corner. Per-sample parameters
make one call serve different sizes: reflect-101 padding and JPEG edge replication as per-sample gather indices,
per-sample kernels as a grouped convolution (zero-padded to the largest kernel of the call), per-sample resize
operators as zero-padded batched matrices (scattered on the device from their cached sparse form), per-sample noise
covariances as batched 3x3 products, per-sample JPEG quantisation factors through DiffJPEG's ``compress`` /
``decompress``. A sample's pixels never depend on the canvas outside its corner (zero weights, its own indices,
independent JPEG MCUs), so every sample is processed exactly as alone; only the noise realisations depend on the
batch. All parameters of a batch (sampled, compiled, scheduled on the host) travel in one float and one int64 upload
(pinned memory and ``non_blocking`` on CUDA) and nothing is read back, so a batch runs without host-device
synchronisation in a few hundred tensor ops whatever its size. On the CPU, where arithmetic rather than the number
of calls dominates, calls are split per size instead (``exact_sizes``). On CUDA, TF32 is disabled inside the
degradation so the blur and resize operators keep float32 precision.

One-channel batches ``(B, 1, H, W)`` follow the CPU path's grey rule (the luma plane of the RGB degradation): the
noise operator is reduced to its Rec. 601 luma row, Poisson noise is drawn on the plane and JPEG codes the plane
alone (see ``_diffjpeg``).
"""
import contextlib
import functools
import math
import numpy as np
import torch
import torch.nn.functional as F

from srplugins.ops.bsrgan_degradation import _as_rng, _matlab_resize_matrix, sample_bsrgan_plan, sample_bsrgan_plus_plan

__all__ = [
    'cv2_resize_matrices', 'reflect101_index', 'convolve_torch', 'resize_torch', 'imresize_matlab_torch', 'jpeg_torch',
    'jpeg_quality_to_factor', 'gaussian_noise_torch', 'add_poisson_noise_torch', 'compile_plan', 'schedule',
    'split_by_size', 'TorchBSRGANDegradation'
]

_LINEAR, _CUBIC, _AREA = 1, 2, 3
_NAMES = {'bilinear': _LINEAR, 'bicubic': _CUBIC, 'area': _AREA}


# ----------------------------------------------------------------------------------------------------------------
# resize operators
# ----------------------------------------------------------------------------------------------------------------
def _taps_matrix(n_out, n_in, index, weight):
    """Dense (n_out, n_in) matrix from per-output tap indices (clamped to the input) and weights."""
    mat = np.zeros((n_out, n_in))
    rows = np.repeat(np.arange(n_out), index.shape[1])
    np.add.at(mat, (rows, np.clip(index, 0, n_in - 1).ravel()), weight.ravel())
    return mat


def _linear_axis(n_in, n_out, area_mode):
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale  # OpenCV's double arithmetic: floor(dst * scale) must round the same way
    dst = np.arange(n_out, dtype=np.float64)
    if area_mode:  # cv2 INTER_AREA when enlarging: bilinear with area-shaped coefficients
        start = np.floor(dst * scale)
        frac = ((dst + 1) - (start + 1) * inv_scale).astype(np.float32)  # OpenCV rounds to float here
        frac = np.where(frac <= 0, 0.0, frac - np.floor(frac)).astype(np.float64)
    else:
        pos = (dst + 0.5) * scale - 0.5
        start = np.floor(pos)
        frac = pos - start
    start = start.astype(np.int64)
    low = start < 0
    frac[low], start[low] = 0.0, 0
    high = start >= n_in - 1
    frac[high], start[high] = 0.0, n_in - 1
    index = np.stack([start, start + 1], 1)
    return _taps_matrix(n_out, n_in, index, np.stack([1 - frac, frac], 1))


def _cubic_axis(n_in, n_out):
    a = -0.75
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    start = np.floor(pos)
    x = pos - start
    w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    w1 = ((a + 2) * x - (a + 3)) * x * x + 1
    w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    weight = np.stack([w0, w1, w2, 1 - w0 - w1 - w2], 1)
    index = start.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    return _taps_matrix(n_out, n_in, index, weight)


def _area_axis(n_in, n_out):
    """cv2 INTER_AREA shrinking: output cell [d*s, (d+1)*s) averages the input pixels it overlaps, by overlap."""
    scale = n_in / n_out
    mat = np.zeros((n_out, n_in))
    for d in range(n_out):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s1 = math.ceil(f1)
        s2 = min(math.floor(f2), n_in - 1)
        s1 = min(s1, s2)
        if s1 - f1 > 1e-3:
            mat[d, s1 - 1] += (s1 - f1) / cell
        mat[d, s1:s2] += 1.0 / cell
        if f2 - s2 > 1e-3:
            mat[d, s2] += min(min(f2 - s2, 1.0), cell) / cell
    return mat


def _axis_kinds(hw_in, hw_out, interpolation):
    """Per-axis operator kinds of ``cv2.resize`` ('linear', 'cubic', 'area' shrinking, 'area_up' enlarging)."""
    interpolation = _NAMES.get(interpolation, interpolation)
    if interpolation == _LINEAR:
        return 'linear', 'linear'
    if interpolation == _CUBIC:
        return 'cubic', 'cubic'
    if interpolation == _AREA:
        # OpenCV's area averaging needs both axes shrinking (or equal); otherwise both use the bilinear-like form
        shrink = hw_in[0] >= hw_out[0] and hw_in[1] >= hw_out[1]
        return ('area', 'area') if shrink else ('area_up', 'area_up')
    raise ValueError(f'interpolation must be 1 (bilinear), 2 (bicubic) or 3 (area), got {interpolation!r}')


def _axis_matrix(n_in, n_out, kind):
    """Dense (n_out, n_in) float64 operator of one axis.

    ``kind``: 'linear', 'cubic', 'area', 'area_up' (cv2), ('matlab', scale) (MATLAB bicubic with antialiasing) or
    ('select', sf) (sample every sf-th input, ``n_out = ceil(n_in / sf)``).
    """
    if kind == 'linear':
        return _linear_axis(n_in, n_out, False)
    if kind == 'cubic':
        return _cubic_axis(n_in, n_out)
    if kind == 'area':
        return _area_axis(n_in, n_out)
    if kind == 'area_up':
        return _linear_axis(n_in, n_out, True)
    if kind[0] == 'matlab':
        return _matlab_resize_matrix(n_in, kind[1], True)
    if kind[0] == 'select':
        mat = np.zeros((n_out, n_in))
        mat[np.arange(n_out), kind[1] * np.arange(n_out)] = 1.0
        return mat
    raise ValueError(f'unknown axis operator {kind!r}')


@functools.lru_cache(maxsize=4096)
def _axis_sparse(n_in, n_out, kind):
    """Cached non-zeros (rows, cols, values) of ``_axis_matrix``: a few taps per row, so thousands fit in memory."""
    mat = _axis_matrix(n_in, n_out, kind)
    rows, cols = np.nonzero(mat)
    out = (rows.astype(np.int64), cols.astype(np.int64), mat[rows, cols])
    for array in out:
        array.setflags(write=False)
    return out


def cv2_resize_matrices(hw_in, hw_out, interpolation):
    """Linear operators of ``cv2.resize`` on float images: ``resize(img) == M_h @ img @ M_w.T`` per channel.

    Args:
        hw_in (tuple): (H, W) of the input.
        hw_out (tuple): (H', W') of the output (note: ``cv2.resize`` takes (W', H')).
        interpolation (int | str): 1 / 'bilinear', 2 / 'bicubic' or 3 / 'area' (OpenCV codes).

    Returns:
        tuple: M_h (H', H) and M_w (W', W) float64 ndarrays.
    """
    kind_h, kind_w = _axis_kinds(hw_in, hw_out, interpolation)
    return _axis_matrix(hw_in[0], hw_out[0], kind_h), _axis_matrix(hw_in[1], hw_out[1], kind_w)


def _apply_matrices(img, mat_h, mat_w):
    mat_h = torch.as_tensor(mat_h, dtype=img.dtype, device=img.device)
    mat_w = torch.as_tensor(mat_w, dtype=img.dtype, device=img.device)
    return torch.matmul(torch.matmul(mat_h, img), mat_w.t())


def resize_torch(img, size_wh, interpolation):
    """``cv2.resize(img, size_wh, interpolation)`` for (..., H, W) tensors.

    Args:
        img (Tensor): (..., H, W) float tensor.
        size_wh (tuple): Output (width, height), OpenCV order.
        interpolation (int | str): 1 / 'bilinear', 2 / 'bicubic', 3 / 'area'.

    Returns:
        Tensor: (..., height, width), not clipped (OpenCV does not clip float images either).
    """
    h, w = img.shape[-2:]
    mat_h, mat_w = cv2_resize_matrices((h, w), (int(size_wh[1]), int(size_wh[0])), interpolation)
    return _apply_matrices(img, mat_h, mat_w)


def imresize_matlab_torch(img, scale, antialiasing=True):
    """MATLAB bicubic ``imresize`` (``srplugins.ops.bsrgan_degradation.imresize_matlab``) for (..., H, W) tensors."""
    h, w = img.shape[-2:]
    return _apply_matrices(img, _matlab_resize_matrix(h, scale, antialiasing),
                           _matlab_resize_matrix(w, scale, antialiasing))


# ----------------------------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------------------------
def reflect101_index(n, pad):
    """Source indices of a length-``n`` axis padded by ``pad`` on both sides, whole-sample symmetric.

    Reflections repeat when ``pad >= n`` (as OpenCV's ``borderInterpolate`` with BORDER_REFLECT_101); ``n == 1``
    repeats the single sample.

    Returns:
        ndarray: (n + 2*pad,) int64 indices into the axis.
    """
    idx = np.arange(-pad, n + pad)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx).astype(np.int64)


def _pad_reflect101(img, pad_h, pad_w):
    h, w = img.shape[-2:]
    if pad_h < h and pad_w < w and min(h, w) > 1:
        return F.pad(img, (pad_w, pad_w, pad_h, pad_h), mode='reflect')
    rows = torch.as_tensor(reflect101_index(h, pad_h), device=img.device)
    cols = torch.as_tensor(reflect101_index(w, pad_w), device=img.device)
    return img.index_select(-2, rows).index_select(-1, cols)


def convolve_torch(img, kernel):
    """True 2-D convolution of every channel with whole-sample-symmetric padding (torch ``convolve``).

    Equals ``srplugins.ops.bsrgan_degradation.convolve`` (``scipy.ndimage.convolve(mode='mirror')``). Rank-1 kernels
    (isotropic Gaussians) run as two 1-D passes.

    Args:
        img (Tensor): (B, C, H, W) float tensor.
        kernel (ndarray | Tensor): (k, k) kernel, k odd, shared by the batch.

    Returns:
        Tensor: (B, C, H, W).
    """
    kernel = np.asarray(kernel.cpu() if torch.is_tensor(kernel) else kernel, np.float64)
    kh, kw = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f'convolve_torch expects an odd-sized kernel, got shape {kernel.shape}')
    b, c, h, w = img.shape
    flipped = kernel[::-1, ::-1]  # conv2d correlates; flipping makes it a convolution
    padded = _pad_reflect101(img, kh // 2, kw // 2).reshape(b * c, 1, h + kh - 1, w + kw - 1)
    u, s, vt = np.linalg.svd(flipped)
    if s.size > 1 and s[1] <= 1e-9 * s[0]:
        col = torch.as_tensor(np.ascontiguousarray(u[:, 0] * math.sqrt(s[0])), dtype=img.dtype, device=img.device)
        row = torch.as_tensor(np.ascontiguousarray(vt[0] * math.sqrt(s[0])), dtype=img.dtype, device=img.device)
        out = F.conv2d(F.conv2d(padded, col.view(1, 1, kh, 1)), row.view(1, 1, 1, kw))
    else:
        weight = torch.as_tensor(np.ascontiguousarray(flipped), dtype=img.dtype, device=img.device)
        out = F.conv2d(padded, weight.view(1, 1, kh, kw))
    return out.view(b, c, h, w)


# ----------------------------------------------------------------------------------------------------------------
# noise and JPEG
# ----------------------------------------------------------------------------------------------------------------
def gaussian_noise_torch(shape_chw, mode, sigma, generator, cov=None, device='cpu', dtype=torch.float32):
    """Additive Gaussian noise field (torch ``gaussian_noise_field``): (C, H, W), or (1, H, W) for 'gray'."""
    c, h, w = shape_chw
    if mode == 'color':
        return torch.randn((c, h, w), generator=generator, device=device, dtype=dtype) * sigma
    if mode == 'gray':
        return torch.randn((1, h, w), generator=generator, device=device, dtype=dtype) * sigma
    if mode == 'correlated':
        root = torch.as_tensor(_noise_root(cov), dtype=dtype, device=device)
        z = torch.randn((root.shape[0], h, w), generator=generator, device=device, dtype=dtype)
        return torch.einsum('ij,jhw->ihw', root, z)
    raise ValueError(f"noise mode must be 'color', 'gray' or 'correlated', got {mode!r}")


def _noise_root(cov):
    """A with A @ A.T == cov (cov symmetric positive semi-definite), as the CPU path's ``gaussian_noise_field``."""
    evals, evecs = np.linalg.eigh(np.asarray(cov, np.float64))
    return evecs * np.sqrt(np.clip(evals, 0, None))


def _noise_matrix(params):
    """3x3 A such that the noise field is A @ z for z ~ N(0, I) per pixel: colour, gray or correlated noise."""
    if params['mode'] == 'color':
        return np.eye(3) * params['sigma']
    if params['mode'] == 'gray':  # one field for every channel
        mat = np.zeros((3, 3))
        mat[:, 0] = params['sigma']
        return mat
    if params['mode'] == 'correlated':
        return _noise_root(params['cov'])
    raise ValueError(f"noise mode must be 'color', 'gray' or 'correlated', got {params['mode']!r}")


_LUMA = (0.299, 0.587, 0.114)


def _quantise(img):
    return torch.clamp(torch.round(img * 255.0), 0, 255) / 255.0


def add_poisson_noise_torch(img, vals, gray, generator):
    """Poisson noise on an 8-bit-quantised (3, H, W) RGB tensor (torch ``add_poisson_noise``)."""
    return _poisson(img[None], vals, gray, generator)[0]


def _poisson(img, vals, gray, generator):
    """Poisson noise on (B, 3, H, W) (or (B, 1, H, W): drawn on the plane in both modes, as the CPU path);
    ``vals`` a number or a (B, 1, 1, 1) tensor of photon scales."""
    img = _quantise(img)
    if gray and img.shape[1] == 3:  # weights as Python numbers: a weight tensor would be a blocking host-to-device copy
        luma = _quantise(img[:, 0:1] * _LUMA[0] + img[:, 1:2] * _LUMA[1] + img[:, 2:3] * _LUMA[2])
        img = img + torch.poisson(luma * vals, generator=generator) / vals - luma
    else:
        img = torch.poisson(img * vals, generator=generator) / vals
    return torch.clamp(img, 0.0, 1.0)


@functools.lru_cache(maxsize=1024)
def jpeg_quality_to_factor(quality):
    """DiffJPEG's quality -> quantisation-table factor: basicsr's ``quality_to_factor`` on a float32 CPU scalar.

    The value is the one DiffJPEG computes from a float32 quality tensor (torch divides by a scalar through its
    reciprocal, so this is not the plain float32 quotient). Computing it on the host (cached per quality) and passing
    the factors to ``compress`` / ``decompress`` keeps DiffJPEG's ``forward`` from branching on device values, one
    host-device synchronisation per sample.
    """
    from basicsr.utils.diffjpeg import quality_to_factor
    return float(quality_to_factor(torch.tensor(float(quality), dtype=torch.float32)))


def _diffjpeg(img16, factor, jpeger):
    """DiffJPEG compress + decompress of a (B, 3, H, W) batch with H, W multiples of 16; ``factor`` (B,) float32.

    A (B, 1, H, W) grey batch is coded as R = G = B: its chroma planes are constant 128, whose DCT coefficients
    quantise to zero, so only the Y plane is coded (a greyscale JPEG) and the decoded channels are equal; their mean
    is returned as (B, 1, H, W).
    """
    h, w = img16.shape[-2:]
    grey = img16.shape[1] == 1
    img = img16.float().expand(-1, 3, -1, -1) if grey else img16.float()
    y, cb, cr = jpeger.compress(img, factor=factor)
    out = jpeger.decompress(y, cb, cr, h, w, factor=factor)
    if grey:
        out = out.mean(dim=1, keepdim=True)
    return _quantise(torch.clamp(out, 0, 1)).to(img16.dtype)


@torch.no_grad()
def jpeg_torch(img, quality, jpeger):
    """JPEG round trip of a (B, 3, H, W) RGB batch through DiffJPEG, edge-replicated to whole 16x16 MCUs.

    Args:
        img (Tensor): (B, 3, H, W) in [0, 1] (values are clipped and rounded to 8 bits first, as the CPU path).
        quality (Sequence[float]): (B,) JPEG qualities, host numbers (a tensor is read back to the host first).
        jpeger (DiffJPEG): basicsr ``DiffJPEG(differentiable=False)`` on the image's device.

    Returns:
        Tensor: (B, 3, H, W) with values k/255.
    """
    img = _quantise(torch.clamp(img, 0, 1))
    h, w = img.shape[-2:]
    pad_h, pad_w = -h % 16, -w % 16
    if pad_h or pad_w:
        img = F.pad(img, (0, pad_w, 0, pad_h), mode='replicate')
    quality = quality.tolist() if torch.is_tensor(quality) else quality
    factor = torch.tensor([jpeg_quality_to_factor(q) for q in np.ravel(quality)], dtype=torch.float32)
    return _diffjpeg(img, factor.to(img.device), jpeger)[..., :h, :w].contiguous()


# ----------------------------------------------------------------------------------------------------------------
# batched execution: compile plans to primitive ops, schedule rounds, stage parameters, run
# ----------------------------------------------------------------------------------------------------------------
class _Op:
    """One primitive op of one sample: ``kind``, input / output (h, w) and host parameters."""

    __slots__ = ('kind', 'in_hw', 'out_hw', 'params')

    def __init__(self, kind, in_hw, out_hw, **params):
        self.kind, self.in_hw, self.out_hw, self.params = kind, in_hw, out_hw, params


# scheduling class of each op kind: a round advances the samples whose next op is of one class, with one batched call
# per kind present (dict order: the calls' order within a round and the tie-break between classes)
_ROUND_CLASS = {
    'conv_sep': 'conv',
    'conv_full': 'conv',
    'linear': 'linear',
    'noise': 'noise',
    'speckle': 'noise',
    'poisson_gray': 'noise',
    'poisson_color': 'noise',
    'jpeg': 'jpeg',
    'clip': 'clip'
}
_KINDS = tuple(_ROUND_CLASS)
_CLASSES = ('conv', 'linear', 'noise', 'jpeg', 'clip')


def _conv_op(kernel, hw):
    """Convolution op with the flipped kernel (conv2d correlates); rank-1 kernels split into a column and a row."""
    flipped = np.asarray(kernel, np.float64)[::-1, ::-1]
    if flipped.ndim != 2 or flipped.shape[0] % 2 == 0 or flipped.shape[1] % 2 == 0:
        raise ValueError(f'blur kernels must be 2-D with odd sides, got shape {flipped.shape}')
    total = flipped.sum()
    if total != 0:
        col, row = flipped.sum(1), flipped.sum(0) / total
        if np.abs(np.outer(col, row) - flipped).max() <= 1e-9 * np.abs(flipped).max():
            return _Op('conv_sep', hw, hw, col=col, row=row)
    return _Op('conv_full', hw, hw, kernel=flipped)


def _linear_op(hw, out_hw, kind_h, kind_w):
    return _Op('linear', hw, out_hw, kind_h=kind_h, kind_w=kind_w, clip=False)


def compile_plan(steps, hw):
    """Primitive ops of plan ``steps`` run on an (h, w) image, in order; the camera-ISP hook compiles to nothing.

    Returns:
        tuple: (list of ``_Op``, output (h, w)).
    """
    ops = []
    for name, params in steps:
        if name == 'blur':
            ops.append(_conv_op(params['kernel'], hw))
        elif name == 'resize':
            out_hw = (int(params['size'][1]), int(params['size'][0]))
            ops.append(_linear_op(hw, out_hw, *_axis_kinds(hw, out_hw, params['interp'])))
            hw = out_hw
        elif name == 'imresize_matlab':
            kind = ('matlab', float(params['scale']))
            out_hw = (math.ceil(hw[0] * kind[1]), math.ceil(hw[1] * kind[1]))
            ops.append(_linear_op(hw, out_hw, kind, kind))
            hw = out_hw
        elif name == 'shifted_nearest':
            sf = int(params['sf'])
            ops.append(_conv_op(params['kernel'], hw))
            out_hw = (-(-hw[0] // sf), -(-hw[1] // sf))
            ops.append(_linear_op(hw, out_hw, ('select', sf), ('select', sf)))
            hw = out_hw
        elif name == 'clip':
            if ops and ops[-1].kind == 'linear':  # a resize and its clip run as one op
                ops[-1].params['clip'] = True
            else:
                ops.append(_Op('clip', hw, hw))
        elif name in ('gaussian_noise', 'speckle_noise'):
            ops.append(_Op('noise' if name == 'gaussian_noise' else 'speckle', hw, hw, mat=_noise_matrix(params)))
        elif name == 'poisson_noise':
            ops.append(_Op('poisson_gray' if params['gray'] else 'poisson_color', hw, hw, vals=float(params['vals'])))
        elif name == 'jpeg':
            ops.append(
                _Op('jpeg',
                    hw, (-(-hw[0] // 16) * 16, -(-hw[1] // 16) * 16),
                    factor=jpeg_quality_to_factor(params['quality'])))
        elif name != 'isp':  # camera-ISP hook: KAIR ships none (off, as the CPU path's default)
            raise ValueError(f'unknown degradation step {name!r}')
    return ops, hw


def schedule(programs):
    """Greedy round schedule of per-sample op lists (any interleaving is valid: samples are independent).

    Each round takes one class of ops (``_ROUND_CLASS``: convolutions, resizes, noise, JPEG) and advances every sample
    whose next op is of that class; the class chosen maximises the sum of the squared remaining op counts of the
    samples it advances, so long programs move first (about 20 rounds for 48 BSRGAN samples of about 9 ops each,
    against 28 when simply taking the most common class).

    Args:
        programs (list[list[_Op]]): Per-sample op lists.

    Returns:
        list[tuple]: (op kind, sample indices, their ops) per batched call, in execution order; every sample's ops
        appear in order.
    """
    position = [0] * len(programs)
    calls = []
    while True:
        ready = {}
        for i, ops in enumerate(programs):
            if position[i] < len(ops):
                ready.setdefault(_ROUND_CLASS[ops[position[i]].kind], []).append(i)
        if not ready:
            return calls
        chosen = max(
            ready, key=lambda c: (sum((len(programs[i]) - position[i])**2 for i in ready[c]), -_CLASSES.index(c)))
        by_kind = {}
        for i in ready[chosen]:
            by_kind.setdefault(programs[i][position[i]].kind, []).append(i)
            position[i] += 1
        for kind in sorted(by_kind, key=_KINDS.index):
            members = by_kind[kind]
            calls.append((kind, members, [programs[i][position[i] - 1] for i in members]))


def split_by_size(calls, exact=True):
    """Split each batched call of ``schedule`` by the sizes of its samples.

    ``exact``: one call per input size, output size and kernel shape (used on the CPU, where arithmetic rather than
    the number of calls dominates: every call runs at its samples' own size). Otherwise one call per power-of-two
    class of the largest side, sides up to 512 forming one class (used on CUDA: a 288x288 BSRGAN batch stays in one
    class, while in BSRGAN+, whose resizes can enlarge to 4x, samples shrunk to a few dozen pixels are not padded to
    a neighbour enlarged to 1000, which would multiply a resize's arithmetic by up to 10^4). Member order is kept.
    """
    out = []
    for kind, members, ops in calls:
        groups = {}
        for i, op in zip(members, ops):
            if exact:
                shapes = tuple(np.shape(v) for v in op.params.values() if isinstance(v, np.ndarray))
                key = (op.in_hw, op.out_hw, shapes)
            else:
                key = max(9, math.ceil(math.log2(max(op.in_hw + op.out_hw))))  # sides up to 512 stay together
            group = groups.setdefault(key, ([], []))
            group[0].append(i)
            group[1].append(op)
        out += [(kind, m, o) for m, o in groups.values()]
    return out


class _Staging:
    """Host arrays of one batch, packed into one float and one int64 buffer and uploaded in two copies.

    Array kinds: 'f' (parameters in the images' dtype), 'f32' (kept in float32: DiffJPEG factors), 'i' (int64).
    """

    def __init__(self, float_dtype):
        self.float_dtype = float_dtype
        self._arrays = {'f': [], 'i': []}
        self._size = {'f': 0, 'i': 0}
        self._device = None

    def add(self, array, kind='f'):
        """Queue an array; returns a handle that ``get`` turns into the device tensor after ``upload``."""
        array = np.asarray(array)
        buffer = 'i' if kind == 'i' else 'f'
        handle = (kind, self._size[buffer], array.shape)
        self._arrays[buffer].append(array)
        self._size[buffer] += array.size
        return handle

    def upload(self, device):
        pin = device.type == 'cuda'
        host_float = torch.float64 if self.float_dtype == torch.float64 else torch.float32
        self._device = {}
        for buffer, dtype in (('f', host_float), ('i', torch.int64)):
            host = torch.empty(self._size[buffer], dtype=dtype, pin_memory=pin)
            view, offset = host.numpy(), 0
            for array in self._arrays[buffer]:
                view[offset:offset + array.size] = array.ravel()
                offset += array.size
            self._device[buffer] = host.to(device, non_blocking=pin)
        self._arrays = None

    def get(self, handle):
        kind, offset, shape = handle
        flat = self._device['i' if kind == 'i' else 'f']
        out = flat[offset:offset + int(np.prod(shape, dtype=np.int64))].view(shape)
        if kind == 'f':
            return out.to(self.float_dtype)
        return out.float() if kind == 'f32' else out


def _padded(arrays, shape):
    """Stack 1-D / 2-D arrays centred in zero arrays of ``shape`` (odd kernel sides)."""
    out = np.zeros((len(arrays), ) + tuple(shape))
    for i, array in enumerate(arrays):
        offsets = [(s - a) // 2 for s, a in zip(shape, array.shape)]
        out[(i, ) + tuple(slice(o, o + a) for o, a in zip(offsets, array.shape))] = array
    return out


def _index_rows(lengths, total, fn):
    """(n, total) int64 index rows: ``fn(length)`` then zeros (any valid index: those outputs are never read)."""
    out = np.zeros((len(lengths), total), np.int64)
    for i, length in enumerate(lengths):
        idx = fn(length)
        out[i, :idx.size] = idx
    return out


def _stage_round(staging, kind, members, ops, batch_size):
    """Host part of one round: extents and the staged parameters of its samples."""
    n = len(members)
    in_h = max(op.in_hw[0] for op in ops)
    in_w = max(op.in_hw[1] for op in ops)
    out_h = max(op.out_hw[0] for op in ops)
    out_w = max(op.out_hw[1] for op in ops)
    step = {'kind': kind, 'in_hw': (in_h, in_w), 'out_hw': (out_h, out_w)}
    step['idx'] = None if n == batch_size else staging.add(np.asarray(members, np.int64), 'i')
    uniform = all(op.in_hw == (in_h, in_w) for op in ops)
    if kind in ('conv_sep', 'conv_full'):
        if kind == 'conv_sep':
            kh = max(op.params['col'].size for op in ops)
            kw = max(op.params['row'].size for op in ops)
            step['col'] = staging.add(_padded([op.params['col'] for op in ops], (kh, )))
            step['row'] = staging.add(_padded([op.params['row'] for op in ops], (kw, )))
        else:
            kh = max(op.params['kernel'].shape[0] for op in ops)
            kw = max(op.params['kernel'].shape[1] for op in ops)
            step['kernel'] = staging.add(_padded([op.params['kernel'] for op in ops], (kh, kw)))
        pad_h, pad_w = kh // 2, kw // 2
        step['pad'] = (pad_h, pad_w)
        if uniform and pad_h < in_h and pad_w < in_w and min(in_h, in_w) > 1:
            step['rows'] = step['cols'] = None  # one size, single reflection: F.pad(mode='reflect') is reflect-101
        else:
            step['rows'] = staging.add(
                _index_rows([op.in_hw[0] for op in ops], in_h + 2 * pad_h, lambda m: reflect101_index(m, pad_h)), 'i')
            step['cols'] = staging.add(
                _index_rows([op.in_hw[1] for op in ops], in_w + 2 * pad_w, lambda m: reflect101_index(m, pad_w)), 'i')
    elif kind == 'linear':
        shared = all(
            op.params['kind_h'] == op.params['kind_w'] and op.in_hw[0] == op.in_hw[1] and op.out_hw[0] == op.out_hw[1]
            for op in ops) and (in_h, out_h) == (in_w, out_w)
        for axis, (n_out, n_in) in enumerate(((out_h, in_h), (out_w, in_w))):
            if axis == 1 and shared:  # square images, same operator on both axes (the common case)
                step['mat_w'] = step['mat_h']
                break
            flat, values = [], []
            for i, op in enumerate(ops):
                kind_axis = op.params['kind_w' if axis else 'kind_h']
                rows, cols, vals = _axis_sparse(op.in_hw[axis], op.out_hw[axis], kind_axis)
                flat.append((i * n_out + rows) * n_in + cols)
                values.append(vals)
            step['mat_w' if axis else 'mat_h'] = (staging.add(np.concatenate(flat), 'i'),
                                                  staging.add(np.concatenate(values)), (n, n_out, n_in))
        clips = [op.params['clip'] for op in ops]
        if all(clips) or not any(clips):
            step['clip'] = 'all' if clips[0] else 'none'
        else:  # per-sample bounds: [0, 1] or unbounded
            step['clip'] = staging.add(np.stack([np.where(clips, 0.0, -np.inf), np.where(clips, 1.0, np.inf)], 1))
    elif kind in ('noise', 'speckle'):
        step['mat'] = staging.add(np.stack([op.params['mat'] for op in ops]))
    elif kind in ('poisson_gray', 'poisson_color'):
        step['vals'] = staging.add(np.array([op.params['vals'] for op in ops]))
    elif kind == 'jpeg':
        step['factor'] = staging.add(np.array([op.params['factor'] for op in ops], np.float32), 'f32')
        if uniform:  # one size: edge replication is a plain F.pad (or nothing)
            step['rows'] = step['cols'] = None
        else:
            step['rows'] = staging.add(
                _index_rows([op.in_hw[0] for op in ops], out_h, lambda m: np.minimum(np.arange(out_h), m - 1)), 'i')
            step['cols'] = staging.add(
                _index_rows([op.in_hw[1] for op in ops], out_w, lambda m: np.minimum(np.arange(out_w), m - 1)), 'i')
    return step


def _gather_hw(img, rows, cols):
    """img (n, c, H, W) -> (n, c, len(rows), len(cols)) with per-sample index rows (n, R) and (n, C)."""
    n, c, _, w = img.shape
    img = torch.gather(img, 2, rows.view(n, 1, -1, 1).expand(n, c, rows.shape[1], w))
    return torch.gather(img, 3, cols.view(n, 1, 1, -1).expand(n, c, rows.shape[1], cols.shape[1]))


def _grouped_conv(img, weight):
    """Correlate every channel of sample i of ``img`` (n, c, H, W) with its own kernel ``weight[i]`` (n, kh, kw)."""
    n, c = img.shape[:2]
    kernel = weight[:, None].expand(n, c, *weight.shape[1:]).reshape(n * c, 1, *weight.shape[1:])
    out = F.conv2d(img.reshape(1, n * c, *img.shape[-2:]), kernel, groups=n * c)
    return out.view(n, c, *out.shape[-2:])


def _run_step(step, img, get, generator, jpeger):
    """Device part of one round on the canvas crop ``img`` (n, 3, in_h, in_w) of its samples."""
    kind = step['kind']
    n, c, h, w = img.shape
    if kind in ('conv_sep', 'conv_full'):
        pad_h, pad_w = step['pad']
        rows, cols = (None, None) if step['rows'] is None else (get(step['rows']), get(step['cols']))
    if kind == 'conv_sep':  # rows padded, column kernel; then columns padded, row kernel
        if rows is None:
            padded = F.pad(img, (0, 0, pad_h, pad_h), mode='reflect')
        else:
            padded = torch.gather(img, 2, rows.view(n, 1, -1, 1).expand(n, c, rows.shape[1], w))
        out = _grouped_conv(padded, get(step['col'])[:, :, None])
        if cols is None:
            padded = F.pad(out, (pad_w, pad_w, 0, 0), mode='reflect')
        else:
            padded = torch.gather(out, 3, cols.view(n, 1, 1, -1).expand(n, c, h, cols.shape[1]))
        return _grouped_conv(padded, get(step['row'])[:, None, :])
    if kind == 'conv_full':
        if rows is None:
            padded = F.pad(img, (pad_w, pad_w, pad_h, pad_h), mode='reflect')
        else:
            padded = _gather_hw(img, rows, cols)
        return _grouped_conv(padded, get(step['kernel']))
    if kind == 'linear':
        mats = []
        for key in ('mat_h', 'mat_w'):
            flat, values, shape = step[key]
            mat = img.new_zeros(int(np.prod(shape))).scatter_(0, get(flat), get(values))
            mats.append(mat.view(shape[0], 1, *shape[1:]))
        out = torch.matmul(torch.matmul(mats[0], img), mats[1].transpose(-1, -2))
        if step['clip'] == 'all':
            return torch.clamp(out, 0.0, 1.0)
        if step['clip'] == 'none':
            return out
        bounds = get(step['clip'])
        return torch.clamp(out, min=bounds[:, 0].view(n, 1, 1, 1), max=bounds[:, 1].view(n, 1, 1, 1))
    if kind == 'clip':
        return torch.clamp(img, 0.0, 1.0)
    if kind in ('noise', 'speckle'):
        z = torch.randn((n, 3, h, w), generator=generator, device=img.device, dtype=img.dtype)
        mat = get(step['mat'])
        if c == 1:  # grey: the Rec. 601 luma row of the RGB noise operator (CPU path: ``luma_noise_std``)
            mat = mat[:, 0:1] * _LUMA[0] + mat[:, 1:2] * _LUMA[1] + mat[:, 2:3] * _LUMA[2]
        noise = torch.matmul(mat, z.view(n, 3, h * w)).view(n, c, h, w)
        if kind == 'noise':
            return torch.clamp(img + noise, 0.0, 1.0)
        img = torch.clamp(img, 0.0, 1.0)
        return torch.clamp(img + img * noise, 0.0, 1.0)
    if kind in ('poisson_gray', 'poisson_color'):
        return _poisson(img, get(step['vals']).view(n, 1, 1, 1), kind == 'poisson_gray', generator)
    if kind == 'jpeg':
        img = _quantise(torch.clamp(img, 0, 1))
        if step['rows'] is not None:
            img = _gather_hw(img, get(step['rows']), get(step['cols']))
        elif step['out_hw'] != (h, w):
            img = F.pad(img, (0, step['out_hw'][1] - w, 0, step['out_hw'][0] - h), mode='replicate')
        return _diffjpeg(img, get(step['factor']), jpeger)
    raise ValueError(f'unknown op kind {kind!r}')


@contextlib.contextmanager
def _full_float32(device):
    """Disable TF32 in CUDA convolutions / matrix products (10-bit mantissas would blur the operators)."""
    if device.type != 'cuda':
        yield
        return
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


# ----------------------------------------------------------------------------------------------------------------
# the batched degradation
# ----------------------------------------------------------------------------------------------------------------
class TorchBSRGANDegradation:
    """BSRGAN / BSRGAN+ degradation of HR batches with tensor ops on their device.

    Args:
        scale (int): 2, 3 or 4.
        lq_patchsize (int): LQ side of every output pair (HQ side ``lq_patchsize*scale``).
        degradation_type (str): 'bsrgan' or 'bsrgan_plus'. Default: 'bsrgan'.
        shuffle_prob (float): BSRGAN+ full-shuffle probability. Default: 0.1 (KAIR's dataset default).
        use_sharp (bool): BSRGAN+ USM sharpening of the input (and target). Default: False.
        exact_sizes (bool, optional): Run every batched call at its samples' own sizes (``split_by_size``: least
            arithmetic, more calls) instead of padding samples within a power-of-two size class to the largest one
            (fewest calls). Default None: True on the CPU, where arithmetic dominates, False on other devices, where
            kernel launches do. Results are the same either way up to float rounding (the noise draws differ).

    Call with ``(hr, rng)``: ``hr`` (B, 3, H, W) RGB in [0, 1] (H, W >= lq_patchsize*scale after a mod crop), ``rng``
    a ``numpy.random.Generator`` (or seed) that draws the per-sample plans and seeds the noise generator. Returns
    ``lq`` (B, 3, p, p) and ``gt`` (B, 3, p*scale, p*scale) on the device and dtype of ``hr``. ``last_num_calls``
    is the number of batched calls the last batch ran (diagnostics).
    """

    def __init__(self,
                 scale,
                 lq_patchsize,
                 degradation_type='bsrgan',
                 shuffle_prob=0.1,
                 use_sharp=False,
                 exact_sizes=None):
        if scale not in (2, 3, 4):
            raise ValueError(f'BSRGAN degradation scale must be 2, 3 or 4, got {scale!r}')
        if degradation_type not in ('bsrgan', 'bsrgan_plus'):
            raise ValueError(f"degradation_type must be 'bsrgan' or 'bsrgan_plus', got {degradation_type!r}")
        self.scale = scale
        self.lq_patchsize = lq_patchsize
        self.degradation_type = degradation_type
        self.shuffle_prob = shuffle_prob
        self.use_sharp = use_sharp
        self.exact_sizes = exact_sizes
        self.last_num_calls = 0
        self._jpeger = None
        self._sharpener = None
        self._generators = {}

    def _tools(self, device):
        from basicsr.utils import DiffJPEG, USMSharp
        if self._jpeger is None:
            self._jpeger = DiffJPEG(differentiable=False)
            self._sharpener = USMSharp()
        # DiffJPEG's quantisation tables are module-level parameters shared by every instance in the process: check
        # them all, another instance may have moved them to another device
        if any(p.device != device for p in self._jpeger.parameters()):
            self._jpeger.to(device)
        if any(b.device != device for b in self._sharpener.buffers()):
            self._sharpener.to(device)
        return self._jpeger, self._sharpener

    def _generator(self, device, seed):
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
        return self._generators[key].manual_seed(seed)

    def sample_plan(self, rng, hw):
        """One sample's parameters (the CPU path's sampler)."""
        shape = (hw[0], hw[1], 3)
        if self.degradation_type == 'bsrgan':
            return sample_bsrgan_plan(rng, self.scale, shape, self.lq_patchsize)
        return sample_bsrgan_plus_plan(rng, self.scale, shape, self.lq_patchsize, self.shuffle_prob, self.use_sharp)

    def _run(self, hr, plans, generator, final_crop=True):
        """Execute ``plans`` (one per sample of ``hr``), batched; the whole host part comes before any device work.

        Returns:
            tuple: with ``final_crop``, (lq, gt) crops; otherwise (canvas (B, 3, H, W), output sizes, hq).
        """
        device, batch = hr.device, hr.shape[0]
        h, w = plans[0]['hr_hw']
        if any(tuple(plan['hr_hw']) != (h, w) for plan in plans):
            raise ValueError('all plans of a batch must share hr_hw (the batch is one tensor)')
        compiled = [compile_plan(plan['steps'], (h, w)) for plan in plans]
        calls = schedule([ops for ops, _ in compiled])
        calls = split_by_size(calls, self.exact_sizes or (self.exact_sizes is None and device.type == 'cpu'))
        staging = _Staging(hr.dtype)
        steps = [_stage_round(staging, kind, members, ops, batch) for kind, members, ops in calls]
        canvas_h = max([h] + [max(s['in_hw'][0], s['out_hw'][0]) for s in steps])
        canvas_w = max([w] + [max(s['in_hw'][1], s['out_hw'][1]) for s in steps])
        sharpen = [bool(plan.get('sharpen')) for plan in plans]
        if any(sharpen) and not all(sharpen):
            sharpen_mask = staging.add(np.array(sharpen, np.int64), 'i')
        if final_crop:
            p, sf = self.lq_patchsize, plans[0]['sf']
            tops = np.array([plan['crop'][0] for plan in plans], np.int64)[:, None]
            lefts = np.array([plan['crop'][1] for plan in plans], np.int64)[:, None]
            crop = [
                staging.add(a, 'i') for a in (tops + np.arange(p), lefts + np.arange(p), sf * tops + np.arange(p * sf),
                                              sf * lefts + np.arange(p * sf))
            ]
        staging.upload(device)
        self.last_num_calls = len(steps)

        jpeger, sharpener = self._tools(device)
        with _full_float32(device):
            hq = hr[:, :, :h, :w]
            if all(sharpen):
                hq = sharpener(hq)
            elif any(sharpen):
                hq = torch.where(staging.get(sharpen_mask).view(batch, 1, 1, 1) > 0, sharpener(hq), hq)
            canvas = hr.new_zeros((batch, hr.shape[1], canvas_h, canvas_w))  # zeros: the unused area stays finite
            canvas[:, :, :h, :w] = hq
            for step in steps:
                (in_h, in_w), idx = step['in_hw'], step['idx']
                img = canvas[:, :, :in_h, :in_w]
                if idx is not None:
                    img = img.index_select(0, staging.get(idx))
                out = _run_step(step, img, staging.get, generator, jpeger)
                target = canvas[:, :, :out.shape[2], :out.shape[3]]
                if idx is None:
                    target.copy_(out)
                else:
                    target.index_copy_(0, staging.get(idx), out)
        if not final_crop:
            return canvas, [hw for _, hw in compiled], hq
        lq = _gather_hw(canvas, staging.get(crop[0]), staging.get(crop[1]))
        gt = _gather_hw(hq, staging.get(crop[2]), staging.get(crop[3]))
        return lq.contiguous(), gt.contiguous()

    @torch.no_grad()
    def degrade_plans(self, hr, plans, generator=None):
        """Run given plans (e.g. from ``sample_plan``) on an HR batch: ``(lq, gt)`` as a call returns them.

        Args:
            hr (Tensor): (B, 3, H, W) RGB in [0, 1].
            plans (list[dict]): B plans drawn for ``hr``'s size; executed as given (their steps in order, then the
                crop), so plans may be edited (tests strip the random steps).
            generator (torch.Generator, optional): Noise source on ``hr``'s device.
        """
        if len(plans) != hr.shape[0]:
            raise ValueError(f'{len(plans)} plans for a batch of {hr.shape[0]}')
        return self._run(hr, plans, generator)

    @torch.no_grad()
    def apply_plan(self, img, plan, generator):
        """Run a plan on one (3, H, W) tensor up to (not including) the final JPEG and crop.

        Returns:
            tuple: (degraded (3, h, w), hq (3, H', W') mod-cropped and possibly sharpened, final JPEG quality).
        """
        steps = plan['steps']
        if not steps or steps[-1][0] != 'jpeg':
            raise ValueError('a BSRGAN plan must end with the final JPEG step')
        canvas, sizes, hq = self._run(img[None], [dict(plan, steps=steps[:-1])], generator, final_crop=False)
        h, w = sizes[0]
        return canvas[0, :, :h, :w], hq[0], steps[-1][1]['quality']

    @torch.no_grad()
    def __call__(self, hr, rng=None):
        if hr.ndim != 4 or hr.shape[1] not in (1, 3):
            raise ValueError(f'BSRGAN degradation expects an HR batch (B, 3, H, W) RGB or (B, 1, H, W) grey, got '
                             f'shape {tuple(hr.shape)}')
        rng = _as_rng(rng)
        b, _, h, w = hr.shape
        plans = [self.sample_plan(rng, (h, w)) for _ in range(b)]
        generator = self._generator(hr.device, int(rng.integers(1 << 62)))
        return self._run(hr, plans, generator)
