"""DASR networks: the down-sampling generator (DSN) and the frequency-separation discriminators.

Paper: Wei et al., "Unsupervised Real-world Image Super Resolution via Domain-distance Aware Training", CVPR 2021
(arXiv 2004.01178), Sec. 3.1 (down-sampling network with frequency separation) and Sec. 3.2 (domain-gap aware SR
training). Official code: ShuhangGu/DASR, ``codes/DSN/model.py`` (``De_resnet``, ``Generator``, ``Discriminator``,
``DiscriminatorBasic``, ``NLayerDiscriminator``) and ``codes/SRN/models/modules/architecture.py``
(``NLayerDiscriminator`` used as the SR-stage target-domain discriminator).

State-dict keys are exactly the official ones, so official checkpoints load with ``strict=True``:

* ``DASRDownsampler``: ``block_input.{0,1}``, ``res_blocks.{n}.{conv1,prelu,conv2}``, ``down_sample.{0..3}``,
  ``block_output``.
* ``DASRFSDiscriminator``: ``filter.filter_low.filter.gaussian_filter.weight`` (gau), ``DWT2.{h0,h1}_{col,row}``
  (wavelet), ``net.net.{0,2,3,5,6,8}`` (FSD) or ``net.model.*`` (nld_s1 / nld_s2).
* ``DASRPatchDiscriminator``: ``model.{0,2,5,8}``.

Deliberate differences from the official code: discriminators return logits (the official DSN discriminator applies
a sigmoid inside ``forward``; here the sigmoid is taken only where probabilities are needed, i.e. the
domain-distance maps, and the GAN losses use BCE-with-logits); the frozen Gaussian kernel is a buffer instead of a
frozen parameter (same key); the channel count is configurable (the official filters assume RGB); the relativistic
and WGAN options of the DSN discriminator are not implemented.
"""
import math
import torch
from basicsr.archs.arch_util import default_init_weights
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from srplugins.ops.frequency import box_lowpass, gaussian_kernel2d, gaussian_lowpass, wavelet_highpass

DSN_FILTERS = ('gau', 'avg_pool', 'wavelet', 'rgb')
DSN_NORMS = ('batch', 'instance')
DSN_ARCHS = ('fsd', 'nld_s1', 'nld_s2')


def _choice(value, choices, option):
    key = str(value).lower()
    if key not in choices:
        raise ValueError(f'{option} must be one of {choices}, got {value!r}.')
    return key


class _ResidualBlock(nn.Module):
    """conv3x3 -> PReLU -> conv3x3 plus identity; no BN, no scaling (official ``ResidualBlock``)."""

    def __init__(self, num_feat):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(self.prelu(self.conv1(x)))


