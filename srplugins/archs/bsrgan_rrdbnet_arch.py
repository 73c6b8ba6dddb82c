"""RRDBNet in KAIR's layout, for the official BSRGAN x2 release (and x4 files without conversion).

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 5 (generator: ESRGAN's RRDB network, nf 64, nb 23, gc 32). Official behaviour followed: KAIR
``models/network_rrdbnet.py::RRDBNet(in_nc, out_nc, nf, nb, gc, sf)``: 3x3 ``conv_first``, ``nb`` RRDBs of three
5-conv dense blocks (residuals scaled by 0.2), ``trunk_conv`` with a global skip, then for each factor 2 of the scale a
nearest x2 upsample + conv + LeakyReLU(0.2) (``upconv1``, ``upconv2``), ``HRconv`` + LeakyReLU, ``conv_last``.

Why a separate class: basicsr ``RRDBNet(scale=2)`` pixel-unshuffles its input (12-channel ``conv_first``) and always
upsamples twice, so ``BSRGANx2.pth`` (3-channel ``conv_first``, only ``upconv1``) cannot load into it. For x4 both
networks are identical up to key names; prefer basicsr ``RRDBNet`` with ``srplugins.utils.bsrgan_keys`` there.
Key names follow KAIR exactly so the official files load with ``strict=True`` (``param_key_g: ~``).
"""
import torch
from basicsr.archs.arch_util import default_init_weights
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F


class _DenseBlockKAIR(nn.Module):
    """Five-conv residual dense block (keys ``conv1`` .. ``conv5``); output = x + 0.2 * conv5(...)."""

    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return x + 0.2 * self.conv5(torch.cat((x, x1, x2, x3, x4), 1))


class _RRDBKAIR(nn.Module):
    """Residual-in-residual dense block (keys ``RDB1`` .. ``RDB3``); output = x + 0.2 * RDB3(RDB2(RDB1(x)))."""

    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        self.RDB1 = _DenseBlockKAIR(num_feat, num_grow_ch)
        self.RDB2 = _DenseBlockKAIR(num_feat, num_grow_ch)
        self.RDB3 = _DenseBlockKAIR(num_feat, num_grow_ch)

    def forward(self, x):
        return x + 0.2 * self.RDB3(self.RDB2(self.RDB1(x)))


@ARCH_REGISTRY.register()
class BSRGANRRDBNet(nn.Module):
    """KAIR-layout RRDBNet (BSRGAN / BSRNet generators, x2 or x4).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels (KAIR ``nf``). Default: 64.
        num_block (int): Number of RRDBs (``nb``). Default: 23.
        num_grow_ch (int): Growth channels (``gc``). Default: 32.
        scale (int): 2 or 4 (one or two nearest+conv upsampling stages). Default: 4.

    Shapes:
        input: (B, num_in_ch, H, W) in [0, 1]. output: (B, num_out_ch, scale*H, scale*W).
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f'BSRGANRRDBNet scale must be 2 or 4 (KAIR layout), got {scale!r}')
        self.scale = scale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[_RRDBKAIR(num_feat, num_grow_ch) for _ in range(num_block)])
        self.trunk_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upconv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.HRconv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.trunk_conv(self.RRDB_trunk(feat))
        feat = self.lrelu(self.upconv1(F.interpolate(feat, scale_factor=2, mode='nearest')))
        if self.scale == 4:
            feat = self.lrelu(self.upconv2(F.interpolate(feat, scale_factor=2, mode='nearest')))
        return self.conv_last(self.lrelu(self.HRconv(feat)))
