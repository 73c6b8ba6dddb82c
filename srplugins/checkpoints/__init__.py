"""Checkpoint files: load and unwrap, detect the architecture over the families declared next to each network,
build the registered network, convert to a BasicSR file.

Public API::

    from srplugins import checkpoints
    obj = checkpoints.load_file(path, unsafe_load=False)           # torch.load(weights_only=True), diagnosed errors
    state, meta = checkpoints.unwrap(obj, purpose=None)              # params_ema / params / DSN bundles / prefixes
    info = checkpoints.detect(state, meta, scale=None, path=None)    # CheckpointInfo (family, arch_type, arch_opt, ...)
    info = checkpoints.read(path, scale=None, purpose=None)          # load_file + unwrap + detect
    net, info = checkpoints.build_network(path_or_state_or_info, scale=None, purpose=None)
    info = checkpoints.convert(src, dst)                             # {'params', 'network_opt', 'scale', ...}
    net_g, net_d, opts = checkpoints.load_dsn(path)                  # both networks of a DASR DSN file

Families are declared in ``srplugins/archs/*_arch.py`` (and :mod:`.basicsr_families` for basicsr's own
architectures) with :func:`register_family` / :func:`register_arch`.
"""
from srplugins.checkpoints.core import build_network, convert, detect, found_prefixes, from_network_opt, load_dsn, read
from srplugins.checkpoints.family import (ArchSpec, Built, CheckpointInfo, Family, arch_spec, families, purpose_of,
                                          register_arch, register_family, scale_from_filename, scale_of,
                                          size_multiple_of)
from srplugins.checkpoints.io import CheckpointReadError, load_file, unwrap

__all__ = [
    'load_file', 'unwrap', 'detect', 'read', 'build_network', 'convert', 'load_dsn', 'from_network_opt',
    'found_prefixes', 'CheckpointInfo', 'CheckpointReadError', 'ArchSpec', 'Family', 'Built', 'register_arch',
    'register_family', 'families', 'arch_spec', 'purpose_of', 'scale_of', 'size_multiple_of', 'scale_from_filename'
]