@ARCH_REGISTRY.register()
class DASRDownsampler(nn.Module):
    """DASR down-sampling generator ``G_d`` (official ``De_resnet``; paper Sec. 3.1).

    Maps a clean HR image to the real-LR domain: ``conv3x3 + PReLU``, ``num_block`` residual blocks (no long skip),
    ``log2(scale)`` stride-2 ``conv3x3 + PReLU`` layers, ``conv3x3`` and a sigmoid. ``scale=1`` gives the official
    ``Generator`` (``--generator DSGAN``), which maps the bicubic LR to the real-LR domain.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks (official ``--num_res_blocks`` 8).
        scale (int): Down-sampling factor, 1, 2 or 4. Default: 4.

    Shapes:
        ``(B, C, H, W)`` in [0, 1] -> ``(B, C, ceil(H / scale'), ...)`` in (0, 1), where each stride-2 conv maps
        ``N`` to ``ceil(N / 2)``.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=8, scale=4):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f'DASRDownsampler scale must be 1, 2 or 4, got {scale!r}.')
        self.scale = scale
        self.block_input = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU())
        self.res_blocks = nn.ModuleList([_ResidualBlock(num_feat) for _ in range(num_block)])
        if scale > 1:
            layers = []
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, num_feat, 3, 2, 1), nn.PReLU()]
            self.down_sample = nn.Sequential(*layers)
        else:
            self.down_sample = None
        self.block_output = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        feat = self.block_input(x)
        for block in self.res_blocks:
            feat = block(feat)
        if self.down_sample is not None:
            feat = self.down_sample(feat)
        return torch.sigmoid(self.block_output(feat))


class _KernelHolder(nn.Module):
    """Holds the frozen Gaussian kernel under the official key name ``weight`` (persistent buffer)."""

    def __init__(self, kernel):
        super().__init__()
        self.register_buffer('weight', kernel)


class _GaussianBlur(nn.Module):
    """Same-size depthwise Gaussian blur; its kernel is stored as ``gaussian_filter.weight`` ``(C, 1, k, k)``."""

    def __init__(self, channels, kernel_size):
        super().__init__()
        kernel = gaussian_kernel2d(kernel_size)[None, None].repeat(channels, 1, 1, 1)
        self.gaussian_filter = _KernelHolder(kernel)

    def forward(self, x):
        return gaussian_lowpass(x, padding=True, kernel=self.gaussian_filter.weight)


class _LowPass(nn.Module):
    """Official ``FilterLow`` (padded): Gaussian (module ``filter``) or box filter without padded zeros."""

    def __init__(self, channels, kernel_size, gaussian):
        super().__init__()
        self.kernel_size = kernel_size
        self.filter = _GaussianBlur(channels, kernel_size) if gaussian else None

    def forward(self, x):
        if self.filter is not None:
            return self.filter(x)
        return box_lowpass(x, self.kernel_size, padding=True, count_include_pad=False)


class _HighPass(nn.Module):
    """Official ``FilterHigh``: ``0.5 + 0.5 * (x - low(x))``."""

    def __init__(self, channels, kernel_size, gaussian):
        super().__init__()
        self.filter_low = _LowPass(channels, kernel_size, gaussian)

    def forward(self, x):
        return (x - self.filter_low(x)) * 0.5 + 0.5


class _HaarFilterBank(nn.Module):
    """Stores the Haar analysis filters as ``pytorch_wavelets.DWTForward`` does (keys ``h0_col`` ... ``h1_row``).

    The transform itself is computed by :func:`srplugins.ops.frequency.haar_dwt`; the buffers only exist so that
    official wavelet-discriminator checkpoints load strictly.
    """

    def __init__(self):
        super().__init__()
        s = 1.0 / math.sqrt(2.0)
        low, high = torch.tensor([s, s]), torch.tensor([s, -s])
        self.register_buffer('h0_col', low.view(1, 1, 2, 1).clone())
        self.register_buffer('h1_col', high.view(1, 1, 2, 1).clone())
        self.register_buffer('h0_row', low.view(1, 1, 1, 2).clone())
        self.register_buffer('h1_row', high.view(1, 1, 1, 2).clone())


def _norm_layer(norm, num_feat):
    return nn.BatchNorm2d(num_feat) if norm == 'batch' else nn.InstanceNorm2d(num_feat)


class _FSDBody(nn.Module):
    """FSSR ``DiscriminatorBasic``: three 5x5 convs (``f, 2f, 4f``; official ``f = 64``) with LeakyReLU(0.2), norm
    after the 2nd and 3rd, and a 1x1 conv to one logit per pixel. Keys ``net.{0,2,3,5,6,8}``. Output keeps the input
    size."""

    def __init__(self, num_in_ch, norm, num_feat=64):
        super().__init__()
        f = num_feat
        self.net = nn.Sequential(
            nn.Conv2d(num_in_ch, f, 5, 1, 2), nn.LeakyReLU(0.2), nn.Conv2d(f, 2 * f, 5, 1, 2), _norm_layer(norm, 2 * f),
            nn.LeakyReLU(0.2), nn.Conv2d(2 * f, 4 * f, 5, 1, 2), _norm_layer(norm, 4 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * f, 1, 1))

    def forward(self, x):
        return self.net(x)


def _nlayer_sequence(num_in_ch, num_feat, num_layers, norm, stride, mid_bias):
    """PatchGAN layer list (pix2pix ``NLayerDiscriminator``) with 4x4 kernels and padding 1."""
    layers = [nn.Conv2d(num_in_ch, num_feat, 4, stride, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, num_layers + 1):
        prev, mult = mult, min(2**n, 8)
        layer_stride = stride if n < num_layers else 1
        layers += [
            nn.Conv2d(num_feat * prev, num_feat * mult, 4, layer_stride, 1, bias=mid_bias),
            _norm_layer(norm, num_feat * mult),
            nn.LeakyReLU(0.2, True)
        ]
    layers.append(nn.Conv2d(num_feat * mult, 1, 4, 1, 1))
    return layers


class _NLayerBody(nn.Module):
    """DSN ``NLayerDiscriminator`` with two layers; convs after BN have no bias, with InstanceNorm they have one."""

    def __init__(self, num_in_ch, norm, stride, num_feat=64):
        super().__init__()
        self.model = nn.Sequential(*_nlayer_sequence(num_in_ch, num_feat, 2, norm, stride, mid_bias=norm == 'instance'))

    def forward(self, x):
        return self.model(x)


@ARCH_REGISTRY.register()
class DASRFSDiscriminator(nn.Module):
    """DASR frequency-separation patch discriminator ``D_y`` of the down-sampling stage (paper Sec. 3.1).

    The input LR image is first split into frequencies and only the high frequencies are judged:

    * ``gau``: ``0.5 + 0.5 * (x - GaussianBlur_k(x))`` (zero padding, sigma k/6) -> C channels;
    * ``avg_pool``: the same with a ``k x k`` box filter (padded zeros not counted) -> C channels;
    * ``wavelet``: Haar detail bands ``0.5 + 0.5 * band`` at half resolution, concatenated (3C channels) or
      averaged (C channels);
    * ``rgb``: no filtering (official ``--no_highpass``; the paper's "RGB" ablation).

    Args:
        num_in_ch (int): Image channels. Default: 3.
        filter_type (str): ``gau`` (official CLI default), ``avg_pool``, ``wavelet`` (paper default, WFS) or ``rgb``.
        kernel_size (int): Filter size for ``gau`` / ``avg_pool``. Default: 5.
        cat_or_sum (str): Wavelet band combination, ``cat`` or ``sum``. Default: ``cat``.
        norm (str): ``batch`` (released checkpoints) or ``instance`` (official CLI default).
        d_arch (str): ``fsd`` (5x5 convs, output size = input size), ``nld_s1`` (4x4 PatchGAN, stride 1) or
            ``nld_s2`` (4x4 PatchGAN, two stride-2 convs).
        num_feat (int): Channels of the first conv (official: 64; smaller values only for quick CPU runs).

    Shapes:
        ``(B, C, h, w)`` -> logits ``(B, 1, h', w')``; ``h' = h`` for FSD with gau / avg_pool / rgb,
        ``ceil(h / 2)`` for FSD with wavelet. Apply ``torch.sigmoid`` for the official probability map.
    """

    def __init__(self,
                 num_in_ch=3,
                 filter_type='gau',
                 kernel_size=5,
                 cat_or_sum='cat',
                 norm='batch',
                 d_arch='fsd',
                 num_feat=64):
        super().__init__()
        self.filter_type = _choice(filter_type, DSN_FILTERS, 'filter_type')
        self.norm = _choice(norm, DSN_NORMS, 'norm')
        self.d_arch = _choice(d_arch, DSN_ARCHS, 'd_arch')
        self.cat_or_sum = _choice(cat_or_sum, ('cat', 'sum'), 'cat_or_sum')
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be a positive odd integer, got {kernel_size!r}.')
        self.kernel_size = kernel_size
        self.num_in_ch = num_in_ch
        self.num_feat = num_feat

        body_in = num_in_ch
        if self.filter_type in ('gau', 'avg_pool'):
            self.filter = _HighPass(num_in_ch, kernel_size, gaussian=self.filter_type == 'gau')
        elif self.filter_type == 'wavelet':
            self.DWT2 = _HaarFilterBank()
            body_in = num_in_ch * 3 if self.cat_or_sum == 'cat' else num_in_ch

        if self.d_arch == 'fsd':
            self.net = _FSDBody(body_in, self.norm, num_feat)
        else:
            self.net = _NLayerBody(body_in, self.norm, stride=1 if self.d_arch == 'nld_s1' else 2, num_feat=num_feat)

    def high_frequency(self, x):
        """What the discriminator body sees: ``(B, C, h, w)`` -> filtered tensor (see class docstring)."""
        if self.filter_type in ('gau', 'avg_pool'):
            return self.filter(x)
        if self.filter_type == 'wavelet':
            return wavelet_highpass(x, combine=self.cat_or_sum, normalize=True)
        return x

    def forward(self, x):
        return self.net(self.high_frequency(x))

    def config(self):
        """Constructor keyword arguments; stored in DSN checkpoints so the generation step rebuilds this network."""
        return dict(
            type='DASRFSDiscriminator',
            num_in_ch=self.num_in_ch,
            filter_type=self.filter_type,
            kernel_size=self.kernel_size,
            cat_or_sum=self.cat_or_sum,
            norm=self.norm,
            d_arch=self.d_arch,
            num_feat=self.num_feat)


@ARCH_REGISTRY.register()
class DASRPatchDiscriminator(nn.Module):
    """Target-domain discriminator ``D_t`` of the DASR SR stage (official SRN ``NLayerDiscriminator``, Sec. 3.2).

    PatchGAN on the high-frequency bands of SR / HR images: 4x4 convs, ``num_layers - 1`` further stride-2 convs,
    a stride-1 conv and a stride-1 1-channel conv; InstanceNorm without affine parameters; no bias in the normalised
    convs. Keys ``model.{0,2,5,8}`` for ``num_layers=2``. Kaiming-normal init (official ``init_weights`` scale 1).

    Args:
        num_in_ch (int): Input channels: 9 for wavelet 'cat' bands of RGB (official auto-reproduce configs), 3 for
            ``gau`` / ``avg_pool``. Default: 9.
        num_feat (int): Channels of the first conv. Default: 64.
        num_layers (int): Official ``n_layers``. Default: 2.

    Shapes:
        ``(B, num_in_ch, h, w)`` -> logits ``(B, 1, h', w')``; ``h = 64`` gives ``h' = 14``.
    """

    def __init__(self, num_in_ch=9, num_feat=64, num_layers=2):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f'num_layers must be a positive integer, got {num_layers!r}.')
        self.model = nn.Sequential(*_nlayer_sequence(num_in_ch, num_feat, num_layers, 'instance', 2, mid_bias=False))
        default_init_weights(self.model, scale=1)

    def forward(self, x):
        return self.model(x)


# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint families (srplugins.checkpoints): official DSN / SRN files and srplugins' own keys (identical layouts)
# ------------------------------------------------------------------------------------------------------------------- #
from srplugins.checkpoints.family import Built, count_blocks, indices, register_arch, register_family  # noqa: E402

register_arch(
    'DASRDownsampler',
    'downsampler',
    scale=lambda opt: 1. / opt.get('scale', 4),
    size_multiple=lambda opt: int(opt.get('scale', 4)))
register_arch('DASRFSDiscriminator', 'discriminator')
register_arch('DASRPatchDiscriminator', 'discriminator')

# official --filter / fs_type spellings -> DASRFSDiscriminator.filter_type
_DSN_FILTER_NAMES = {
    'gau': 'gau',
    'gaussian': 'gau',
    'avg_pool': 'avg_pool',
    'avgpool': 'avg_pool',
    'wavelet': 'wavelet',
    'rgb': 'rgb',
    'none': 'rgb'
}


def _dsn_downsampler_from_state(state, hints):
    down = [
        i for i in indices(state, 'down_sample.') if state.get(f'down_sample.{i}.weight', torch.empty(0)).dim() == 4
    ]
    opt = dict(
        num_in_ch=state['block_input.0.weight'].shape[1],
        num_out_ch=state['block_output.weight'].shape[0],
        num_feat=state['block_input.0.weight'].shape[0],
        num_block=count_blocks(state, 'res_blocks.'),
        scale=2**len(down))
    return Built('DASRDownsampler', opt, state)


def _dsn_discriminator_from_state(state, hints):
    """The one DSN discriminator detector (FSD and NLayer bodies; gau / avg_pool / wavelet / rgb filters).

    Read from the weights: body (``net.net.*`` FSD or ``net.model.*`` NLayer), ``num_feat`` (first conv), norm (batch
    norm has running statistics), Gaussian kernel size, wavelet buffers and ``cat`` / ``sum`` (body input channels).
    Not in the weights, so taken from the official metadata (``fs_type`` / ``fs_kernel_size`` / ``D_type``) or a hint
    and otherwise refused: ``avg_pool`` vs ``rgb`` (neither has filter weights) and ``nld_s1`` vs ``nld_s2`` (same
    keys, different strides).
    """
    notes = []
    d_type = str(hints.get('D_type') or '').lower()
    if 'net.net.0.weight' in state:
        d_arch, first = 'fsd', 'net.net.0.weight'
        norm = 'batch' if 'net.net.3.running_mean' in state else 'instance'
    else:
        first = 'net.model.0.weight'
        d_arch = hints.get('d_arch') or (d_type if d_type in ('nld_s1', 'nld_s2') else None)
        if d_arch not in ('nld_s1', 'nld_s2'):
            raise ValueError("DASR NLayer discriminator: nld_s1 and nld_s2 have identical keys; pass d_arch ('nld_s1' "
                             "or 'nld_s2') (command line: --d_arch).")
        norm = 'batch' if 'net.model.3.running_mean' in state else 'instance'
    body_in, num_feat = state[first].shape[1], state[first].shape[0]
    gauss_key = 'filter.filter_low.filter.gaussian_filter.weight'
    kernel_size = hints.get('kernel_size') or hints.get('fs_kernel_size')
    if gauss_key in state:
        filter_type, kernel_size = 'gau', state[gauss_key].shape[-1]
    elif 'DWT2.h0_col' in state:
        filter_type = 'wavelet'
    else:
        named = hints.get('filter_type') or hints.get('fs_type')
        filter_type = _DSN_FILTER_NAMES.get(str(named).lower()) if named is not None else None
        if filter_type not in ('avg_pool', 'rgb'):
            raise ValueError('DASR discriminator without a Gaussian kernel or wavelet buffers: it was trained with '
                             "either the 'avg_pool' filter or no high-pass ('rgb'), which have identical keys. Pass "
                             "filter_type='avg_pool' or 'rgb' (command line: --filter_type).")
        notes.append(f'filter_type {filter_type!r} taken from ' +
                     ('the argument' if hints.get('filter_type') else 'the checkpoint metadata'))
        if filter_type == 'avg_pool' and kernel_size is None:
            notes.append('avg_pool kernel size is not in the weights; the official default 5 is used')
    num_in_ch, cat_or_sum = body_in, 'cat'
    if filter_type == 'wavelet':
        num_in_ch = int(hints.get('num_in_ch') or (body_in // 3 if body_in % 3 == 0 and body_in >= 9 else body_in))
        cat_or_sum = 'cat' if body_in == 3 * num_in_ch else 'sum'
    opt = dict(
        num_in_ch=int(num_in_ch),
        filter_type=filter_type,
        kernel_size=int(kernel_size or 5),
        cat_or_sum=cat_or_sum,
        norm=norm,
        d_arch=d_arch,
        num_feat=int(num_feat))
    return Built('DASRFSDiscriminator', opt, state, notes)


def _dasr_patch_from_state(state, hints):
    convs = [
        i for i in indices(state, 'model.') if f'model.{i}.weight' in state and state[f'model.{i}.weight'].dim() == 4
    ]
    opt = dict(
        num_in_ch=state['model.0.weight'].shape[1],
        num_feat=state['model.0.weight'].shape[0],
        num_layers=len(convs) - 2)
    return Built('DASRPatchDiscriminator', opt, state)


register_family(
    'dasr_downsampler',
    'DASR down-sampling generator (DSN De_resnet)',
    ('block_input.0.weight', 'res_blocks.0.conv1.weight', 'block_output.weight'),
    build=_dsn_downsampler_from_state)
register_family(
    'dasr_fsd',
    'DASR frequency-separation discriminator (DSN FSD)', ('net.net.0.weight', 'net.net.8.weight'),
    build=_dsn_discriminator_from_state)
register_family(
    'dasr_nld',
    'DASR DSN NLayer discriminator (nld_s1 / nld_s2)', ('net.model.0.weight', ),
    build=_dsn_discriminator_from_state)
register_family(
    'dasr_patch',
    'DASR SRN target discriminator D_t (PatchGAN, instance norm)',
    ('model.0.weight', 'model.2.weight', 'model.5.weight', 'model.8.weight'),
    forbidden=('model.1.sub.0.RDB1.conv1.0.weight', 'model.3.weight'),
    build=_dasr_patch_from_state)
