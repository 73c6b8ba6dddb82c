"""Training-health checks: non-finite losses, gradients and weights, and collapsed outputs.

A run whose learning rate blows up keeps training on NaN and, without a check, saves NaN networks and reports a
meaningless validation figure. These helpers are used by the training models (see
:class:`srplugins.models.training_options.TrainingOptionsMixin`): a non-finite step raises
:class:`TrainingHealthError` (``train.nonfinite: stop``), saving refuses non-finite tensors, and validation reports
outputs that collapsed to a constant or black image.
"""
import math
import torch

COLLAPSE_STD = 1e-3  # an output with a standard deviation below this (values in [0, 1]) counts as constant
BLACK_MAX = 1. / 255.  # an output whose brightest value is at most one 8-bit step counts as all black


class TrainingHealthError(RuntimeError):
    """Training stopped because a loss, a gradient or a network became non-finite (NaN or inf).

    srplugins' entry points turn it into exit status 3 with the message; ``--auto_resume`` restarts from the last
    good training state.
    """


def format_value(value):
    """``inf`` / ``-inf`` / ``nan`` for non-finite floats, else a short float."""
    value = float(value)
    return str(value) if not math.isfinite(value) else f'{value:.4g}'


def nonfinite_terms(log_dict):
    """Names and values of the non-finite entries of a loss dictionary.

    Args:
        log_dict (dict): term name -> float or 0-d tensor (e.g. a model's ``log_dict``).

    Returns:
        list[str]: ``'name=value'`` for each non-finite term, in the dictionary's order.
    """
    bad = []
    for name, value in (log_dict or {}).items():
        value = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else value
        try:
            finite = math.isfinite(value)
        except TypeError:
            continue
        if not finite:
            bad.append(f'{name}={format_value(value)}')
    return bad


def nonfinite_tensors(state_dict):
    """Keys of the floating-point tensors of ``state_dict`` holding NaN or inf.

    Args:
        state_dict (dict): name -> tensor.

    Returns:
        list[str]: the offending keys, in order.
    """
    return [
        key for key, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def grads_finite(params):
    """Whether every existing gradient of ``params`` is finite (one reduction, one host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads) if hasattr(torch, '_foreach_norm') else [g.norm() for g in grads]
    return bool(torch.isfinite(torch.stack([n.float().to(grads[0].device) for n in norms]).sum()))


def collapse_reason(img):
    """Why an output image counts as collapsed, or None.

    Args:
        img (Tensor | numpy.ndarray): one image with values in [0, 1] (any shape, e.g. (C, H, W)).

    Returns:
        str | None: ``'all black (max ...)'``, ``'constant (std ...)'``, or None for a normal image.
    """
    x = torch.as_tensor(img).detach().float()
    if x.numel() == 0:
        return None
    if not bool(torch.isfinite(x).all()):
        return 'non-finite values'
    peak = float(x.max())
    if peak <= BLACK_MAX:
        return f'all black (max {peak:.2g})'
    std = float(x.std()) if x.numel() > 1 else 0.0
    if std < COLLAPSE_STD:
        return f'constant (std {std:.2g})'
    return None
