"""Moved to :mod:`srplugins.checkpoints` (families now live next to their networks in ``srplugins/archs``).

Kept as a re-export for code written against srplugins <= 0.3: ``load_checkpoint`` is
:func:`srplugins.checkpoints.read`; :func:`srplugins.checkpoints.build_network` now returns ``(net, info)``.
"""
from srplugins.checkpoints import CheckpointInfo, build_network, convert, detect, load_file
from srplugins.checkpoints import read as load_checkpoint
from srplugins.checkpoints import scale_from_filename, size_multiple_of, unwrap

__all__ = [
    'CheckpointInfo', 'build_network', 'convert', 'detect', 'load_file', 'load_checkpoint', 'scale_from_filename',
    'size_multiple_of', 'unwrap'
]
