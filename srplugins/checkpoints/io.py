"""Read checkpoint files safely and find the state dict inside them.

Every ``torch.load`` here passes ``weights_only=True`` explicitly (also on torch < 2.6, whose default is False), so a
file can hold only tensors and plain containers unless the caller opts in with ``unsafe_load=True`` (command line:
``--unsafe_load``). Failures are diagnosed:

* a file that torch cannot read at all (truncated zip, random bytes, empty file, truncated legacy pickle) is reported
  as "truncated or not a checkpoint", naming the file and the option that gave it -- never with an ``--unsafe_load``
  suggestion, since the code-executing loader cannot read such a file either;
* a readable pickle that holds objects other than tensors (numpy scalars, argparse namespaces...) is reported with
  the ``--unsafe_load`` suggestion (for trusted files only).

Containers: basicsr files (``params_ema`` / ``params``, plus the ``network_opt`` / ``scale`` srplugins' models record),
DSN bundles (``params_g`` / ``params_d`` with ``network_g`` / ``network_d``), official DSN ``.tar`` files
(``model_g_state_dict`` / ``models_d_state_dict`` with ``fs_type`` / ``D_type``), Lightning-style ``state_dict``,
and nested combinations; ``module.`` / ``netG.`` prefixes are stripped.
"""
import os
import torch
from collections import OrderedDict

__all__ = ['load_file', 'unwrap', 'CheckpointReadError', 'WRAPPER_KEYS', 'DISCRIMINATOR_KEYS']

# wrapper keys, most specific first (basicsr EMA weights before the plain ones)
WRAPPER_KEYS = ('params_ema', 'params-ema', 'params', 'params_g', 'model_g_state_dict', 'state_dict',
                'model_state_dict', 'model', 'net', 'netG', 'generator')
# where discriminators live in files holding both networks
DISCRIMINATOR_KEYS = ('params_d', 'models_d_state_dict', 'model_d_state_dict', 'netD', 'discriminator')
STRIP_PREFIXES = ('module.', 'netG.', 'net_g.', 'netD.', 'net_d.', '_orig_mod.')
# metadata srplugins writes beside the weights (basicsr's load_network ignores them)
META_KEYS = ('network_opt', 'scale', 'srplugins_arch', 'srplugins_info')


class CheckpointReadError(ValueError):
    """A checkpoint file could not be read; the message names the file, the option and the cause."""


def _where(path, option):
    return f'{option} = {path}' if option else str(path)


def load_file(path, unsafe_load=False, option=None):
    """Read a checkpoint file onto the CPU.

    ``.safetensors`` files go through ``safetensors.torch.load_file``; everything else through
    ``torch.load(map_location='cpu', weights_only=True)``.

    Args:
        path (str): Checkpoint file.
        unsafe_load (bool): ``weights_only=False`` (can run code stored in the file): only for trusted files whose
            pickles hold more than tensors and plain containers. Default: False.
        option (str | None): How the user gave the file (``'--model_path'``, ``'path.pretrain_network_g'``), for
            messages.

    Returns:
        object: What the file holds (usually a dict).

    Raises:
        FileNotFoundError: No such file.
        CheckpointReadError (ValueError): Truncated / not a checkpoint, or a pickle the safe loader refuses.
    """
    where = _where(path, option)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {where}.')
    if str(path).lower().endswith('.safetensors'):
        try:
            from safetensors.torch import load_file as load_safetensors
        except ImportError as err:
            raise ImportError(f'Reading {where} needs the safetensors package: pip install safetensors') from err
        try:
            return load_safetensors(path, device='cpu')
        except Exception as err:  # safetensors raises its own SafetensorError for bad headers / sizes
            raise CheckpointReadError(f'{where}: truncated or not a checkpoint (safetensors: {_first_line(err)}).') \
                from None
    if os.path.getsize(path) == 0:
        raise CheckpointReadError(f'{where}: truncated or not a checkpoint (the file is empty).')
    try:
        return torch.load(path, map_location='cpu', weights_only=not unsafe_load)
    except Exception as err:  # noqa: B902  (torch raises OSError, EOFError, RuntimeError, UnpicklingError...)
        if not unsafe_load and _is_unsafe_global_error(err):
            raise CheckpointReadError(
                f'{where} holds pickled objects other than tensors and plain containers, so the safe loader '
                f'(torch.load weights_only=True) refused it: {_disallowed_global(err)}. If you trust the file, load '
                'it with --unsafe_load (Python: unsafe_load=True); it can run code stored in the file.') from None
        raise CheckpointReadError(f'{where}: truncated or not a checkpoint ({type(err).__name__}: '
                                  f'{_first_line(err)}). Re-download or re-save the file.') from None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _is_unsafe_global_error(err):
    """True when torch's weights-only unpickler read a valid pickle but met a global outside its allow-list."""
    text = str(err)
    return type(err).__name__ == 'UnpicklingError' and ('Unsupported global' in text or 'safe_globals' in text
                                                        or 'GLOBAL' in text)


