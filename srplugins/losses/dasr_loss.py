"""DASR losses: LPIPS perceptual loss, low-frequency L1 and domain-distance weighted L1.

Paper: Wei et al., CVPR 2021 (arXiv 2004.01178). Sec. 3.1: the down-sampling network is trained with a content
(colour) loss on low frequencies, a perceptual loss and an adversarial loss on high frequencies; Sec. 3.2: the SR
network is trained with domain-distance weighted supervision on the generated pairs.
Official code: ShuhangGu/DASR ``codes/DSN/loss.py`` (``GeneratorLoss``: ``color_loss``, LPIPS ``PerceptualLoss``)
and ``codes/SRN/models/DASR_model.py`` (``multiweights`` pixel loss, ``sup_LL`` loss).

The DSN adversarial terms use :class:`SigmoidLogGANLoss`, the official ``-log(D + 1e-8)`` /
``-log(1 - D + 1e-8)`` on ``D = sigmoid(logits)`` (``codes/DSN/loss.py``); the SR stage's use
``basicsr.losses.GANLoss`` with ``gan_type: vanilla`` (``BCEWithLogitsLoss``), as the official SRN code does.
Official DSN weights: colour ``w_col = 1``, perceptual ``w_per = 0.01``, adversarial ``w_tex = 0.005``; they are the
defaults of ``DASRDownsamplerModel``.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from srplugins.ops.frequency import FILTER_TYPES, lowpass

_REDUCTIONS = ('mean', 'sum')


def gray_to_rgb(x):
    """``(B, 1, H, W)`` -> ``(B, 3, H, W)`` by replication (for RGB backbones); other channel counts unchanged."""
    return x.expand(-1, 3, -1, -1) if x.dim() == 4 and x.size(1) == 1 else x


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f'reduction must be one of {_REDUCTIONS}, got {reduction!r}.')


@LOSS_REGISTRY.register()
class LPIPSLoss(nn.Module):
    """LPIPS perceptual distance as a training loss (Zhang et al., CVPR 2018; used by DASR Sec. 3.1 / 3.2).

    Follows the official ``PerceptualLoss`` (PerceptualSimilarity ``net-lin``, version 0.1, ``normalize=True``):
    inputs in [0, 1] are mapped to [-1, 1], the per-image distances are spatially averaged and then averaged over
    the batch. The network comes from ``srplugins.utils.pretrained.build_lpips`` (frozen, eval mode, backbone weights
    looked up offline; see docs/DASR.md for where to put them).

    Args:
        loss_weight (float): Weight. Default: 1.0 (the DSN stage uses 0.01, the SR stage 1).
        net (str): LPIPS backbone, ``alex`` (official), ``vgg`` or ``squeeze``.
        version (str): LPIPS linear-layer version. Default: ``'0.1'``.
        reduction (str): ``mean`` or ``sum`` over the batch.

    Shapes:
        ``pred``, ``target``: ``(B, 3, H, W)`` in [0, 1], or ``(B, 1, H, W)`` grey (replicated to three channels, the
        LPIPS backbones being RGB networks). Optional ``weight``: ``(B, 1, H, W)`` or ``(B,)``; each image's distance
        is multiplied by the mean of its weight (used for domain-distance weighting). Returns a scalar.
    """

    def __init__(self, loss_weight=1.0, net='alex', version='0.1', reduction='mean'):
        super().__init__()
        _check_reduction(reduction)
        from srplugins.utils.pretrained import build_lpips
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.lpips = build_lpips(net=net, version=version)
        for param in self.lpips.parameters():
            param.requires_grad = False
        self.lpips.eval()

    def train(self, mode=True):
        # the LPIPS network stays in eval mode (no dropout) whatever the surrounding model does
        super().train(mode)
        self.lpips.eval()
        return self

    def forward(self, pred, target, weight=None):
        pred, target = gray_to_rgb(pred), gray_to_rgb(target)
        dist = self.lpips(pred * 2 - 1, target * 2 - 1).flatten()  # (B,)
        if weight is not None:
            weight = weight.reshape(weight.size(0), -1).mean(dim=1) if weight.dim() > 1 else weight
            dist = dist * weight.to(dist)
        loss = dist.mean() if self.reduction == 'mean' else dist.sum()
        return self.loss_weight * loss


@LOSS_REGISTRY.register()
class LowFrequencyL1Loss(nn.Module):
    """L1 distance between low-pass filtered images (DASR content / colour loss ``L_con``, FSSR ``color_loss``).

    Official DSN behaviour: the filter family is the discriminator's (``gau`` Gaussian k with sigma k/6, ``avg_pool``
    k x k box, ``wavelet`` 0.5 * Haar LL), applied **without padding** (valid filtering) for gau / avg_pool. The SR
    stage's ``sup_LL`` term uses same-size filtering (``padding: true``) and, for wavelet, the same 0.5 * LL.

    Args:
        loss_weight (float): Weight (official ``w_col`` 1; SR stage ``pixel_LL_weight`` 1).
        filter_type (str): ``gau``, ``avg_pool`` or ``wavelet``. Default: ``gau``.
        kernel_size (int): Filter size for gau / avg_pool. Default: 5.
        padding (bool): Same-size (True) or valid (False, official DSN) filtering.
        count_include_pad (bool): Box filter border handling when padding.
        reduction (str): ``mean`` or ``sum``.

    Shapes:
        ``pred``, ``target``: ``(B, C, H, W)``. Optional ``weight`` ``(B, 1, H, W)``: a domain-distance map, resized
        (area interpolation) to the low-pass size; the result is then ``mean(W * |diff|)`` (official weighting
        semantics, see :class:`DomainDistanceWeightedL1Loss`). Returns a scalar.
    """

    def __init__(self,
                 loss_weight=1.0,
                 filter_type='gau',
                 kernel_size=5,
                 padding=False,
                 count_include_pad=False,
                 reduction='mean'):
        super().__init__()
        if filter_type not in FILTER_TYPES:
            raise ValueError(f'LowFrequencyL1Loss filter_type must be one of {FILTER_TYPES}, got {filter_type!r}.')
        _check_reduction(reduction)
        self.loss_weight = loss_weight
        self.filter_type = filter_type
        self.kernel_size = kernel_size
        self.padding = padding
        self.count_include_pad = count_include_pad
        self.reduction = reduction

    def low(self, x):
        """Low-pass ``x`` with this loss's filter."""
        return lowpass(x, self.filter_type, self.kernel_size, self.padding, self.count_include_pad)

    def forward(self, pred, target, weight=None):
        diff = (self.low(pred) - self.low(target)).abs()
        if weight is not None:
            if weight.shape[-2:] != diff.shape[-2:]:
                weight = F.interpolate(weight, size=diff.shape[-2:], mode='area')
            diff = weight * diff
        return self.loss_weight * (diff.mean() if self.reduction == 'mean' else diff.sum())


