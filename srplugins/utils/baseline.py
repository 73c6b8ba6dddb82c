"""Bicubic baseline of the validation sets, computed with the option file's own metrics.

The LQ image is upscaled with basicsr's MATLAB-style bicubic ``imresize`` (the usual "Bicubic" row of SR tables) and
scored against GT by ``basicsr.metrics.calculate_metric`` with exactly the ``val.metrics`` entries of the option file,
so the figures are comparable with the model's validation lines.

A model whose output is the LR image (e.g. DASR's down-sampling network, validated as G(HR) against the real LR)
declares ``bicubic_baseline_mode = 'downscale'``: its baseline is the bicubic down-scale of GT scored against LQ.
"""
from collections import OrderedDict


def bicubic_baseline(dataset_opt, metrics_opt, scale, mode='upscale'):
    """Average metrics of bicubic upscaling over one paired validation dataset.

    Args:
        dataset_opt (dict): A validation dataset entry of an option file (``phase``/``scale`` set by basicsr).
        metrics_opt (dict): ``val.metrics`` of the option file.
        scale (int): Upscaling factor.
        mode (str): ``'upscale'``: bicubic(LQ, x scale) vs GT; ``'downscale'``: bicubic(GT, 1/scale) vs LQ.

    Returns:
        OrderedDict | None: metric name -> mean value, or None when the dataset does not yield LQ/GT pairs whose sizes
        differ by ``scale`` (e.g. unpaired data).
    """
    import torch
    from basicsr.data import build_dataset
    from basicsr.metrics import calculate_metric
    from basicsr.utils import tensor2img
    from basicsr.utils.matlab_functions import imresize

    dataset = build_dataset(dataset_opt)
    sums = OrderedDict((name, 0.0) for name in metrics_opt)
    count = 0
    for index in range(len(dataset)):
        item = dataset[index]
        if 'lq' not in item or 'gt' not in item:
            return None
        lq, gt = item['lq'], item['gt']
        if lq.shape[-2] * scale != gt.shape[-2] or lq.shape[-1] * scale != gt.shape[-1]:
            return None
        with torch.no_grad():
            if mode == 'downscale':
                metric_data = {'img': tensor2img(imresize(gt.float(), 1. / scale).clamp_(0, 1)), 'img2': tensor2img(lq)}
            else:
                metric_data = {'img': tensor2img(imresize(lq.float(), scale).clamp_(0, 1)), 'img2': tensor2img(gt)}
        for name, opt_ in metrics_opt.items():
            sums[name] += float(calculate_metric(metric_data, opt_))
        count += 1
    if count == 0:
        return None
    return OrderedDict((name, value / count) for name, value in sums.items())


def log_bicubic_baseline(opt):
    """Log the bicubic baseline of every validation / test set of ``opt`` to basicsr's root logger."""
    from basicsr.utils import get_root_logger
    from basicsr.utils.registry import MODEL_REGISTRY

    logger = get_root_logger()
    metrics_opt = opt['val'].get('metrics')
    if not metrics_opt:
        return
    mode = getattr(MODEL_REGISTRY.get(opt['model_type']), 'bicubic_baseline_mode', 'upscale')
    what = 'bicubic down-scale of GT vs LQ' if mode == 'downscale' else 'MATLAB-style bicubic of LQ'

    for phase, dataset_opt in opt['datasets'].items():
        if phase.split('_')[0] == 'train':
            continue
        result = bicubic_baseline(dict(dataset_opt), metrics_opt, opt['scale'], mode)
        name = dataset_opt.get('name', phase)
        if result is None:
            logger.info(f'Bicubic baseline on {name}: skipped (no LQ/GT pairs at x{opt["scale"]} in this dataset).')
            continue
        figures = '\t'.join(f'# {metric}: {value:.4f}' for metric, value in result.items())
        logger.info(f'Bicubic baseline on {name} (x{opt["scale"]}, {what}):\n\t {figures}')
