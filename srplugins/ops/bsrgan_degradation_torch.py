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

Work is done per sample (the op order and the intermediate sizes differ between samples); the final JPEG, which
every sample ends with at a common size, runs batched.
"""
import math
import numpy as np
import torch
import torch.nn.functional as F

from srplugins.ops.bsrgan_degradation import _as_rng, _matlab_resize_matrix, sample_bsrgan_plan, sample_bsrgan_plus_plan

__all__ = [
    'cv2_resize_matrices', 'reflect101_index', 'convolve_torch', 'resize_torch', 'imresize_matlab_torch', 'jpeg_torch',
    'gaussian_noise_torch', 'add_poisson_noise_torch', 'TorchBSRGANDegradation'
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


def cv2_resize_matrices(hw_in, hw_out, interpolation):
    """Linear operators of ``cv2.resize`` on float images: ``resize(img) == M_h @ img @ M_w.T`` per channel.

    Args:
        hw_in (tuple): (H, W) of the input.
        hw_out (tuple): (H', W') of the output (note: ``cv2.resize`` takes (W', H')).
        interpolation (int | str): 1 / 'bilinear', 2 / 'bicubic' or 3 / 'area' (OpenCV codes).

    Returns:
        tuple: M_h (H', H) and M_w (W', W) float64 ndarrays.
    """
    interpolation = _NAMES.get(interpolation, interpolation)
    (h_in, w_in), (h_out, w_out) = hw_in, hw_out
    if interpolation == _LINEAR:
        return _linear_axis(h_in, h_out, False), _linear_axis(w_in, w_out, False)
    if interpolation == _CUBIC:
        return _cubic_axis(h_in, h_out), _cubic_axis(w_in, w_out)
    if interpolation == _AREA:
        if h_in >= h_out and w_in >= w_out:  # OpenCV's area averaging needs both axes shrinking (or equal)
            return _area_axis(h_in, h_out), _area_axis(w_in, w_out)
        return _linear_axis(h_in, h_out, True), _linear_axis(w_in, w_out, True)
    raise ValueError(f'interpolation must be 1 (bilinear), 2 (bicubic) or 3 (area), got {interpolation!r}')


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
        evals, evecs = np.linalg.eigh(np.asarray(cov, np.float64))
        root = torch.as_tensor(evecs * np.sqrt(np.clip(evals, 0, None)), dtype=dtype, device=device)
        z = torch.randn((root.shape[0], h, w), generator=generator, device=device, dtype=dtype)
        return torch.einsum('ij,jhw->ihw', root, z)
    raise ValueError(f"noise mode must be 'color', 'gray' or 'correlated', got {mode!r}")


def add_poisson_noise_torch(img, vals, gray, generator):
    """Poisson noise on an 8-bit-quantised (3, H, W) RGB tensor (torch ``add_poisson_noise``)."""
    img = torch.clamp(torch.round(img * 255.0), 0, 255) / 255.0
    if gray:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
        luma = torch.clamp(torch.round((img * weights).sum(0, keepdim=True) * 255.0), 0, 255) / 255.0
        img = img + torch.poisson(luma * vals, generator=generator) / vals - luma
    else:
        img = torch.poisson(img * vals, generator=generator) / vals
    return torch.clamp(img, 0.0, 1.0)


@torch.no_grad()
def jpeg_torch(img, quality, jpeger):
    """JPEG round trip of a (B, 3, H, W) RGB batch through DiffJPEG, edge-replicated to whole 16x16 MCUs.

    Args:
        img (Tensor): (B, 3, H, W) in [0, 1] (values are clipped and rounded to 8 bits first, as the CPU path).
        quality (Sequence[float] | Tensor): (B,) JPEG qualities.
        jpeger (DiffJPEG): basicsr ``DiffJPEG(differentiable=False)`` on the image's device.

    Returns:
        Tensor: (B, 3, H, W) with values k/255.
    """
    img = torch.round(torch.clamp(img, 0, 1) * 255.0) / 255.0
    h, w = img.shape[-2:]
    pad_h, pad_w = -h % 16, -w % 16
    if pad_h or pad_w:
        img = F.pad(img, (0, pad_w, 0, pad_h), mode='replicate')
    quality = torch.as_tensor(quality, dtype=img.dtype, device=img.device).reshape(-1).clone()
    out = jpeger(img, quality=quality)[..., :h, :w]
    return (torch.round(torch.clamp(out, 0, 1) * 255.0) / 255.0).contiguous()


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

    Call with ``(hr, rng)``: ``hr`` (B, 3, H, W) RGB in [0, 1] (H, W >= lq_patchsize*scale after a mod crop), ``rng``
    a ``numpy.random.Generator`` (or seed) that draws the per-sample plans and seeds the noise generator. Returns
    ``lq`` (B, 3, p, p) and ``gt`` (B, 3, p*scale, p*scale) on the device and dtype of ``hr``.
    """

    def __init__(self, scale, lq_patchsize, degradation_type='bsrgan', shuffle_prob=0.1, use_sharp=False):
        if scale not in (2, 3, 4):
            raise ValueError(f'BSRGAN degradation scale must be 2, 3 or 4, got {scale!r}')
        if degradation_type not in ('bsrgan', 'bsrgan_plus'):
            raise ValueError(f"degradation_type must be 'bsrgan' or 'bsrgan_plus', got {degradation_type!r}")
        self.scale = scale
        self.lq_patchsize = lq_patchsize
        self.degradation_type = degradation_type
        self.shuffle_prob = shuffle_prob
        self.use_sharp = use_sharp
        self._jpeger = None
        self._sharpener = None

    def _tools(self, device):
        from basicsr.utils import DiffJPEG, USMSharp
        if self._jpeger is None or next(self._jpeger.parameters()).device != device:
            # DiffJPEG's tables are module-level parameters shared by all instances: one device per process
            self._jpeger = DiffJPEG(differentiable=False).to(device)
            self._sharpener = USMSharp().to(device)
        return self._jpeger, self._sharpener

    def sample_plan(self, rng, hw):
        """One sample's parameters (the CPU path's sampler)."""
        shape = (hw[0], hw[1], 3)
        if self.degradation_type == 'bsrgan':
            return sample_bsrgan_plan(rng, self.scale, shape, self.lq_patchsize)
        return sample_bsrgan_plus_plan(rng, self.scale, shape, self.lq_patchsize, self.shuffle_prob, self.use_sharp)

    @torch.no_grad()
    def apply_plan(self, img, plan, generator):
        """Run a plan on one (3, H, W) tensor up to (not including) the final JPEG and crop.

        Returns:
            tuple: (degraded (3, h, w), hq (3, H', W') mod-cropped and possibly sharpened, final JPEG quality).
        """
        jpeger, sharpener = self._tools(img.device)
        h, w = plan['hr_hw']
        img = img[:, :h, :w]
        if plan.get('sharpen'):
            img = sharpener(img[None])[0]
        hq = img
        steps = plan['steps']
        if not steps or steps[-1][0] != 'jpeg':
            raise ValueError('a BSRGAN plan must end with the final JPEG step')
        for name, params in steps[:-1]:
            if name == 'blur':
                img = convolve_torch(img[None], params['kernel'])[0]
            elif name == 'resize':
                img = resize_torch(img, params['size'], params['interp'])
            elif name == 'imresize_matlab':
                img = imresize_matlab_torch(img, params['scale'])
            elif name == 'shifted_nearest':
                sf = params['sf']
                img = convolve_torch(img[None], params['kernel'])[0, :, ::sf, ::sf]
            elif name == 'clip':
                img = torch.clamp(img, 0.0, 1.0)
            elif name == 'gaussian_noise':
                noise = gaussian_noise_torch(img.shape, params['mode'], params['sigma'], generator, params['cov'],
                                             img.device, img.dtype)
                img = torch.clamp(img + noise, 0.0, 1.0)
            elif name == 'speckle_noise':
                noise = gaussian_noise_torch(img.shape, params['mode'], params['sigma'], generator, params['cov'],
                                             img.device, img.dtype)
                img = torch.clamp(img, 0.0, 1.0)
                img = torch.clamp(img + img * noise, 0.0, 1.0)
            elif name == 'poisson_noise':
                img = add_poisson_noise_torch(img, params['vals'], params['gray'], generator)
            elif name == 'jpeg':
                img = jpeg_torch(img[None], [params['quality']], jpeger)[0]
            elif name == 'isp':
                pass  # camera-ISP hook: KAIR ships none (off, as the CPU path's default)
            else:
                raise ValueError(f'unknown degradation step {name!r}')
        return img, hq, steps[-1][1]['quality']

    @torch.no_grad()
    def __call__(self, hr, rng=None):
        if hr.ndim != 4 or hr.shape[1] != 3:
            raise ValueError(f'BSRGAN degradation expects an HR batch (B, 3, H, W), got shape {tuple(hr.shape)}')
        rng = _as_rng(rng)
        b, _, h, w = hr.shape
        plans = [self.sample_plan(rng, (h, w)) for _ in range(b)]
        generator = torch.Generator(device=hr.device)
        generator.manual_seed(int(rng.integers(1 << 62)))
        degraded = [self.apply_plan(hr[i], plans[i], generator) for i in range(b)]

        # final JPEG: one batched call per distinct size (usually one: HR/scale)
        lq_full = [None] * b
        groups = {}
        for i, (img, _, _) in enumerate(degraded):
            groups.setdefault(tuple(img.shape), []).append(i)
        jpeger, _ = self._tools(hr.device)
        for indices in groups.values():
            batch = torch.stack([degraded[i][0] for i in indices])
            out = jpeg_torch(batch, [degraded[i][2] for i in indices], jpeger)
            for k, i in enumerate(indices):
                lq_full[i] = out[k]

        p, sf = self.lq_patchsize, self.scale
        lqs, gts = [], []
        for i, plan in enumerate(plans):
            top, left = plan['crop']
            lqs.append(lq_full[i][:, top:top + p, left:left + p])
            gts.append(degraded[i][1][:, top * sf:(top + p) * sf, left * sf:(left + p) * sf])
        return torch.stack(lqs).contiguous(), torch.stack(gts).contiguous()
