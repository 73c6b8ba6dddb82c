"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018) as a
BasicSR metric.

Usable in ``val.metrics`` of any option file::

    val:
      metrics:
        lpips:
          type: calculate_lpips
          crop_border: 4
          better: lower        # basicsr keeps the best value with this (default 'higher' would be wrong)

What is reused: the ``lpips`` package (v0.1 linear layers shipped in its wheel) through
``srplugins.utils.pretrained.build_lpips``, which loads the torchvision backbone offline (``alexnet-owt-7be5be79.pth``
for the default AlexNet). Behaviour follows the package's ``lpips.LPIPS(net='alex')(x, y, normalize=True)`` on RGB
images in [0, 1]; the differences from calling it by hand are only the BasicSR conventions: BGR HWC inputs (uint8,
uint16 or float in [0, 1]), ``crop_border`` and ``input_order`` as in basicsr's ``calculate_psnr``, and one network per
``(net, version, device)`` cached for the whole process (basicsr calls a metric once per image).
"""
import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

_LPIPS_CACHE = {}


def get_lpips_model(net='alex', version='0.1', device='cpu'):
    """The cached, frozen ``lpips.LPIPS`` model for ``(net, version, device)`` (built on first use, offline)."""
    device = torch.device(device)
    key = (net, version, str(device))
    if key not in _LPIPS_CACHE:
        from srplugins.utils.pretrained import build_lpips
        _LPIPS_CACHE[key] = build_lpips(net=net, version=version).to(device)
    return _LPIPS_CACHE[key]


def _to_rgb_tensor(img, input_order, crop_border):
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"Wrong input_order {input_order}. Supported input_orders are 'HWC' and 'CHW'")
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    elif input_order == 'CHW':
        img = img.transpose(1, 2, 0)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.
    else:
        img = img.astype(np.float32)
        if img.max() > 1.5:  # float images in [0, 255], as basicsr's tensor2img(out_type=np.float32) gives
            img = img / 255.
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]
    img = img[..., ::-1]  # BGR -> RGB
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


@METRIC_REGISTRY.register()
def calculate_lpips(img,
                    img2,
                    crop_border=0,
                    input_order='HWC',
                    test_y_channel=False,
                    net='alex',
                    version='0.1',
                    device=None,
                    **kwargs):
    """LPIPS distance between two images (lower is more similar).

    Args:
        img (ndarray): Image, (H, W, C) BGR (or (C, H, W) with ``input_order='CHW'``), uint8 / uint16 / float in [0, 1].
        img2 (ndarray): Reference image, same layout.
        crop_border (int): Pixels cropped from each edge before the evaluation. Default: 0.
        input_order (str): ``'HWC'`` or ``'CHW'``. Default: ``'HWC'``.
        test_y_channel (bool): Not supported (LPIPS is defined on RGB); ``True`` raises ValueError.
        net (str): ``'alex'`` (default), ``'vgg'`` or ``'squeeze'``.
        version (str): LPIPS version. Default: ``'0.1'``.
        device (str | None): Where the network runs. Default: CUDA if available, else CPU.

    Returns:
        float: LPIPS distance.
    """
    if test_y_channel:
        raise ValueError('calculate_lpips: test_y_channel is not supported, LPIPS compares RGB images.')
    if np.asarray(img).shape != np.asarray(img2).shape:
        raise ValueError(f'Image shapes are different: {np.asarray(img).shape}, {np.asarray(img2).shape}.')
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = get_lpips_model(net, version, device)
    x = _to_rgb_tensor(img, input_order, crop_border).to(device)
    y = _to_rgb_tensor(img2, input_order, crop_border).to(device)
    with torch.no_grad():
        return float(model(x, y, normalize=True).mean().item())