@LOSS_REGISTRY.register()
class DomainDistanceWeightedL1Loss(nn.Module):
    """Pixel L1 weighted element-wise by a domain-distance map (DASR Sec. 3.2, official ``multiweights``).

    Args:
        loss_weight (float): Weight (official ``pixel_weight`` 1).
        normalization (str): How the weighted sum is normalised.

            * ``'mean'`` (official): ``mean(W * |pred - target|)`` over all ``B * C * H * W`` elements. The
              effective weight is about ``mean(W)`` (roughly 0.5 for typical maps).
            * ``'weight_sum'``: ``sum(W * |pred - target|) / sum(W)`` with ``W`` broadcast over channels, i.e. the
              semantics of ``basicsr.losses.L1Loss(weight=W)``; the effective weight is 1.

    Shapes:
        ``pred``, ``target``: ``(B, C, H, W)``. ``weight``: ``(B, 1, H, W)`` or ``(B, C, H, W)``; ``None`` gives a
        plain L1. Returns a scalar.
    """

    def __init__(self, loss_weight=1.0, normalization='mean'):
        super().__init__()
        if normalization not in ('mean', 'weight_sum'):
            raise ValueError(f"normalization must be 'mean' or 'weight_sum', got {normalization!r}.")
        self.loss_weight = loss_weight
        self.normalization = normalization

    def forward(self, pred, target, weight=None):
        diff = (pred - target).abs()
        if weight is None:
            return self.loss_weight * diff.mean()
        if weight.dim() != 4 or weight.shape[-2:] != diff.shape[-2:] or weight.size(1) not in (1, diff.size(1)):
            raise ValueError(f'weight must be shaped (B, 1 or C, H, W) like {tuple(diff.shape)}, '
                             f'got {tuple(weight.shape)}.')
        weighted = weight * diff
        if self.normalization == 'mean':
            return self.loss_weight * weighted.mean()
        return self.loss_weight * weighted.sum() / weight.expand_as(diff).sum().clamp_min(torch.finfo(diff.dtype).eps)


@LOSS_REGISTRY.register()
class SigmoidLogGANLoss(nn.Module):
    """Vanilla GAN loss written as the official DSN code writes it: ``-log(sigmoid(z) + eps)`` for a real target and
    ``-log(1 - sigmoid(z) + eps)`` for a fake one, averaged (``codes/DSN/loss.py``: ``generator_loss`` and
    ``discriminator_loss``, ``eps = 1e-8``, on the discriminator's sigmoid output).

    Why not ``GANLoss`` vanilla (``BCEWithLogitsLoss``, the same formula without ``eps``): the epsilon caps each term at
    ``-log(eps)`` (18.4) and shrinks its gradient where the discriminator is confident (``|z| >~ 18``), while
    BCE-with-logits keeps it; elsewhere the two differ by about ``eps`` relative. ``scripts/parity.py dasr_dsn --iters
    300 --variant gan_bce_with_logits`` measured the effect on training: with ``GANLoss`` the two trainings agree to
    6e-8 for about 95 iterations, then part within a few iterations (parameters 1e-2 apart after 300; docs/DASR.md).
    In float32 ``1 - sigmoid(z)`` rounds to 0 for ``z > 17``, as in the official code; half-precision logits (AMP) are
    taken to float32 first, since float16 cannot hold ``1e-8`` and ``-log(0)`` would be infinite.

    Args:
        eps (float): Added inside the logarithms (official 1e-8).
        loss_weight (float): Weight of the generator term (``is_disc=False``); the discriminator terms are not
            weighted, as in ``basicsr.losses.GANLoss``.

    Shapes:
        ``input``: discriminator logits, any shape. Returns a scalar.
    """

    def __init__(self, eps=1e-8, loss_weight=1.0):
        super().__init__()
        if not eps >= 0:
            raise ValueError(f'gan_opt.eps must be >= 0, got {eps!r}')
        self.eps = float(eps)
        self.loss_weight = loss_weight

    def forward(self, input, target_is_real, is_disc=False):
        if input.dtype in (torch.float16, torch.bfloat16):
            input = input.float()
        prob = torch.sigmoid(input)
        if target_is_real:
            loss = -torch.log(prob + self.eps).mean()
        else:
            loss = -torch.log(1 - prob + self.eps).mean()
        return loss if is_disc else loss * self.loss_weight
