"""What an architecture declares about its checkpoints, and the registries that collect the declarations.

Two kinds of declaration, both made next to the network they describe (in its ``*_arch.py``), as spandrel's
``ArchSupport`` objects are (chaiNNer-org/spandrel, ``architectures/<Name>/__init__.py``):

* :func:`register_arch` -- per registered architecture type (``ARCH_REGISTRY`` name): its purpose (``'sr'``,
  ``'downsampler'``, ``'discriminator'``), its output / input size ratio and the input size multiple it needs, each
  computed from the constructor options. Used for every way a network is built: a detected official file, a
  training checkpoint recording its ``network_opt``, or an option file's ``network_g``.
* :func:`register_family` -- per key layout of published weights: the characteristic keys (all present), keys that
  rule the family out, and a ``build(state, hints)`` function reading the hyper-parameters from tensor shapes and
  renaming keys to the registered architecture's layout. Values that the weights do not determine are never guessed:
  ``build`` takes them from ``hints`` (argument, metadata stored in the file, ``_x{N}`` in the file name) or raises a
  ``ValueError`` naming what to pass.

This module imports nothing of srplugins except :mod:`srplugins.compat` lazily, so ``*_arch.py`` modules may import it.
"""
import inspect
import numpy as np
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = [
    'ArchSpec', 'Family', 'Built', 'CheckpointInfo', 'register_arch', 'register_family', 'arch_spec', 'families',
    'size_multiple_of', 'scale_of', 'purpose_of', 'indices', 'count_blocks', 'rename_keys', 'scale_x2_or_x3',
    'scale_from_filename', 'PURPOSES'
]

PURPOSES = ('sr', 'downsampler', 'discriminator')


@dataclass(frozen=True)
class ArchSpec:
    """Inference facts of a registered architecture type.

    Attributes:
        arch_type (str): ``ARCH_REGISTRY`` name.
        purpose (str): ``'sr'`` (image in, larger or same-size image out), ``'downsampler'`` or ``'discriminator'``.
        scale (callable | float): ``arch_opt -> output / input size`` (0.25 for a x4 down-sampler), or a constant.
        size_multiple (callable | int): ``arch_opt -> int``: input sides must be multiples of it, or a constant.
    """
    arch_type: str
    purpose: str = 'sr'
    scale: object = None
    size_multiple: object = 1


@dataclass(frozen=True)
class Family:
    """A key layout of published checkpoints.

    Attributes:
        name (str): Short identifier, e.g. ``'a2n'``.
        description (str): Human-readable name (printed by ``srplugins-convert``).
        required (tuple[str]): Characteristic keys, all present in a matching state dict.
        build (callable): ``build(state, hints) -> Built``.
        forbidden (tuple[str]): Keys whose presence rules the family out.
    """
    name: str
    description: str
    required: tuple
    build: object
    forbidden: tuple = ()

    def matches(self, state):
        return all(k in state for k in self.required) and not any(k in state for k in self.forbidden)


@dataclass
class Built:
    """What a family's ``build`` returns: the registered architecture, its options and the renamed weights."""
    arch_type: str
    arch_opt: dict
    state_dict: OrderedDict
    notes: list = field(default_factory=list)


@dataclass
class CheckpointInfo:
    """What detection found.

    Attributes:
        family (str): Key family, e.g. ``'kair_rrdbnet'`` (``'network_opt'`` for a file recording its options).
        description (str): Human-readable family name.
        arch_type (str): Registered architecture name (``ARCH_REGISTRY``) that loads ``state_dict`` strictly.
        arch_opt (dict): Constructor keyword arguments for ``arch_type``.
        state_dict (OrderedDict): Weights in ``arch_type``'s key layout.
        purpose (str): ``'sr'``, ``'downsampler'`` or ``'discriminator'``.
        scale (float): Output size / input size for image-to-image networks (0.25 for a x4 down-sampler).
        size_multiple (int): Input height and width must be multiples of this.
        notes (list[str]): How ambiguous hyper-parameters were decided.
        source (str | None): The file it came from.
    """
    family: str
    description: str
    arch_type: str
    arch_opt: dict
    state_dict: OrderedDict
    purpose: str = 'sr'
    scale: float = 1.
    size_multiple: int = 1
    notes: list = field(default_factory=list)
    source: str = None

    @property
    def network_opt(self):
        """``{'type': arch_type, **arch_opt}``: the ``network_g`` / ``network_d`` block of an option file."""
        return dict(type=self.arch_type, **self.arch_opt)

    @property
    def option_block(self):
        """``'network_d'`` for a discriminator, else ``'network_g'``."""
        return 'network_d' if self.purpose == 'discriminator' else 'network_g'

    def summary(self):
        opts = ', '.join(f'{k}={v!r}' for k, v in self.arch_opt.items())
        lines = [
            f'family: {self.family} ({self.description})', f'arch: {self.arch_type}({opts})',
            f'purpose: {self.purpose}, scale: {self.scale:g}, size multiple: {self.size_multiple}',
            f'tensors: {len(self.state_dict)}, parameters: {num_params(self.state_dict):,}'
        ]
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)


_ARCHS = OrderedDict()
_FAMILIES = OrderedDict()


def register_arch(arch_type, purpose='sr', scale=None, size_multiple=1):
    """Declare the purpose, scale and size multiple of a registered architecture type (see :class:`ArchSpec`).

    ``scale=None`` reads ``arch_opt['upscale']``, else ``arch_opt['scale']``, else 1 (for ``'sr'``); discriminators
    have scale 1. Re-registering the same name replaces the declaration (module reloads).
    """
    if purpose not in PURPOSES:
        raise ValueError(f'purpose must be one of {PURPOSES}, got {purpose!r}.')
    _ARCHS[arch_type] = ArchSpec(arch_type, purpose, scale, size_multiple)
    return _ARCHS[arch_type]


