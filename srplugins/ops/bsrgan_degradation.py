"""BSRGAN degradation model: pure primitives, a seeded parameter sampler and the two pipelines.

Paper: Zhang, Liang, Van Gool, Timofte, "Designing a Practical Degradation Model for Deep Blind Image
Super-Resolution", ICCV 2021 (arXiv 2103.14006), section 3 (blur, downsampling, noise, random shuffle).
Official behaviour followed: KAIR ``utils/utils_blindsr.py`` (``degradation_bsrgan`` and
``degradation_bsrgan_plus``), which is the normative description of probabilities, ranges and op order
(docs/BSRGAN.md lists them).

Structure:
    * Primitives (``gaussian_kernel``, ``anisotropic_gaussian_kernel``, ``shift_kernel``, ``convolve``,
      ``resize``, ``imresize_matlab``, noise functions, ``jpeg_compress``, ``crop_pair``) are deterministic given
      their arguments (noise functions take the generator that draws the noise field explicitly).
    * ``sample_bsrgan_plan`` / ``sample_bsrgan_plus_plan`` draw every random parameter of one sample from a
      ``numpy.random.Generator`` into a plan (a list of ``(op_name, params)`` steps plus the crop offset).
    * ``apply_plan`` runs a plan; ``degradation_bsrgan`` / ``degradation_bsrgan_plus`` = sample + apply.

Deliberate differences from KAIR (statistically equivalent, see docs/BSRGAN.md for the measured PSNR match):
    * One ``numpy.random.Generator`` replaces KAIR's mix of Python ``random`` and numpy's global RNG, so every
      sample is reproducible from a seed, but not bit-identical to KAIR.
    * Kernels are built vectorised (KAIR evaluates a scipy pdf per pixel) and convolutions run through OpenCV
      (``filter2D`` / ``sepFilter2D`` with BORDER_REFLECT_101 on the flipped kernel), which equals
      ``scipy.ndimage.convolve(mode='mirror')`` (true convolution, whole-sample symmetric padding).
    * ``shift_kernel`` replaces ``interp2d`` (removed in SciPy 1.14) by an exact separable bilinear resampling.
    * Channel-correlated noise is drawn as ``z @ A.T`` with ``A A^T = |L^2 U^T D U|`` instead of
      ``multivariate_normal`` (same distribution).
    * Degenerate draws that crash KAIR (a zero variance / sigma, probability zero) give a delta kernel.

Images are float32 HWC **RGB** in [0, 1]. BasicSR loads BGR: convert at the dataset boundary, not here.

One-channel (grey) images, ``(H, W, 1)``, are degraded as the luma plane of an RGB image would be (an extension; KAIR
is RGB only): blur, resizing and clipping act per channel anyway; Gaussian / speckle noise is the Rec. 601 luma
projection ``w^T n`` of the RGB noise field ``n`` (colour mode: std ``sigma * |w|``; grey mode: ``sigma``;
channel-correlated: variance ``w^T cov w``); Poisson noise is drawn on the plane itself; JPEG codes the plane as a
greyscale JPEG (luminance quantisation table only, as the Y plane of a colour JPEG). Like KAIR, the noise and JPEG
steps quantise to 8 bits, so a 16-bit input gives 8-bit-valued LQ samples when those steps run.
"""
import cv2
import math
import numpy as np
from scipy.linalg import orth

__all__ = [
    'modcrop', 'gaussian_kernel', 'anisotropic_gaussian_kernel', 'shift_kernel', 'convolve', 'resize',
    'imresize_matlab', 'gaussian_noise_field', 'add_noise', 'add_speckle_noise', 'add_poisson_noise', 'jpeg_compress',
    'usm_sharpen', 'crop_pair', 'luma_noise_std', 'sample_blur_kernel', 'sample_noise', 'sample_bsrgan_plan',
    'sample_bsrgan_plus_plan', 'apply_plan', 'degradation_bsrgan', 'degradation_bsrgan_plus', 'to_uint8',
    'valid_bsrgan_order'
]

