"""Moved to :mod:`srplugins.inference`; re-exported for code written against srplugins <= 0.3."""
from srplugins.inference import (TileInferenceError, Upscaler, enhance, load_upscaler, read_image, run_network,
                                 write_image)
from srplugins.inference.cli import list_inputs, main, process_paths

__all__ = [
    'TileInferenceError', 'Upscaler', 'enhance', 'run_network', 'load_upscaler', 'read_image', 'write_image',
    'list_inputs', 'process_paths', 'main'
]