def register_family(name, description, required, build, forbidden=()):
    """Declare a key family of published weights (see :class:`Family`). Returns the :class:`Family`."""
    _FAMILIES[name] = Family(name, description, tuple(required), build, tuple(forbidden))
    return _FAMILIES[name]


def families():
    """Registered families, in registration order."""
    return tuple(_FAMILIES.values())


def arch_spec(arch_type):
    """The :class:`ArchSpec` of ``arch_type``; an undeclared type is an ``'sr'`` network with the default rules."""
    return _ARCHS.get(arch_type) or ArchSpec(arch_type)


def _call(value, arch_opt):
    return value(arch_opt) if callable(value) else value


def purpose_of(arch_type):
    return arch_spec(arch_type).purpose


def scale_of(arch_type, arch_opt):
    """Output / input size ratio of ``arch_type`` built with ``arch_opt`` (1 for discriminators)."""
    spec = arch_spec(arch_type)
    if spec.scale is not None:
        return float(_call(spec.scale, arch_opt))
    if spec.purpose == 'discriminator':
        return 1.
    value = arch_opt.get('upscale', arch_opt.get('scale', 1))
    return float(value if value is not None else 1)


def size_multiple_of(arch_type, arch_opt, net=None):
    """Input size multiple of ``arch_type`` with ``arch_opt`` (declared), times the attention window (if any).

    Window attention (basicsr ``SwinIR``, HAT-like networks) needs feature maps that are multiples of the window
    size; the window is read from ``arch_opt['window_size']``, else a ``window_size`` attribute of ``net``, else the
    default of the registered constructor's ``window_size`` argument.
    """
    multiple = int(_call(arch_spec(arch_type).size_multiple, arch_opt) or 1)
    window = _window_size(arch_type, arch_opt, net)
    return multiple * window if window else multiple


def _window_size(arch_type, arch_opt, net=None):
    window = arch_opt.get('window_size')
    if window is None and net is not None:
        window = getattr(net, 'window_size', None)
    if window is None:
        window = _constructor_default(arch_type, 'window_size')
    if isinstance(window, (list, tuple)) and window:
        window = int(np.lcm.reduce([int(w) for w in window]))
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool) and window > 1:
        return int(window)
    return None


def _constructor_default(arch_type, name):
    try:
        from basicsr.utils.registry import ARCH_REGISTRY
        cls = ARCH_REGISTRY.get(arch_type)
        param = inspect.signature(cls.__init__).parameters.get(name)
    except (ImportError, KeyError, TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


# --------------------------------------------------------------------------------------------------------------- #
#  Helpers for the families' build functions
# --------------------------------------------------------------------------------------------------------------- #
def num_params(state):
    buffers = ('running_mean', 'running_var', 'num_batches_tracked', 'weight_u', 'weight_v')
    return sum(v.numel() for k, v in state.items() if not k.endswith(buffers))


def indices(state, prefix):
    """Sorted distinct integers ``i`` of keys ``<prefix>{i}.``."""
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.')
    return sorted({int(m.group(1)) for m in (pattern.match(k) for k in state) if m})


def count_blocks(state, prefix):
    """Number of blocks ``<prefix>{0..n-1}.``; a gap in the indices is an error."""
    idx = indices(state, prefix)
    if idx != list(range(len(idx))):
        raise ValueError(f'Block indices under {prefix!r} are not contiguous from 0: {idx}.')
    return len(idx)


def rename_keys(state, rules):
    """Apply ``(regex, replacement)`` rules (first match wins) to every key."""
    out = OrderedDict()
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new] = value
    return out


def scale_from_filename(path):
    """Scale written in a file name as ``_x{N}`` / ``-x{N}`` / ``SRx{N}`` (e.g. ``aan_x3.pt``), else ``None``.

    Parsed by :func:`srplugins.compat.scale_from_filename` (the one parser); a name with two different scales gives
    ``None``: nothing is guessed from it.
    """
    from srplugins.compat import scale_from_filename as parse_scale
    return parse_scale(path, strict=False)


def scale_x2_or_x3(what, given, path):
    """Scale of a layout whose x2 and x3 weights have identical keys and shapes (A2N, old ESRGAN with one upsampling
    conv): from the argument or from a ``_x{N}`` file name, never from the weights; a disagreement between the two is
    an error. Returns ``(scale, note)``."""
    from_name = scale_from_filename(path)
    name = os.path.basename(str(path))
    if given is not None and given not in (2, 3):
        raise ValueError(f'{what} is x2 or x3, but scale={given} was given.')
    if given is None and from_name not in (None, 2, 3):
        raise ValueError(f'The file name {name!r} says x{from_name}, but {what} is x2 or x3; pass --scale 2 or '
                         '--scale 3.')
    if given is not None and from_name is not None and given != from_name:
        raise ValueError(f'scale={given} was given but the file name {name!r} says x{from_name}. x2 and x3 weights of '
                         f'{what} have identical shapes, so a mismatch would load silently; fix the argument or '
                         'rename the file.')
    scale = given if given is not None else from_name
    if scale not in (2, 3):
        raise ValueError(f'x2 and x3 weights of {what} have identical keys and shapes, so the scale cannot be read '
                         'from the weights. Pass it explicitly (--scale 2 or --scale 3) or name the file '
                         '"..._x2.pth" / "..._x3.pth".')
    return scale, f'scale x{scale} taken from ' + ('the argument' if given is not None else 'the file name')
