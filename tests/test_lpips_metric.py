"""calculate_lpips: equals the lpips package's own result, BasicSR signature / registry, cached network."""
import numpy as np
import pytest
import shutil
import torch
import warnings
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY

import srplugins  # noqa: F401
from srplugins.metrics import lpips_metric
from srplugins.metrics.lpips_metric import calculate_lpips


def _images(seed=0, size=48):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, img.shape)
    return img, np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def _package_lpips(alexnet_weights, tmp_path):
    """The reference: lpips.LPIPS built the package's own way (torchvision hub cache holding the backbone file)."""
    import lpips
    hub = tmp_path / 'hub'
    (hub / 'checkpoints').mkdir(parents=True)
    shutil.copy(alexnet_weights, hub / 'checkpoints' / 'alexnet-owt-7be5be79.pth')
    old = torch.hub._hub_dir  # the raw setting: restoring get_dir() would pin the hub folder and hide TORCH_HOME
    torch.hub.set_dir(str(hub))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torchvision's "pretrained is deprecated"
            return lpips.LPIPS(net='alex', version='0.1', verbose=False).eval()
    finally:
        torch.hub._hub_dir = old


def _rgb01(img_bgr):
    return torch.from_numpy(img_bgr[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy() / 255.)[None]


def test_equals_lpips_package_and_crop_border(alexnet_weights, tmp_path):
    ref_model = _package_lpips(alexnet_weights, tmp_path)
    img, img2 = _images()
    with torch.no_grad():
        ref = float(ref_model(_rgb01(img), _rgb01(img2), normalize=True))
        ref_crop = float(ref_model(_rgb01(img[4:-4, 4:-4]), _rgb01(img2[4:-4, 4:-4]), normalize=True))
    got = calculate_lpips(img, img2, device='cpu')
    assert got > 0 and got == pytest.approx(ref, abs=1e-6)
    assert calculate_lpips(img, img2, crop_border=4, device='cpu') == pytest.approx(ref_crop, abs=1e-6)
    assert calculate_lpips(img, img, device='cpu') == pytest.approx(0, abs=1e-6)
    # uint16 and CHW inputs are the same image
    assert calculate_lpips(
        img.astype(np.uint16) * 257, img2.astype(np.uint16) * 257, device='cpu') == pytest.approx(
            ref, abs=1e-5)
    assert calculate_lpips(
        img.transpose(2, 0, 1), img2.transpose(2, 0, 1), input_order='CHW', device='cpu') == pytest.approx(
            ref, abs=1e-6)


def test_registered_cached_and_usable_from_option_files(alexnet_weights, monkeypatch):
    assert METRIC_REGISTRY.get('calculate_lpips') is calculate_lpips
    import srplugins.utils.pretrained as pretrained
    calls = []
    real_build = pretrained.build_lpips

    def counting_build(**kwargs):
        calls.append(kwargs)
        return real_build(**kwargs)

    monkeypatch.setattr(pretrained, 'build_lpips', counting_build)
    monkeypatch.setattr(lpips_metric, '_LPIPS_CACHE', {})
    img, img2 = _images(1, 48)
    # what basicsr's validation does: calculate_metric(data, opt) with the val.metrics entry (incl. 'better')
    opt = {'type': 'calculate_lpips', 'crop_border': 2, 'better': 'lower', 'device': 'cpu'}
    first = calculate_metric({'img': img, 'img2': img2}, opt)
    second = calculate_metric({'img': img, 'img2': img2}, opt)
    assert first == second and len(calls) == 1 and len(lpips_metric._LPIPS_CACHE) == 1

    with pytest.raises(ValueError, match='test_y_channel'):
        calculate_lpips(img, img2, test_y_channel=True, device='cpu')
    with pytest.raises(ValueError, match='shapes'):
        calculate_lpips(img, img2[:8], device='cpu')
