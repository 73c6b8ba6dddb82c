"""Inference: tiling with context (:mod:`.tiling`), image modes and depths (:mod:`.images`), the upscaler
(:mod:`.upscaler`), face restoration (:mod:`.face`) and the ``srplugins-infer`` command (:mod:`.cli`).

Python API::

    from srplugins.inference import load_upscaler, read_image, write_image
    up = load_upscaler('net_g_latest.pth', precision='bf16', ensemble=False)
    out, mode = up.enhance(read_image('photo.png'), tile=256)
    write_image('photo_x4.png', out)

    from srplugins.inference import tile_forward, ensemble_forward   # tensor level
    y = tile_forward(net, x, tile=256, tile_pad=32, scale=4, size_multiple=1)
    y = ensemble_forward(net, x)
"""
import torch

from srplugins.inference.images import PRECISIONS, enhance, read_image, write_image
from srplugins.inference.tiling import EnsembleNet, TileInferenceError, auto_tile, ensemble_forward, tile_forward
from srplugins.inference.upscaler import Upscaler, load_upscaler, network_from_opt

__all__ = [
    'tile_forward', 'ensemble_forward', 'EnsembleNet', 'auto_tile', 'TileInferenceError', 'run_network', 'enhance',
    'read_image', 'write_image', 'Upscaler', 'load_upscaler', 'network_from_opt', 'PRECISIONS'
]


def run_network(net, x, scale, tile=0, tile_pad=32, size_multiple=1, out_device=None):
    """:func:`tile_forward` assembled as a float32 tensor (the call signature of srplugins <= 0.3)."""
    with torch.no_grad():
        out = tile_forward(net, x, tile=tile, tile_pad=tile_pad, scale=scale, size_multiple=size_multiple)
    return out.float().to(out_device or x.device)
