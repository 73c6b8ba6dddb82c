"""SRGAN networks: the SRResNet generator and the 96x96 discriminator.

Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network", CVPR 2017
(arXiv 1609.04802), Figure 4 and Sections 2.2 / 3.2.

basicsr 1.4.2 ships neither network: its ``MSRResNet`` drops BN, uses LeakyReLU, 3x3 head/tail, no long skip and adds
a bilinear image skip; its ``VGGStyleDiscriminator`` only accepts 128/256 inputs and has a 100-unit dense layer.

Choices where the paper is silent (following the widely used PyTorch port
sgrvinod/a-PyTorch-Tutorial-to-Super-Resolution):
    * every convolution keeps its bias, also in front of BN;
    * PReLU has one shared slope per layer (``nn.PReLU()``); ``per_channel_prelu=True`` gives one per channel;
    * PyTorch's default initialisation;
    * the discriminator returns a logit: the sigmoid of Fig. 4 lives in basicsr's ``GANLoss(gan_type='vanilla')``
      (BCE with logits), so adding one here would apply it twice.
"""
import math
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn

_OUTPUT_RANGES = {(0.0, 1.0): 'identity', (-1.0, 1.0): 'tanh'}


def parse_output_range(output_range):
    """Normalise the ``output_range`` option to ``(0.0, 1.0)`` or ``(-1.0, 1.0)``.

    Args:
        output_range (list | tuple | str): ``[0, 1]`` / ``[-1, 1]`` (YAML lists) or the strings ``'[0,1]'`` /
            ``'[-1,1]'``.

    Returns:
        tuple[float, float]: The range.
    """
    value = output_range
    if isinstance(value, str):
        value = value.strip().strip('[]()').split(',')
    try:
        value = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        value = None
    if value not in _OUTPUT_RANGES:
        raise ValueError(f'network_g.output_range must be [0, 1] (identity output, BasicSR convention) or [-1, 1] '
                         f'(tanh output, HR scaled to [-1, 1] as in the paper), got {output_range!r}')
    return value


def _prelu(num_feat, per_channel):
    return nn.PReLU(num_parameters=num_feat if per_channel else 1)


class SRResNetBlock(nn.Module):
    """Residual block of SRResNet: conv3-BN-PReLU-conv3-BN plus identity skip (Fig. 4, "B residual blocks").

    Args:
        num_feat (int): Channels. Default: 64.
        per_channel_prelu (bool): One PReLU slope per channel instead of one shared slope. Default: False.
    """

    def __init__(self, num_feat=64, per_channel_prelu=False):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = _prelu(num_feat, per_channel_prelu)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x):
        """(B, C, H, W) -> (B, C, H, W)."""
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


