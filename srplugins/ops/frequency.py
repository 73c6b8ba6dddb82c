"""Frequency-separation operators shared by the DASR archs, losses, models and scripts.

DASR (Wei et al., "Unsupervised Real-world Image Super Resolution via Domain-distance Aware Training", CVPR 2021,
arXiv 2004.01178) splits images into low and high frequencies in three ways (paper Sec. 3 / ablation names):

* ``gau`` (GBFS): Gaussian blur with a ``k x k`` kernel, sigma ``k / 6``, zero padding; high = x - blur.
* ``avg_pool``: the same with a ``k x k`` box filter.
* ``wavelet`` (WFS, the proposed default): a one-level Haar DWT; low = LL band, high = the three detail bands.

Official behaviour followed (ShuhangGu/DASR ``codes/DSN/model.py``, ``codes/SRN/models/DASR_model.py``):

* Gaussian kernel ``exp(-((x-m)^2 + (y-m)^2) / (2 sigma^2))``, ``m = (k-1)/2``, ``sigma = k/6``, normalised to sum 1.
* Normalised high pass ``0.5 + 0.5 * (x - low(x))``; normalised wavelet bands ``0.5 + 0.5 * band`` and ``0.5 * LL``.
* The Haar DWT equals ``pytorch_wavelets.DWTForward(J=1, wave='haar', mode='reflect')``: for odd sizes one row /
  column is reflect-padded at the bottom / right, and the output has ``ceil(N / 2)`` rows / columns.

Deliberate differences: every function works for any number of channels (the official filters hard-code 3), does not
need ``pytorch_wavelets`` and runs on the input's device and dtype.

The module also holds the receptive-field arithmetic of the domain-distance maps (official
``codes/DSN/receptive_cal.py``): :func:`receptive_field_geometry`, :func:`receptive_field_windows`,
:func:`spread_over_receptive_fields` and, for the FSD discriminator, the equivalent :func:`receptive_field_average`.

All functions are pure: they take tensors shaped ``(B, C, H, W)`` and return new tensors.
"""
import math
import torch
import torch.nn.functional as F

FILTER_TYPES = ('gau', 'avg_pool', 'wavelet')
WAVELET_COMBINES = ('cat', 'sum')


def _check_4d(x, name='x'):
    if not torch.is_tensor(x) or x.dim() != 4:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f'{name} must be a tensor shaped (B, C, H, W), got {shape}.')


def _check_kernel_size(kernel_size):
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be a positive odd integer, got {kernel_size!r}.')