def _disallowed_global(err):
    import re
    match = re.search(r'Unsupported global: (GLOBAL [^\s]+)', str(err))
    return match.group(1) if match else 'a global outside the allow-list'


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _preview(items, limit=12):
    items = list(items)
    text = ', '.join(str(i) for i in items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def _meta_of(obj, key):
    """Plain values beside the weights, srplugins' metadata, and the options of bundled networks."""
    meta = {k: v for k, v in obj.items() if k != key and not isinstance(v, dict)}
    meta.update({k: v for k, v in obj.items() if k in META_KEYS})
    # DSN bundles: params_g / params_d next to network_g / network_d (constructor options)
    if key.startswith('params_') and isinstance(obj.get('network_' + key[len('params_'):]), dict):
        meta['network_opt'] = obj['network_' + key[len('params_'):]]
    return meta


def unwrap(obj, param_key=None, purpose=None):
    """Find the state dict inside a checkpoint object and strip ``module.``-like prefixes.

    Args:
        obj (dict): Loaded checkpoint.
        param_key (str | None): Take this key (e.g. ``'params'`` or DSN's ``'models_d_state_dict'``). ``None`` tries
            :data:`DISCRIMINATOR_KEYS` first when ``purpose == 'discriminator'``, then :data:`WRAPPER_KEYS` in order
            (``params_ema`` first), then a lone dict value.
        purpose (str | None): ``'discriminator'`` selects the discriminator of files holding both networks.

    Returns:
        tuple[OrderedDict, dict]: The state dict and the metadata found beside it (``network_opt``, ``scale``, DSN's
        ``fs_type`` / ``fs_kernel_size`` / ``D_type`` ...).
    """
    if not isinstance(obj, dict):
        raise ValueError(f'Expected the checkpoint to hold a dict of tensors, got {type(obj).__name__}.')
    meta = {}
    if param_key is not None:
        if param_key not in obj:
            raise ValueError(f'param_key {param_key!r} not in checkpoint; top-level keys: {_preview(list(obj))}.')
        meta = _meta_of(obj, param_key)
        obj = obj[param_key]
    else:
        keys = (DISCRIMINATOR_KEYS + WRAPPER_KEYS) if purpose == 'discriminator' else WRAPPER_KEYS
        for _ in range(3):  # nested wrappers such as {'state_dict': {'params': ...}}
            if _is_tensor_dict(obj):
                break
            key = next((k for k in keys if isinstance(obj.get(k), dict)), None)
            if key is None:
                dict_values = [k for k, v in obj.items() if isinstance(v, dict) and k not in META_KEYS]
                if len(dict_values) != 1:
                    break
                key = dict_values[0]
            meta.update(_meta_of(obj, key))
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f'The weights entry holds {type(obj).__name__}, not a dict of tensors.')
    state = OrderedDict((k, v) for k, v in obj.items() if torch.is_tensor(v))
    if not state:
        raise ValueError(f'No tensors found in the checkpoint; top-level keys: {_preview(list(obj))}. '
                         'Pass param_key (--param_key) naming the entry that holds the weights.')
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state, meta