# OpenCV interpolation codes drawn by KAIR (random.choice([1, 2, 3])); INTER_NEAREST (0) is never used.
INTERPOLATIONS = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC, 'area': cv2.INTER_AREA}
_INTER_CODES = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601, R G B (KAIR's grey Poisson noise)


# ----------------------------------------------------------------------------------------------------------------
# primitives
# ----------------------------------------------------------------------------------------------------------------
def modcrop(img, sf):
    """Crop the two leading dims of ``img`` down to multiples of ``sf`` (returns a view)."""
    h, w = img.shape[:2]
    return img[:h - h % sf, :w - w % sf, ...]


def gaussian_kernel(size, sigma):
    """MATLAB ``fspecial('gaussian', size, sigma)``.

    Args:
        size (int): Side length of the square kernel.
        sigma (float): Standard deviation in pixels. ``sigma <= 0`` gives a centred delta (MATLAB divides by 0).

    Returns:
        ndarray: (size, size) float64, sums to 1; entries below ``eps * max`` are zeroed as in MATLAB.
    """
    half = (size - 1) / 2.0
    grid = np.arange(-half, half + 1)
    if sigma <= 0:
        kernel = (grid[:, None] == 0) & (grid[None, :] == 0) if size % 2 else np.full((size, size), 1.0)
        kernel = kernel.astype(np.float64)
        return kernel / kernel.sum()
    kernel = np.exp(-(grid[:, None]**2 + grid[None, :]**2) / (2.0 * sigma * sigma))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel / kernel.sum()


def anisotropic_gaussian_kernel(size, theta, var1, var2):
    """Anisotropic Gaussian kernel with covariance ``V diag(var1, var2) V^-1`` (KAIR ``anisotropic_Gaussian``).

    ``var1`` and ``var2`` are **variances** (eigenvalues of the covariance), not standard deviations. ``V`` is the
    reflection built from the direction (cos theta, sin theta). Row index = y, column index = x, both centred on
    ``(size - 1) / 2``. Equals basicsr ``bivariate_Gaussian(size, sqrt(var1), sqrt(var2), theta)``.

    Args:
        size (int): Kernel side.
        theta (float): Rotation in radians.
        var1 (float): First eigenvalue (variance). Values are floored at 1e-12 (zero would be singular).
        var2 (float): Second eigenvalue (variance).

    Returns:
        ndarray: (size, size) float64 kernel summing to 1.
    """
    c, s = math.cos(theta), math.sin(theta)
    v = np.array([[c, s], [s, -c]])
    cov = v @ np.diag([max(var1, 1e-12), max(var2, 1e-12)]) @ np.linalg.inv(v)
    inv = np.linalg.inv(cov)
    grid = np.arange(size) - (size - 1) / 2.0
    x, y = np.meshgrid(grid, grid)
    quad = inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y
    kernel = np.exp(-0.5 * (quad - quad.min()))
    return kernel / kernel.sum()


def _linear_resample_matrix(n, shift):
    """(n, n) matrix M with (M @ f)[i] = linear interpolation of f at clip(i + shift, 0, n - 1)."""
    coords = np.clip(np.arange(n) + shift, 0, n - 1)
    lower = np.floor(coords).astype(int)
    frac = coords - lower
    upper = np.minimum(lower + 1, n - 1)
    mat = np.zeros((n, n))
    mat[np.arange(n), lower] += 1.0 - frac
    mat[np.arange(n), upper] += frac
    return mat


def shift_kernel(kernel, sf, upper_left=True):
    """Resample ``kernel`` bilinearly at ``i + (sf - 1) / 2`` in both axes (KAIR ``shift_pixel``).

    Coordinates are clipped to the kernel, as in KAIR. With ``upper_left=False`` the shift is negated. KAIR used
    ``scipy.interpolate.interp2d`` (removed in SciPy 1.14); this separable form is the same bilinear interpolation.
    Applied by true convolution and followed by stride-``sf`` sampling, LQ pixel j sits at HR ``sf*j + (sf-1)/2``.

    Args:
        kernel (ndarray): (h, w) kernel.
        sf (int): Scale factor.
        upper_left (bool): Shift direction.

    Returns:
        ndarray: (h, w) float64 resampled kernel (not renormalised).
    """
    shift = (sf - 1) * 0.5 * (1 if upper_left else -1)
    h, w = kernel.shape
    return _linear_resample_matrix(h, shift) @ np.asarray(kernel, np.float64) @ _linear_resample_matrix(w, shift).T


def convolve(img, kernel):
    """True 2-D convolution of every channel with whole-sample-symmetric padding.

    Equals ``scipy.ndimage.convolve(img, kernel[..., None], mode='mirror')`` (kernel flipped; 'mirror' is
    d c b | a b c d | c b a, i.e. cv2 BORDER_REFLECT_101 and torch 'reflect'). Rank-1 kernels run separably.

    Args:
        img (ndarray): (H, W) or (H, W, C) float32.
        kernel (ndarray): (k, k) kernel with odd k.

    Returns:
        ndarray: Same shape and dtype as ``img``.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f'convolve expects an odd-sized kernel, got shape {kernel.shape}')
    if min(img.shape[:2]) < 2:  # OpenCV cannot reflect a single row/column
        from scipy import ndimage
        return ndimage.convolve(img, kernel[..., None] if img.ndim == 3 else kernel, mode='mirror')
    u, s, vt = np.linalg.svd(kernel)
    flipped = kernel[::-1, ::-1]
    if s.size > 1 and s[1] <= 1e-9 * s[0]:
        ky = (u[::-1, 0] * math.sqrt(s[0])).astype(np.float32)
        kx = (vt[0, ::-1] * math.sqrt(s[0])).astype(np.float32)
        out = cv2.sepFilter2D(img, -1, kx, ky, borderType=cv2.BORDER_REFLECT_101)
    else:
        out = cv2.filter2D(img, -1, np.ascontiguousarray(flipped, np.float32), borderType=cv2.BORDER_REFLECT_101)
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def resize(img, size_wh, interpolation):
    """``cv2.resize`` to ``size_wh = (width, height)`` with an OpenCV code (1 bilinear, 2 bicubic, 3 area) or name.

    Every OpenCV mode used here samples LQ pixel j at ``scale*j + (scale-1)/2`` (pixel-centre alignment).
    """
    if isinstance(interpolation, str):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}')
        interpolation = INTERPOLATIONS[interpolation]
    if interpolation not in _INTER_CODES:
        raise ValueError(f'interpolation code must be 1 (bilinear), 2 (bicubic) or 3 (area), got {interpolation}')
    out = cv2.resize(img, (int(size_wh[0]), int(size_wh[1])), interpolation=int(interpolation))
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def _cubic(x):
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) &
                                                                                                       (ax <= 2)))


def _matlab_resize_matrix(n_in, scale, antialiasing=True):
    """(ceil(n_in*scale), n_in) weights of MATLAB ``imresize`` bicubic with symmetric (half-sample) edges."""
    n_out = math.ceil(n_in * scale)
    width = 4.0
    if scale < 1 and antialiasing:
        width /= scale
    centre = (np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale))
    left = np.floor(centre - width / 2)
    taps = int(math.ceil(width) + 2)
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based source indices
    dist = centre[:, None] - idx
    weights = scale * _cubic(dist * scale) if (scale < 1 and antialiasing) else _cubic(dist)
    weights /= weights.sum(1, keepdims=True)
    src = idx - 1  # 0-based; out-of-range taps fold back half-sample symmetrically (edge sample repeated)
    src = np.where(src < 0, -src - 1, src)
    src = np.where(src >= n_in, 2 * n_in - src - 1, src).astype(int)
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), taps), src.ravel()), weights.ravel())
    return mat


def imresize_matlab(img, scale, antialiasing=True):
    """MATLAB-compatible bicubic ``imresize`` (KAIR ``imresize_np``), as two dense matrix products.

    Output size is ``ceil(H*scale) x ceil(W*scale)``; values are not clipped. Matches basicsr
    ``matlab_functions.imresize`` (same cubic kernel a=-0.5, antialiased width, symmetric padding) to float32
    precision; written as matrices because the basicsr/KAIR row loops dominate the pre-downscale step.

    Args:
        img (ndarray): (H, W) or (H, W, C) float32.
        scale (float): Scale factor.
        antialiasing (bool): Widen the kernel by 1/scale when downscaling.

    Returns:
        ndarray: float32 resized image.
    """
    mh = _matlab_resize_matrix(img.shape[0], scale, antialiasing).astype(np.float32)
    mw = _matlab_resize_matrix(img.shape[1], scale, antialiasing).astype(np.float32)
    out = np.tensordot(mh, img.astype(np.float32), axes=(1, 0))
    out = np.tensordot(mw, out, axes=(1, 1)).swapaxes(0, 1)
    return np.ascontiguousarray(out, np.float32)


def gaussian_noise_field(shape_hw, mode, sigma, rng, cov=None, channels=3):
    """Draw an additive Gaussian noise field (BSRGAN section 3.3, KAIR ``add_Gaussian_noise``).

    Args:
        shape_hw (tuple): (H, W).
        mode (str): 'color' (i.i.d. per channel), 'gray' (one field shared by all channels) or 'correlated'.
        sigma (float): Standard deviation for 'color' / 'gray' (KAIR: level/255, level in 2..25).
        rng (numpy.random.Generator): Source of the noise field.
        cov (ndarray): (3, 3) covariance for 'correlated' (KAIR: |L^2 U^T D U| with fixed L = 25/255).
        channels (int): Channel count of the image: 3 (RGB) or 1 (grey: the Rec. 601 luma plane of the RGB field).

    Returns:
        ndarray: float32 (H, W, C) or (H, W, 1) for 'gray'.
    """
    h, w = shape_hw
    if channels == 1:
        return rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(luma_noise_std(mode, sigma, cov))
    if mode == 'color':
        return rng.standard_normal((h, w, channels), dtype=np.float32) * np.float32(sigma)
    if mode == 'gray':
        return rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(sigma)
    if mode == 'correlated':
        evals, evecs = np.linalg.eigh(np.asarray(cov, np.float64))
        root = (evecs * np.sqrt(np.clip(evals, 0, None))).astype(np.float32)  # root @ root.T == cov
        return rng.standard_normal((h, w, root.shape[0]), dtype=np.float32) @ root.T
    raise ValueError(f"noise mode must be 'color', 'gray' or 'correlated', got {mode!r}")


def luma_noise_std(mode, sigma, cov=None):
    """Std of the Rec. 601 luma plane ``w^T n`` of an RGB Gaussian noise field ``n`` (the noise of a grey image).

    'color' (i.i.d. channels): ``sigma * |w|``; 'gray' (one shared field): ``sigma`` (the weights sum to 1);
    'correlated': ``sqrt(w^T cov w)``.
    """
    weights = np.asarray(LUMA_WEIGHTS)
    if mode == 'color':
        return float(sigma * np.linalg.norm(weights))
    if mode == 'gray':
        return float(sigma)
    if mode == 'correlated':
        return float(np.sqrt(max(weights @ np.asarray(cov, np.float64) @ weights, 0.0)))
    raise ValueError(f"noise mode must be 'color', 'gray' or 'correlated', got {mode!r}")


def add_noise(img, noise):
    """Additive noise followed by clipping to [0, 1]."""
    return np.clip(img + noise, 0.0, 1.0).astype(np.float32)


def add_speckle_noise(img, noise):
    """Multiplicative (speckle) noise: clip, then ``img + img * noise``, clip (KAIR ``add_speckle_noise``)."""
    img = np.clip(img, 0.0, 1.0)
    return np.clip(img + img * noise, 0.0, 1.0).astype(np.float32)


def add_poisson_noise(img, vals, gray, rng):
    """Poisson (shot) noise (KAIR ``add_Poisson_noise``); the image is quantised to 8 bits first.

    Args:
        img (ndarray): (H, W, 3) float32 RGB, or (H, W, 1) grey (its own luma: both modes draw on the plane).
        vals (float): Photon scale (KAIR: 10**U(2, 4)); counts are Poisson(img * vals) / vals.
        gray (bool): Luma noise (weights 0.299, 0.587, 0.114 for R, G, B) added to every channel.
        rng (numpy.random.Generator): Source of the counts.

    Returns:
        ndarray: float32 image in [0, 1].
    """
    img = np.clip(np.round(img * 255.0), 0, 255) / 255.0
    if gray and img.shape[-1] == 3:
        luma = np.clip(np.round((img[..., :3] @ np.array([0.299, 0.587, 0.114])) * 255.0), 0, 255) / 255.0
        noise = rng.poisson(luma * vals).astype(np.float32) / vals - luma
        img = img + noise[..., None]
    else:
        img = rng.poisson(img * vals).astype(np.float32) / vals
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def to_uint8(img):
    """float [0, 1] -> uint8 with clipping and rounding (KAIR ``single2uint``)."""
    return np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)


def jpeg_compress(img, quality):
    """JPEG round trip through OpenCV at integer ``quality`` (KAIR ``add_JPEG_noise``).

    The RGB image is converted to BGR for ``cv2.imencode`` (4:2:0 chroma) and back; output values are k/255. An
    (H, W, 1) grey image is coded as a greyscale JPEG (the luminance table only) and stays (H, W, 1).
    """
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f'jpeg_compress expects an (H, W, 3) RGB or (H, W, 1) grey image, got shape {img.shape}')
    if img.shape[2] == 1:
        ok, buf = cv2.imencode('.jpg', to_uint8(img[..., 0]), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
        if not ok:
            raise RuntimeError('cv2.imencode failed')
        return (cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0)[..., None]
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError('cv2.imencode failed')
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def usm_sharpen(img, weight=0.5, radius=50, threshold=10):
    """Unsharp masking as in KAIR ``add_sharpening`` (51-tap Gaussian, sigma 8); delegates to basicsr ``usm_sharp``.
    """
    from basicsr.utils.img_process_util import usm_sharp
    if img.ndim == 3 and img.shape[2] == 1:  # basicsr's mask blur needs 2-D or 3-channel arrays
        return usm_sharp(img[..., 0], weight=weight, radius=radius, threshold=threshold).astype(np.float32)[..., None]
    return usm_sharp(img, weight=weight, radius=radius, threshold=threshold).astype(np.float32)


def crop_pair(lq, hq, top, left, sf, lq_patchsize):
    """Crop ``lq`` at (top, left) and ``hq`` at (top*sf, left*sf) with sizes p and p*sf (KAIR ``random_crop``)."""
    lq = lq[top:top + lq_patchsize, left:left + lq_patchsize, ...]
    hq = hq[top * sf:(top + lq_patchsize) * sf, left * sf:(left + lq_patchsize) * sf, ...]
    return lq, hq


# ----------------------------------------------------------------------------------------------------------------
# parameter sampling (all randomness of a sample comes from one numpy Generator)
# ----------------------------------------------------------------------------------------------------------------
def _randint(rng, low, high):
    """Integer in [low, high] inclusive (Python ``random.randint`` semantics)."""
    return int(rng.integers(low, high + 1))


def _interp(rng):
    return int(_INTER_CODES[rng.integers(3)])


def sample_blur_kernel(rng, sf):
    """Draw a BSRGAN blur kernel (KAIR ``add_blur``): p=0.5 anisotropic / isotropic Gaussian, size in {7, ..., 25}.

    Anisotropic: variances U(0, 4+sf) each, angle U(0, pi). Isotropic: sigma U(0, 2+0.2*sf).

    Returns:
        ndarray: (k, k) float64 kernel.
    """
    if rng.random() < 0.5:
        var1 = (4.0 + sf) * rng.random()
        var2 = (4.0 + sf) * rng.random()
        size = 2 * _randint(rng, 2, 11) + 3
        theta = math.pi * rng.random()
        return anisotropic_gaussian_kernel(size, theta, var1, var2)
    size = 2 * _randint(rng, 2, 11) + 3
    return gaussian_kernel(size, (2.0 + 0.2 * sf) * rng.random())


def sample_noise(rng, level_range=(2, 25)):
    """Draw Gaussian-noise parameters (KAIR ``add_Gaussian_noise``): colour p=0.4, gray p=0.4, correlated p=0.2.

    The correlated branch ignores the drawn level and uses L = level_range[1]/255 with covariance
    ``|L^2 U^T D U|`` (element-wise absolute value), D = diag(U(0,1)^3), U = orth(U(0,1)^{3x3}).

    Returns:
        dict: {'mode', 'sigma', 'cov'}.
    """
    level = _randint(rng, *level_range)
    rnum = rng.random()
    if rnum > 0.6:
        return {'mode': 'color', 'sigma': level / 255.0, 'cov': None}
    if rnum < 0.4:
        return {'mode': 'gray', 'sigma': level / 255.0, 'cov': None}
    big_l = level_range[1] / 255.0
    diag = np.diag(rng.random(3))
    basis = orth(rng.random((3, 3)))
    return {'mode': 'correlated', 'sigma': big_l, 'cov': np.abs(big_l**2 * (basis.T @ diag @ basis))}


def valid_bsrgan_order(rng):
    """Uniform permutation of ops 0..6 with op 2 (downsample2) before op 3 (downsample3).

    As in KAIR the two positions are swapped when op 2 lands after op 3; each valid order has two preimages, so the
    result is uniform over the 2520 valid orders.
    """
    order = [int(i) for i in rng.permutation(7)]
    i2, i3 = order.index(2), order.index(3)
    if i2 > i3:
        order[i2], order[i3] = order[i3], order[i2]
    return order


def _check_input(shape, sf, lq_patchsize):
    if sf not in (2, 3, 4):
        raise ValueError(f'scale (sf) must be 2, 3 or 4, got {sf}')
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ValueError(f'BSRGAN degradation expects an (H, W, 3) RGB or (H, W, 1) grey image, got shape '
                         f'{tuple(shape)}')
    h, w = shape[0] - shape[0] % sf, shape[1] - shape[1] % sf
    if h < lq_patchsize * sf or w < lq_patchsize * sf:
        raise ValueError(f'image of size {shape[0]}x{shape[1]} is smaller than lq_patchsize*scale = '
                         f'{lq_patchsize * sf} after mod crop')
    return h, w


def sample_bsrgan_plan(rng, sf, hw, lq_patchsize, isp_prob=0.25, jpeg_prob=0.9, scale2_prob=0.25):
    """Draw every random parameter of one ``degradation_bsrgan`` sample (paper section 3.4, KAIR order).

    Args:
        rng (numpy.random.Generator): Parameter source.
        sf (int): Scale factor 2, 3 or 4.
        hw (tuple): (H, W, C) shape of the HR input (before mod crop).
        lq_patchsize (int): LQ crop side.
        isp_prob (float): Probability of the camera-ISP hook (only used when a hook is passed to ``apply_plan``).
        jpeg_prob (float): Probability of the in-chain JPEG.
        scale2_prob (float): Probability of the x1/2 pre-downscale for sf = 4 (later steps then use sf = 2).

    Returns:
        dict: {'sf', 'hr_hw', 'steps': [(name, params), ...], 'crop': (top, left), 'lq_patchsize', 'order' (the op
        permutation), 'prestep' (x1/2 pre-downscale taken), 'sf_effective' (sf used by later steps)}.
    """
    h, w = _check_input(hw, sf, lq_patchsize)
    sf_ori = sf
    steps = []
    cur_w, cur_h = w, h
    prestep = sf == 4 and rng.random() < scale2_prob
    if prestep:
        if rng.random() < 0.5:
            steps.append(('resize', {'size': (int(1 / 2 * cur_w), int(1 / 2 * cur_h)), 'interp': _interp(rng)}))
        else:
            steps.append(('imresize_matlab', {'scale': 0.5}))
        cur_w, cur_h = int(1 / 2 * cur_w), int(1 / 2 * cur_h)
        steps.append(('clip', {}))
        sf = 2
    order = valid_bsrgan_order(rng)
    a = b = None
    for op in order:
        if op in (0, 1):
            steps.append(('blur', {'kernel': sample_blur_kernel(rng, sf)}))
        elif op == 2:
            a, b = cur_w, cur_h
            if rng.random() < 0.75:
                sf1 = rng.uniform(1, 2 * sf)
                cur_w, cur_h = int(1 / sf1 * a), int(1 / sf1 * b)
                steps.append(('resize', {'size': (cur_w, cur_h), 'interp': _interp(rng)}))
            else:
                kernel = shift_kernel(gaussian_kernel(25, rng.uniform(0.1, 0.6 * sf)), sf)
                steps.append(('shifted_nearest', {'kernel': kernel / kernel.sum(), 'sf': sf}))
                cur_w, cur_h = -(-a // sf), -(-b // sf)
            steps.append(('clip', {}))
        elif op == 3:
            cur_w, cur_h = int(1 / sf * a), int(1 / sf * b)
            steps.append(('resize', {'size': (cur_w, cur_h), 'interp': _interp(rng)}))
            steps.append(('clip', {}))
        elif op == 4:
            steps.append(('gaussian_noise', sample_noise(rng)))
        elif op == 5:
            if rng.random() < jpeg_prob:
                steps.append(('jpeg', {'quality': _randint(rng, 30, 95)}))
        elif op == 6:
            if rng.random() < isp_prob:
                steps.append(('isp', {}))
    steps.append(('jpeg', {'quality': _randint(rng, 30, 95)}))
    top, left = _randint(rng, 0, cur_h - lq_patchsize), _randint(rng, 0, cur_w - lq_patchsize)
    return {
        'sf': sf_ori,
        'hr_hw': (h, w),
        'steps': steps,
        'crop': (top, left),
        'lq_patchsize': lq_patchsize,
        'order': order,
        'prestep': prestep,
        'sf_effective': sf
    }


def _sample_resize(rng, sf, cur_w, cur_h):
    rnum = rng.random()
    if rnum > 0.8:
        sf1 = rng.uniform(1, 2)
    elif rnum < 0.7:
        sf1 = rng.uniform(0.5 / sf, 1)
    else:
        sf1 = 1.0
    size = (max(1, int(sf1 * cur_w)), max(1, int(sf1 * cur_h)))
    return ('resize', {'size': size, 'interp': _interp(rng)}), size


def sample_bsrgan_plus_plan(rng,
                            sf,
                            hw,
                            lq_patchsize,
                            shuffle_prob=0.5,
                            use_sharp=False,
                            poisson_prob=0.1,
                            speckle_prob=0.1,
                            isp_prob=0.1):
    """Draw the parameters of one ``degradation_bsrgan_plus`` sample (KAIR's BSRGAN + Real-ESRGAN mix).

    Thirteen ops (blur, resize, Gaussian noise, Poisson, speckle, ISP, JPEG, blur, resize, Gaussian noise, Poisson,
    speckle, ISP) fully shuffled with p = ``shuffle_prob``, otherwise in order with positions 2..5 and 9..12 shuffled
    locally; then a resize to HR/sf, a final JPEG and the crop. ``use_sharp`` USM-sharpens HR and source alike.

    Returns:
        dict: plan as in ``sample_bsrgan_plan`` plus 'sharpen'.
    """
    h, w = _check_input(hw, sf, lq_patchsize)
    if rng.random() < shuffle_prob:
        order = [int(i) for i in rng.permutation(13)]
    else:
        order = list(range(13))
        order[2:6] = [order[2:6][i] for i in rng.permutation(4)]
        order[9:13] = [order[9:13][i] for i in rng.permutation(4)]
    steps = []
    cur_w, cur_h = w, h
    for op in order:
        if op in (0, 7):
            steps.append(('blur', {'kernel': sample_blur_kernel(rng, sf)}))
        elif op in (1, 8):
            step, (cur_w, cur_h) = _sample_resize(rng, sf, cur_w, cur_h)
            steps += [step, ('clip', {})]
        elif op in (2, 9):
            steps.append(('gaussian_noise', sample_noise(rng)))
        elif op in (3, 10):
            if rng.random() < poisson_prob:
                steps.append(('poisson_noise', {'vals': 10**(2 * rng.random() + 2.0), 'gray': rng.random() >= 0.5}))
        elif op in (4, 11):
            if rng.random() < speckle_prob:
                steps.append(('speckle_noise', sample_noise(rng)))
        elif op in (5, 12):
            if rng.random() < isp_prob:
                steps.append(('isp', {}))
        elif op == 6:
            steps.append(('jpeg', {'quality': _randint(rng, 30, 95)}))
    cur_w, cur_h = int(1 / sf * w), int(1 / sf * h)
    steps.append(('resize', {'size': (cur_w, cur_h), 'interp': _interp(rng)}))
    steps.append(('jpeg', {'quality': _randint(rng, 30, 95)}))
    top, left = _randint(rng, 0, cur_h - lq_patchsize), _randint(rng, 0, cur_w - lq_patchsize)
    return {
        'sf': sf,
        'hr_hw': (h, w),
        'steps': steps,
        'crop': (top, left),
        'lq_patchsize': lq_patchsize,
        'order': order,
        'sharpen': bool(use_sharp)
    }


# ----------------------------------------------------------------------------------------------------------------
# pipelines
# ----------------------------------------------------------------------------------------------------------------
def apply_plan(img, plan, rng, isp_model=None):
    """Run a plan from ``sample_bsrgan_plan`` / ``sample_bsrgan_plus_plan`` on an HR image.

    Args:
        img (ndarray): (H, W, 3) float32 RGB in [0, 1]; not modified.
        plan (dict): Parameters of the sample.
        rng (numpy.random.Generator): Source of the noise fields (Gaussian, speckle, Poisson).
        isp_model (callable, optional): Camera-ISP hook ``(lq, hq) -> (lq, hq)``; KAIR ships none, so the default
            None skips the step (its probability draw is still part of the plan).

    Returns:
        tuple: lq (p, p, 3) float32 with values k/255, hq (p*sf, p*sf, 3) float32 (a copy of the aligned crop).
    """
    h, w = plan['hr_hw']
    img = np.ascontiguousarray(modcrop(np.asarray(img, np.float32), plan['sf']))
    if plan.get('sharpen'):
        img = usm_sharpen(img)
    hq = img.copy()
    for name, params in plan['steps']:
        if name == 'blur':
            img = convolve(img, params['kernel'])
        elif name == 'resize':
            img = resize(img, params['size'], params['interp'])
        elif name == 'imresize_matlab':
            img = imresize_matlab(img, params['scale'])
        elif name == 'shifted_nearest':
            sf = params['sf']
            img = np.ascontiguousarray(convolve(img, params['kernel'])[::sf, ::sf])
        elif name == 'clip':
            img = np.clip(img, 0.0, 1.0)
        elif name == 'gaussian_noise':
            img = add_noise(
                img,
                gaussian_noise_field(img.shape[:2], params['mode'], params['sigma'], rng, params['cov'], img.shape[2]))
        elif name == 'speckle_noise':
            img = add_speckle_noise(
                img,
                gaussian_noise_field(img.shape[:2], params['mode'], params['sigma'], rng, params['cov'], img.shape[2]))
        elif name == 'poisson_noise':
            img = add_poisson_noise(img, params['vals'], params['gray'], rng)
        elif name == 'jpeg':
            img = jpeg_compress(img, params['quality'])
        elif name == 'isp':
            if isp_model is not None:
                img, hq = isp_model(img.copy(), hq)
        else:
            raise ValueError(f'unknown degradation step {name!r}')
    top, left = plan['crop']
    lq, hq = crop_pair(img, hq, top, left, plan['sf'], plan['lq_patchsize'])
    return np.ascontiguousarray(lq, np.float32), np.ascontiguousarray(hq, np.float32)


def _as_rng(rng):
    if rng is None or isinstance(rng, (int, np.integer, list, tuple, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f'rng must be a numpy.random.Generator, a seed or None, got {type(rng).__name__}')
    return rng


def degradation_bsrgan(img, sf=4, lq_patchsize=72, rng=None, isp_model=None):
    """BSRGAN degradation (paper section 3; KAIR ``degradation_bsrgan``): sample a plan, then apply it.

    Steps: mod crop; for sf=4 a x1/2 pre-downscale with p=0.25 (cv2 or MATLAB bicubic, later steps use sf=2);
    a random order of {blur, blur, downsample2, downsample3, Gaussian noise, JPEG p=0.9, ISP} with downsample2
    before downsample3 (downsample2: cv2 resize by 1/U(1, 2sf) with p=0.75, i.e. possibly down-up, else the
    shifted-Gaussian 'nearest' branch); a final JPEG; an aligned random crop.

    Args:
        img (ndarray): (H, W, 3) float32 RGB in [0, 1], at least lq_patchsize*sf per side after mod crop.
        sf (int): 2, 3 or 4.
        lq_patchsize (int): LQ side; HQ side is lq_patchsize*sf.
        rng (numpy.random.Generator | int | None): Randomness (a seed is turned into ``default_rng(seed)``).
        isp_model (callable, optional): Camera-noise hook, off by default (as in KAIR).

    Returns:
        tuple: lq (p, p, 3) and hq (p*sf, p*sf, 3), float32 RGB.
    """
    rng = _as_rng(rng)
    plan = sample_bsrgan_plan(rng, sf, np.shape(img), lq_patchsize)
    return apply_plan(img, plan, rng, isp_model)


def degradation_bsrgan_plus(img, sf=4, shuffle_prob=0.5, use_sharp=False, lq_patchsize=64, rng=None, isp_model=None):
    """BSRGAN+ degradation (KAIR ``degradation_bsrgan_plus``); defaults follow KAIR (shuffle 0.5, no sharpening).

    Args:
        img (ndarray): (H, W, 3) float32 RGB in [0, 1].
        sf (int): 2, 3 or 4.
        shuffle_prob (float): Probability of a full shuffle of the 13 ops.
        use_sharp (bool): USM-sharpen the input (HQ target included) first.
        lq_patchsize (int): LQ side.
        rng (numpy.random.Generator | int | None): Randomness.
        isp_model (callable, optional): Camera-noise hook, off by default.

    Returns:
        tuple: lq (p, p, 3) and hq (p*sf, p*sf, 3), float32 RGB.
    """
    rng = _as_rng(rng)
    plan = sample_bsrgan_plus_plan(rng, sf, np.shape(img), lq_patchsize, shuffle_prob, use_sharp)
    return apply_plan(img, plan, rng, isp_model)