@ARCH_REGISTRY.register()
class SRResNet(nn.Module):
    """SRResNet, the SRGAN generator (Ledig et al. 2017, Fig. 4 top).

    Head: conv9x9 (num_in_ch -> num_feat) + PReLU. Body: ``num_block`` :class:`SRResNetBlock`, then conv3x3 + BN and
    the long skip from the head output. Upsampling: per x2 a conv3x3 to ``4 * num_feat`` channels, PixelShuffle(2),
    PReLU (x3 is a single stage with ``9 * num_feat`` channels and PixelShuffle(3)). Tail: conv9x9 -> num_out_ch.
    No image-level skip. 1,549,462 parameters at x4 with the defaults (1,550,659 with ``per_channel_prelu``).

    The paper feeds LR in [0, 1] and trains against HR in [-1, 1] without naming an output activation.
    ``output_range=[0, 1]`` (default) returns the last conv unchanged, so BasicSR's [0, 1] data, losses and metrics
    apply as they are (an MSE with ``loss_weight: 4`` equals the paper's MSE on [-1, 1]). ``output_range=[-1, 1]``
    appends tanh like the common PyTorch/TensorLayer ports; train it with ``SRResNetTanhModel`` /
    ``SRGANTanhModel``, which feed HR in [-1, 1] and map results back to [0, 1] for metrics and images.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks (B in the paper). Default: 16.
        upscale (int): 2, 3, 4 or any power of two. Default: 4.
        output_range (list | str): [0, 1] (identity output) or [-1, 1] (tanh output). Default: [0, 1].
        per_channel_prelu (bool): One PReLU slope per channel instead of one shared slope. Default: False.
    """

    def __init__(self,
                 num_in_ch=3,
                 num_out_ch=3,
                 num_feat=64,
                 num_block=16,
                 upscale=4,
                 output_range=(0, 1),
                 per_channel_prelu=False):
        super().__init__()
        if upscale == 3:
            stages = [3]
        elif isinstance(upscale, int) and upscale >= 2 and upscale & (upscale - 1) == 0:
            stages = [2] * int(math.log2(upscale))
        else:
            raise ValueError(f'network_g.upscale must be 3 or a power of two (2, 4, 8), got {upscale!r}')
        self.upscale = upscale
        self.output_range = parse_output_range(output_range)

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.prelu_first = _prelu(num_feat, per_channel_prelu)
        self.body = nn.Sequential(*[SRResNetBlock(num_feat, per_channel_prelu) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn_body = nn.BatchNorm2d(num_feat)
        upsample = []
        for factor in stages:
            upsample += [
                nn.Conv2d(num_feat, num_feat * factor * factor, 3, 1, 1),
                nn.PixelShuffle(factor),
                _prelu(num_feat, per_channel_prelu)
            ]
        self.upsample = nn.Sequential(*upsample)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)
        self.out_act = nn.Tanh() if _OUTPUT_RANGES[self.output_range] == 'tanh' else nn.Identity()

    def forward(self, x):
        """(B, num_in_ch, h, w) LR in [0, 1] -> (B, num_out_ch, h * upscale, w * upscale) in ``output_range``."""
        feat = self.prelu_first(self.conv_first(x))
        out = self.bn_body(self.conv_body(self.body(feat))) + feat
        return self.out_act(self.conv_last(self.upsample(out)))


@ARCH_REGISTRY.register()
class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator (Ledig et al. 2017, Fig. 4 bottom).

    Eight 3x3 convolutions with channels num_feat x (1, 1, 2, 2, 4, 4, 8, 8) and strides (1, 2, 1, 2, 1, 2, 1, 2),
    BN after all but the first, LeakyReLU(0.2) after each; flatten (8 * num_feat x input_size/16 x input_size/16,
    i.e. 512 x 6 x 6 at 96), Dense 1024, LeakyReLU(0.2), Dense 1. 23,565,505 parameters at the defaults.

    The output is a raw logit of shape (B, 1); pair it with ``GANLoss(gan_type='vanilla')`` (BCE with logits), which
    gives the paper's -log D(G(x)) generator loss and the standard real/fake cross-entropy for D.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_feat (int): Channels of the first conv. Default: 64.
        input_size (int): Height = width of the HR crops it judges; must be divisible by 16. Default: 96 (the paper).
    """

    def __init__(self, num_in_ch=3, num_feat=64, input_size=96):
        super().__init__()
        if not isinstance(input_size, int) or input_size < 16 or input_size % 16 != 0:
            raise ValueError(f'network_d.input_size must be a positive multiple of 16 (the HR crop size, 96 in the '
                             f'paper), got {input_size!r}')
        self.input_size = input_size
        layers = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        in_ch = num_feat
        widths = [num_feat, num_feat * 2, num_feat * 2, num_feat * 4, num_feat * 4, num_feat * 8, num_feat * 8]
        strides = [2, 1, 2, 1, 2, 1, 2]
        for out_ch, stride in zip(widths, strides):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(in_ch * (input_size // 16)**2, 1024)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, x):
        """(B, num_in_ch, input_size, input_size) image -> (B, 1) logit (real > 0)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f'SRGANDiscriminator was built for {self.input_size}x{self.input_size} inputs, got '
                             f'{x.shape[-2]}x{x.shape[-1]}: set datasets.train.gt_size and network_d.input_size '
                             f'to the same value')
        feat = self.features(x)
        return self.fc2(self.lrelu(self.fc1(feat.flatten(1))))


# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint families (srplugins.checkpoints): srplugins' own key layout of the SRGAN generator and discriminator
# ------------------------------------------------------------------------------------------------------------------- #
from srplugins.checkpoints.family import Built, count_blocks, indices, register_arch, register_family  # noqa: E402

register_arch('SRResNet', 'sr', scale=lambda opt: opt.get('upscale', 4))
register_arch('SRGANDiscriminator', 'discriminator')


def _srresnet_from_state(state, hints):
    num_feat = state['conv_first.weight'].shape[0]
    factors = [
        int(round((state[f'upsample.{i}.weight'].shape[0] / num_feat)**0.5)) for i in indices(state, 'upsample.')
        if f'upsample.{i}.weight' in state and state[f'upsample.{i}.weight'].dim() == 4
    ]
    scale = int(math.prod(factors))
    opt = dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=num_feat,
        num_block=count_blocks(state, 'body.'),
        upscale=scale)
    notes = []
    if state['prelu_first.weight'].numel() > 1:
        opt['per_channel_prelu'] = True
    if hints.get('output_range') is not None:
        opt['output_range'] = list(hints['output_range'])
    else:
        notes.append('output_range (tanh or not) is not stored in the weights; assumed [0, 1] unless given')
    return Built('SRResNet', opt, state, notes)


def _srgan_d_from_state(state, hints):
    num_feat = state['features.0.weight'].shape[0]
    last_ch = state[f'features.{indices(state, "features.")[-1]}.weight'].shape[0]  # last BN: 8 * num_feat
    side = int(round((state['fc1.weight'].shape[1] / last_ch)**0.5))
    opt = dict(num_in_ch=state['features.0.weight'].shape[1], num_feat=num_feat, input_size=side * 16)
    return Built('SRGANDiscriminator', opt, state)


register_family(
    'srresnet',
    'SRGAN generator SRResNet (BN + PReLU, srplugins layout)',
    ('conv_first.weight', 'prelu_first.weight', 'body.0.conv1.weight', 'body.0.bn1.running_mean', 'conv_body.weight',
     'bn_body.weight', 'upsample.0.weight', 'conv_last.weight'),
    build=_srresnet_from_state)
register_family(
    'srgan_discriminator',
    'SRGAN discriminator (srplugins layout)',
    ('features.0.weight', 'features.2.weight', 'features.3.running_mean', 'fc1.weight', 'fc2.weight'),
    build=_srgan_d_from_state)
