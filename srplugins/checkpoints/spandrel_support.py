"""Fallback to spandrel for checkpoints none of srplugins' families recognise (optional extra ``srplugins[spandrel]``).

spandrel (chaiNNer-org/spandrel, PyPI ``spandrel``) knows about forty architectures srplugins does not (SwinIR, HAT,
DAT, OmniSR, ...). It is consulted only after every srplugins family declined a state dict, so our families win where
both recognise a file (ours refuse to guess where spandrel guesses, e.g. old-ESRGAN x3 loaded as x2). spandrel's
models are image-to-image ``nn.Module`` s taking and returning ``(B, C, H, W)`` in [0, 1]; its ``size_requirements``
give the input size multiple.
"""
from collections import OrderedDict

from srplugins.checkpoints.family import CheckpointInfo

__all__ = ['available', 'detect', 'build', 'missing_hint']


def available():
    try:
        import spandrel  # noqa: F401
    except ImportError:
        return False
    return True


def missing_hint():
    if available():
        return 'spandrel (installed) does not recognise it either.'
    return ('Installing the optional spandrel extra may help: pip install "srplugins[spandrel]" (spandrel knows '
            'about forty more architectures: SwinIR, HAT, DAT, ...).')


def _descriptor(state):
    import spandrel
    try:
        return spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        return None
    except Exception as err:  # noqa: B902  (spandrel's guess of the hyper-parameters did not fit the weights)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'spandrel recognised the key layout but could not load the weights: {first}') from None


def detect(state, path=None):
    """:class:`CheckpointInfo` with ``arch_type='spandrel'`` when spandrel recognises ``state``, else None."""
    if not available():
        return None
    descriptor = _descriptor(state)
    if descriptor is None:
        return None
    size = descriptor.size_requirements
    multiple = max(int(getattr(size, 'multiple_of', 1) or 1), 1)
    purpose = 'sr' if descriptor.purpose in ('SR', 'Restoration') else str(descriptor.purpose).lower()
    return CheckpointInfo(
        family=f'spandrel:{descriptor.architecture.id}',
        description=f'{descriptor.architecture.name} (recognised by spandrel)',
        arch_type='spandrel',
        arch_opt=dict(
            architecture=descriptor.architecture.id, in_nc=descriptor.input_channels,
            out_nc=descriptor.output_channels),
        state_dict=OrderedDict(state),
        purpose=purpose,
        scale=float(descriptor.scale),
        size_multiple=multiple,
        notes=[f'loaded by spandrel (tags: {", ".join(descriptor.tags) or "none"})'],
        source=path)


def build(info):
    """The spandrel model of ``info`` (eval mode, CPU)."""
    descriptor = _descriptor(info.state_dict)
    if descriptor is None:
        raise ValueError(f'spandrel no longer recognises {info.source or "the state dict"}.')
    return descriptor.model.eval()