def gaussian_kernel2d(kernel_size=5, sigma=None, dtype=torch.float32, device=None):
    """Normalised 2D Gaussian kernel as used by the DASR filters.

    Args:
        kernel_size (int): Odd kernel size ``k``. Default: 5 (official ``--kernel_size``).
        sigma (float | None): Standard deviation; ``None`` means the official ``k / 6``.
        dtype (torch.dtype): Output dtype. Default: float32.
        device (torch.device | None): Output device.

    Returns:
        Tensor: Kernel shaped ``(k, k)`` that sums to 1.
    """
    _check_kernel_size(kernel_size)
    if sigma is None:
        sigma = kernel_size / 6.0
    # computed in float64 and cast, so that the fp32 result is as close as possible to the official fp32 kernel
    coords = torch.arange(kernel_size, dtype=torch.float64, device=device) - (kernel_size - 1) / 2.0
    sq = coords[None, :]**2 + coords[:, None]**2
    kernel = torch.exp(-sq / (2.0 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_lowpass(x, kernel_size=5, padding=True, kernel=None):
    """Depthwise Gaussian blur with zero padding.

    Args:
        x (Tensor): Input ``(B, C, H, W)``.
        kernel_size (int): Odd kernel size ``k``; sigma is ``k / 6``.
        padding (bool): ``True``: zero-pad by ``(k-1)/2`` so the output keeps ``(H, W)`` (discriminator high pass,
            SRN low pass). ``False``: valid convolution, output ``(H-k+1, W-k+1)`` (DSN colour loss).
        kernel (Tensor | None): Optional ``(k, k)`` or ``(C, 1, k, k)`` kernel to use instead of the computed one
            (e.g. one loaded from an official checkpoint).

    Returns:
        Tensor: Blurred image, same dtype and device as ``x``.
    """
    _check_4d(x)
    channels = x.size(1)
    if kernel is None:
        kernel = gaussian_kernel2d(kernel_size, dtype=x.dtype, device=x.device)
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    if kernel.dim() == 2:
        kernel = kernel[None, None]
    if kernel.size(0) == 1:
        kernel = kernel.expand(channels, 1, kernel.size(-2), kernel.size(-1))
    if kernel.size(0) != channels:
        raise ValueError(f'Gaussian kernel has {kernel.size(0)} channels but the input has {channels}.')
    pad = (kernel.size(-1) - 1) // 2 if padding else 0
    return F.conv2d(x, kernel, padding=pad, groups=channels)


def box_lowpass(x, kernel_size=5, padding=True, count_include_pad=False):
    """``k x k`` average filter (the official ``avg_pool`` frequency separation).

    Args:
        x (Tensor): Input ``(B, C, H, W)``.
        kernel_size (int): Odd kernel size ``k``.
        padding (bool): Pad by ``(k-1)/2`` (same size) or not (valid).
        count_include_pad (bool): Whether padded zeros count in the average. The DSN uses ``False``; the SRN
            ``avgpool`` option uses ``True``.

    Returns:
        Tensor: Filtered image.
    """
    _check_4d(x)
    _check_kernel_size(kernel_size)
    pad = (kernel_size - 1) // 2 if padding else 0
    return F.avg_pool2d(x, kernel_size, stride=1, padding=pad, count_include_pad=count_include_pad)


def haar_dwt(x):
    """One-level 2D Haar DWT, identical to ``pytorch_wavelets.DWTForward(J=1, wave='haar', mode='reflect')``.

    With ``a = x[2i, 2j]``, ``b = x[2i, 2j+1]``, ``c = x[2i+1, 2j]``, ``d = x[2i+1, 2j+1]``:
    ``LL = (a+b+c+d)/2``, ``LH = (a+b-c-d)/2``, ``HL = (a-b+c-d)/2``, ``HH = (a-b-c+d)/2``.
    Odd heights / widths are reflect-padded by one row / column at the bottom / right first.

    Args:
        x (Tensor): Input ``(B, C, H, W)``.

    Returns:
        tuple[Tensor, Tensor]: ``LL`` shaped ``(B, C, ceil(H/2), ceil(W/2))`` and the detail bands shaped
        ``(B, C, 3, ceil(H/2), ceil(W/2))`` in pytorch_wavelets order ``(LH, HL, HH)`` (``Yh[0]`` there).
    """
    _check_4d(x)
    pad_h, pad_w = x.size(-2) % 2, x.size(-1) % 2
    if pad_h or pad_w:
        if (pad_h and x.size(-2) < 2) or (pad_w and x.size(-1) < 2):
            raise ValueError(f'haar_dwt needs at least 2 rows and columns to reflect-pad, got {tuple(x.shape)}.')
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    low = (a + b + c + d) * 0.5
    lh = (a + b - c - d) * 0.5
    hl = (a - b + c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return low, torch.stack((lh, hl, hh), dim=2)


def combine_wavelet_bands(bands, combine='cat'):
    """Turns the ``(B, C, 3, h, w)`` detail bands into a discriminator input.

    Args:
        bands (Tensor): Detail bands from :func:`haar_dwt` (normalised or not).
        combine (str): ``'cat'``: channel concatenation ``[LH(c...), HL(c...), HH(c...)]`` -> ``(B, 3C, h, w)``
            (official default, 9 channels for RGB). ``'sum'``: ``(LH + HL + HH) / 3`` -> ``(B, C, h, w)``.

    Returns:
        Tensor: Combined bands.
    """
    if combine == 'cat':
        return torch.cat(bands.unbind(dim=2), dim=1)
    if combine == 'sum':
        return bands.sum(dim=2) / 3.0
    raise ValueError(f'Wavelet band combination must be one of {WAVELET_COMBINES}, got {combine!r}.')


def wavelet_lowpass(x, normalize=True):
    """Haar LL band; ``normalize`` gives the official ``0.5 * LL`` (the 2x2 block mean). Shape ``(B, C, h, w)``."""
    low, _ = haar_dwt(x)
    return low * 0.5 if normalize else low


def wavelet_highpass(x, combine='cat', normalize=True):
    """Haar detail bands as fed to the DASR discriminators.

    Args:
        x (Tensor): Input ``(B, C, H, W)``.
        combine (str): ``'cat'`` (``3C`` channels) or ``'sum'`` (``C`` channels), see :func:`combine_wavelet_bands`.
        normalize (bool): Map each band to ``0.5 + 0.5 * band`` (official).

    Returns:
        Tensor: ``(B, 3C or C, ceil(H/2), ceil(W/2))``.
    """
    _, bands = haar_dwt(x)
    if normalize:
        bands = bands * 0.5 + 0.5
    return combine_wavelet_bands(bands, combine)


def lowpass(x, filter_type='gau', kernel_size=5, padding=True, count_include_pad=False, kernel=None):
    """Low-frequency part of ``x`` with one of the official filters.

    Args:
        x (Tensor): Input ``(B, C, H, W)``.
        filter_type (str): ``'gau'``, ``'avg_pool'`` or ``'wavelet'`` (``0.5 * LL``, half resolution).
        kernel_size (int): Kernel size for ``gau`` / ``avg_pool``.
        padding (bool): Same-size (True) or valid (False) filtering for ``gau`` / ``avg_pool``.
        count_include_pad (bool): Box-filter border handling (see :func:`box_lowpass`).
        kernel (Tensor | None): Explicit Gaussian kernel (see :func:`gaussian_lowpass`).

    Returns:
        Tensor: The low-pass image.
    """
    if filter_type == 'gau':
        return gaussian_lowpass(x, kernel_size, padding=padding, kernel=kernel)
    if filter_type == 'avg_pool':
        return box_lowpass(x, kernel_size, padding=padding, count_include_pad=count_include_pad)
    if filter_type == 'wavelet':
        return wavelet_lowpass(x, normalize=True)
    raise ValueError(f'filter_type must be one of {FILTER_TYPES}, got {filter_type!r}.')


def highpass(x,
             filter_type='gau',
             kernel_size=5,
             normalize=True,
             recursions=1,
             count_include_pad=False,
             combine='cat',
             kernel=None):
    """High-frequency part of ``x`` as seen by the DASR discriminators.

    For ``gau`` / ``avg_pool`` this is ``x' - low(x')`` with same-size filtering, where ``x'`` is ``x`` low-passed
    ``recursions - 1`` times (official ``FilterHigh``); ``normalize`` maps it to ``0.5 + 0.5 * high``. For ``wavelet``
    it is :func:`wavelet_highpass`.

    Args:
        x (Tensor): Input ``(B, C, H, W)``.
        filter_type (str): ``'gau'``, ``'avg_pool'`` or ``'wavelet'``.
        kernel_size (int): Kernel size for ``gau`` / ``avg_pool``.
        normalize (bool): Official ``0.5 + 0.5 * high`` normalisation.
        recursions (int): Official ``FilterHigh`` recursions (default 1).
        count_include_pad (bool): Box-filter border handling; the DSN discriminator uses ``False``.
        combine (str): Wavelet band combination ``'cat'`` / ``'sum'``.
        kernel (Tensor | None): Explicit Gaussian kernel.

    Returns:
        Tensor: ``(B, C, H, W)`` for ``gau`` / ``avg_pool``; ``(B, 3C or C, ceil(H/2), ceil(W/2))`` for wavelet.
    """
    if filter_type == 'wavelet':
        return wavelet_highpass(x, combine=combine, normalize=normalize)
    if filter_type not in FILTER_TYPES:
        raise ValueError(f'filter_type must be one of {FILTER_TYPES}, got {filter_type!r}.')
    if not isinstance(recursions, int) or recursions < 1:
        raise ValueError(f'recursions must be a positive integer, got {recursions!r}.')
    for _ in range(recursions - 1):
        x = lowpass(x, filter_type, kernel_size, True, count_include_pad, kernel)
    high = x - lowpass(x, filter_type, kernel_size, True, count_include_pad, kernel)
    return high * 0.5 + 0.5 if normalize else high


def frequency_separation(x, fs_type='wavelet', kernel_size=9, normalize=True, count_include_pad=True):
    """Low / high split used by the DASR SR stage (official ``DASR_Model.fs``).

    Args:
        x (Tensor): Image ``(B, C, H, W)`` in [0, 1].
        fs_type (str): ``'wavelet'`` (official auto-reproduce default), ``'gau'`` or ``'avg_pool'``.
        kernel_size (int): Kernel size for ``gau`` / ``avg_pool`` (official ``fs_kernel_size`` 9).
        normalize (bool): ``True``: low = ``0.5 * LL`` and high bands ``0.5 + 0.5 * band`` for wavelet; high =
            ``0.5 + 0.5 * (x - low)`` for the filters. The official SRN normalises the filter high pass a second
            time (``0.75 + 0.25 * (x - low)``); that is not reproduced here (an affine change the discriminator
            absorbs).
        count_include_pad (bool): Box-filter border handling (the official SRN ``avgpool`` uses ``True``).

    Returns:
        tuple[Tensor, Tensor]: ``(low, high)``. Wavelet: ``(B, C, H/2, W/2)`` and ``(B, 3C, H/2, W/2)`` (cat).
        Filters: both ``(B, C, H, W)``.
    """
    if fs_type == 'wavelet':
        low, bands = haar_dwt(x)
        if normalize:
            low, bands = low * 0.5, bands * 0.5 + 0.5
        return low, combine_wavelet_bands(bands, 'cat')
    low = lowpass(x, fs_type, kernel_size, padding=True, count_include_pad=count_include_pad)
    high = x - low
    return low, (high * 0.5 + 0.5 if normalize else high)


def receptive_field_average(prob, field=17):
    """Domain-distance map from a patch discriminator's probability map (official ``receptive_cal.getWeights``).

    Every output value of the 5x5-conv FSD discriminator sees a ``17 x 17`` window; the official generation step
    spreads each probability uniformly over its window and divides by the number of windows covering each pixel.
    That equals ``avg_pool2d(prob, field, stride 1, pad field // 2, count_include_pad=False)``.

    Args:
        prob (Tensor): Probabilities ``(B, 1, h, w)`` (sigmoid of the discriminator logits).
        field (int): Odd receptive-field size. Default: 17 (four 5x5 convolutions).

    Returns:
        Tensor: Map of the same shape, values in the range of ``prob``.
    """
    _check_4d(prob, 'prob')
    _check_kernel_size(field)
    return F.avg_pool2d(prob, field, stride=1, padding=field // 2, count_include_pad=False)


# Official conv descriptions ``(kernel, stride, padding)`` of the DSN discriminator bodies used to place the
# receptive-field windows of the domain-distance maps (codes/DSN/create_dataset_modified.py, ``convnet``). For FSD
# this is four 5x5 convs, i.e. the three 5x5 convs of the body plus the 5x5 high-pass filter.
DSN_RECEPTIVE_LAYERS = {
    'fsd': ((5, 1, 2), ) * 4,
    'nld_s1': ((4, 1, 1), ) * 4,
    'nld_s2': ((4, 2, 1), (4, 2, 1), (4, 1, 1), (4, 1, 1)),
}


def receptive_field_geometry(size, layers):
    """Receptive-field arithmetic of the official ``receptive_cal.receptive_cal`` along one axis.

    Starting from ``(size, jump 1, receptive field 1, start 0.5)``, each conv ``(k, s, p)`` gives
    ``n' = floor((n - k + 2p) / s) + 1``, ``pad_left = floor(((n' - 1) s - n + k) / 2)``, ``rf' = rf + (k - 1) jump``,
    ``start' = start + ((k - 1) / 2 - pad_left) jump`` and ``jump' = jump s``.

    Args:
        size (int): Length of the canvas axis (the discriminator input).
        layers (Sequence[tuple[int, int, int]]): ``(kernel, stride, padding)`` per conv, e.g.
            ``DSN_RECEPTIVE_LAYERS['nld_s2']``.

    Returns:
        tuple: ``(n_out, jump, rf, start)``: outputs along the axis, their spacing, the window size and the centre
        of output 0 (in canvas pixels, pixel ``r`` spanning ``[r, r + 1)``).
    """
    n, jump, rf, start = int(size), 1, 1, 0.5
    for kernel, stride, pad in layers:
        n_out = (n - kernel + 2 * pad) // stride + 1
        pad_left = ((n_out - 1) * stride - n + kernel) // 2
        rf += (kernel - 1) * jump
        start += ((kernel - 1) / 2 - pad_left) * jump
        jump *= stride
        n = n_out
    return n, jump, rf, start


def receptive_field_windows(size, layers):
    """Canvas rows ``[lo, hi)`` that each discriminator output covers along one axis (official ``weights_matrix``).

    Output ``i`` covers ``[floor(max(0, c_i - rf // 2)), floor(c_i + rf - rf // 2))`` with ``c_i = start + i * jump``
    (see :func:`receptive_field_geometry`), clipped to the canvas. Official values: FSD ``[i - 8, i + 9)``;
    nld_s1 ``[i - 4, i + 9)`` (13 pixels, step 1); nld_s2 with ``size`` a multiple of 4 ``[4i - 11, 4i + 23)``
    (34 pixels, step 4).

    Returns:
        list[tuple[int, int]]: One ``(lo, hi)`` per output.
    """
    n, jump, rf, start = receptive_field_geometry(size, layers)
    windows = []
    for i in range(max(n, 0)):
        centre = start + i * jump
        windows.append((int(math.floor(max(0.0, centre - rf // 2))), min(int(math.floor(centre + rf - rf // 2)), size)))
    return windows


def _window_matrix(size, layers, dtype, device):
    windows = receptive_field_windows(size, layers)
    if not windows:
        raise ValueError(f'A canvas of {size} pixels is too small for the discriminator layers {tuple(layers)}.')
    rows = torch.arange(size, device=device)[:, None]
    lo = torch.tensor([w[0] for w in windows], device=device)[None]
    hi = torch.tensor([w[1] for w in windows], device=device)[None]
    return ((rows >= lo) & (rows < hi)).to(dtype)


def spread_over_receptive_fields(prob, layers, canvas_size):
    """Domain-distance map by official receptive-field averaging (``receptive_cal.getWeights``), vectorised.

    Every discriminator output ``prob[..., i, j]`` is added uniformly to its receptive-field window on a canvas of
    ``canvas_size`` and the sum is divided by the number of windows covering each pixel. Windows are rectangles, so
    the sums are ``A_h @ prob @ A_w^T`` with the 0/1 window matrices ``A`` of :func:`receptive_field_windows`.

    Difference from the official code: each axis uses its own geometry; the official ``getWeights`` uses the width
    axis' ``start`` for both axes (a shadowed variable), which only differs for ``nld_s2`` when height and width
    differ in their remainder modulo 4.

    Args:
        prob (Tensor): Discriminator probabilities ``(B, 1, n_h, n_w)``; ``n_h`` / ``n_w`` at least the output count
            that the layers give for the canvas (extra trailing rows / columns are ignored, as officially).
        layers (Sequence[tuple[int, int, int]]): ``(kernel, stride, padding)`` per conv (``DSN_RECEPTIVE_LAYERS``).
        canvas_size (tuple[int, int]): ``(H, W)`` of the map, i.e. of the discriminator input.

    Returns:
        Tensor: ``(B, 1, H, W)``, values in the range of ``prob``.
    """
    _check_4d(prob, 'prob')
    height, width = (int(v) for v in canvas_size)
    a_h = _window_matrix(height, layers, prob.dtype, prob.device)
    a_w = _window_matrix(width, layers, prob.dtype, prob.device)
    n_h, n_w = a_h.size(1), a_w.size(1)
    if prob.size(-2) < n_h or prob.size(-1) < n_w:
        raise ValueError(f'prob has {tuple(prob.shape[-2:])} outputs, the layers give {(n_h, n_w)} for a canvas of '
                         f'{(height, width)}.')
    total = torch.einsum('hi,bcij,wj->bchw', a_h, prob[..., :n_h, :n_w], a_w)
    count = a_h.sum(1)[:, None] * a_w.sum(1)[None, :]
    return total / count


def fsd_receptive_field(num_convs=4, kernel_size=5):
    """Receptive field of ``num_convs`` stride-1 convolutions of size ``kernel_size`` (17 for the official FSD)."""
    return 1 + num_convs * (kernel_size - 1)


def ceil_half(n):
    """Spatial size after :func:`haar_dwt`."""
    return int(math.ceil(n / 2))
