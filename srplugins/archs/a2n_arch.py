"""A2N: Attention in Attention Network for image super-resolution.

Chen, Gu and Zhang, "Attention in Attention Network for Image Super-Resolution", arXiv:2104.09497 (2021).

The module and parameter names follow the authors' release (``haoyuc/A2N``, ``code/model/aan.py``, commit 210b38c)
so that their checkpoints ``aan_x2.pt`` / ``aan_x3.pt`` / ``aan_x4.pt`` (plain state dicts, 172 tensors at x2/x3,
178 at x4) load with ``strict=True``. Nothing here registers a buffer, for the same reason.

Official behaviour followed:
    * Sec. 3 (network): 3x3 head conv, 16 attention-in-attention blocks (AAB), 3x3 trunk conv, long feature skip
      from the head output, reconstruction by nearest-neighbour upsampling + conv + pixel attention (one x2/x3 stage,
      two x2 stages for x4), 3x3 tail conv, and a global skip that adds the *bilinearly* upsampled input.
    * Sec. 3.2 (AAB): a 1x1 conv + LeakyReLU(0.2) feeds an attention dropout module (ADM: global average pooling,
      Linear(C, C/4) without bias, ReLU, Linear(C/4, 2) without bias, softmax with a fixed temperature of 30)
      whose two weights mix an attention branch and a non-attention branch; the mix goes through a LeakyReLU and a
      1x1 conv and is added to the block input.
    * The released weights were trained on RGB images in 0..255 without mean subtraction (EDSR framework,
      ``--rgb_range 255``).

Deliberate differences from the official code:
    * The network takes BasicSR's [0, 1] tensors; ``img_range`` (255 by default) multiplies the input on the way in
      and divides the output on the way out, which is exactly the official computation at 0..255.
    * Widths, depth and the A2N-M switch (1x1 non-attention conv, commented out in the official file and described
      there as recommended) are constructor arguments instead of hard-coded values.
    * Upscale factors other than 2, 3 and 4 raise ValueError (the official forward silently skips reconstruction).
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F


class PixelAttention(nn.Module):
    """Pixel attention (PA) used in the reconstruction path: ``x * sigmoid(conv1x1(x))``.

    Args:
        num_feat (int): Channel number C.

    Shapes:
        input (B, C, H, W) -> output (B, C, H, W).
    """

    def __init__(self, num_feat):
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_feat, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class AttentionBranch(nn.Module):
    """Attention branch of an AAB (paper Sec. 3.2).

    A full C x H x W attention map ``sigmoid(k2(lrelu(k1(x))))`` gates ``k3(x)``; ``k4`` projects the result.
    Only ``k2`` has a bias, as in the official release.

    Args:
        num_feat (int): Channel number C.
        kernel_size (int): Kernel size of k1, k3 and k4. Default: 3.

    Shapes:
        input (B, C, H, W) -> output (B, C, H, W).
    """

    def __init__(self, num_feat, kernel_size=3):
        super().__init__()
        padding = kernel_size // 2
        self.k1 = nn.Conv2d(num_feat, num_feat, kernel_size, padding=padding, bias=False)
        self.k2 = nn.Conv2d(num_feat, num_feat, 1)
        self.k3 = nn.Conv2d(num_feat, num_feat, kernel_size, padding=padding, bias=False)
        self.k4 = nn.Conv2d(num_feat, num_feat, kernel_size, padding=padding, bias=False)

    def forward(self, x):
        attention_map = torch.sigmoid(self.k2(F.leaky_relu(self.k1(x), 0.2)))
        return self.k4(self.k3(x) * attention_map)


class AAB(nn.Module):
    """Attention in attention block (paper Sec. 3.2).

    ``y = lrelu(conv_first(x))``; the ADM turns ``avgpool(y)`` into two weights ``(a0, a1)`` that sum to one
    (softmax of the logits divided by ``temperature``); ``out = conv_last(lrelu(a0 * attention(y) +
    a1 * non_attention(y))) + x``. All convs are bias-free except ``attention.k2``.

    Args:
        num_feat (int): Channel number C.
        reduction (int): Channel reduction of the ADM hidden layer (C -> C // reduction). Default: 4.
        temperature (float): Softmax temperature of the ADM; fixed at 30 in the official code. Default: 30.
        non_attention_kernel (int): Kernel size of the non-attention conv: 3 for A2N, 1 for A2N-M. Default: 3.

    Shapes:
        input (B, C, H, W) -> output (B, C, H, W).
    """

    num_branches = 2  # index 0: attention branch, index 1: non-attention branch

    def __init__(self, num_feat, reduction=4, temperature=30., non_attention_kernel=3):
        super().__init__()
        self.temperature = temperature
        # registration order gives the key order of the released aan_x2.pt / aan_x3.pt files
        self.conv_first = nn.Conv2d(num_feat, num_feat, 1, bias=False)
        self.ADM = nn.Sequential(
            nn.Linear(num_feat, num_feat // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(num_feat // reduction, self.num_branches, bias=False),
        )
        self.attention = AttentionBranch(num_feat)
        self.non_attention = nn.Conv2d(
            num_feat, num_feat, non_attention_kernel, padding=non_attention_kernel // 2, bias=False)
        self.conv_last = nn.Conv2d(num_feat, num_feat, 1, bias=False)

    def branch_weights(self, feat):
        """ADM output.

        Args:
            feat (Tensor): Activated ``conv_first`` output, shape (B, C, H, W) (the ADM pools this, not the block
                input).

        Returns:
            Tensor: Shape (B, 2); column 0 weights the attention branch, column 1 the non-attention branch; rows
                sum to one.
        """
        logits = self.ADM(feat.mean(dim=(2, 3)))
        return F.softmax(logits / self.temperature, dim=1)

    def forward(self, x):
        feat = F.leaky_relu(self.conv_first(x), 0.2)
        weights = self.branch_weights(feat)[:, :, None, None, None]
        mixed = weights[:, 0] * self.attention(feat) + weights[:, 1] * self.non_attention(feat)
        return self.conv_last(F.leaky_relu(mixed, 0.2)) + x


@ARCH_REGISTRY.register()
class A2N(nn.Module):
    """A2N generator (Chen et al. 2021), state-dict compatible with the authors' ``aan_x{2,3,4}.pt``.

    Parameters: 1,036,443 at x2/x3 and 1,047,459 at x4 with the defaults (A2N-M: 831,643 / 842,659).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Trunk width (official nf). Default: 40.
        num_up_feat (int): Reconstruction width (official unf). Default: 24.
        num_block (int): Number of AABs. Default: 16.
        upscale (int): 2, 3 or 4. x4 uses two nearest x2 stages (adds upconv2, att2, HRconv2). Default: 4.
        img_range (float): The input is multiplied by this before the network and the output divided by it
            afterwards; 255 reproduces the official 0..255 computation. Default: 255.
        non_attention_kernel (int): 3 for A2N, 1 for A2N-M. Default: 3.
        adm_reduction (int): ADM hidden-layer reduction. Default: 4.
        adm_temperature (float): ADM softmax temperature. Default: 30.

    Shapes:
        input (B, num_in_ch, H, W) in [0, 1] -> output (B, num_out_ch, H * upscale, W * upscale), nominally [0, 1]
        (not clamped).
    """

    def __init__(self,
                 num_in_ch=3,
                 num_out_ch=3,
                 num_feat=40,
                 num_up_feat=24,
                 num_block=16,
                 upscale=4,
                 img_range=255.,
                 non_attention_kernel=3,
                 adm_reduction=4,
                 adm_temperature=30.):
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f'A2N: network_g.upscale must be 2, 3 or 4, got {upscale!r}.')
        if non_attention_kernel not in (1, 3):
            raise ValueError('A2N: network_g.non_attention_kernel must be 3 (A2N) or 1 (A2N-M), '
                             f'got {non_attention_kernel!r}.')
        if num_in_ch != num_out_ch:
            raise ValueError(f'A2N: num_in_ch ({num_in_ch}) must equal num_out_ch ({num_out_ch}) because of the '
                             'global interpolation skip.')
        if not img_range or img_range <= 0:
            raise ValueError(f'A2N: network_g.img_range must be a positive number, got {img_range!r}.')
        self.upscale = upscale
        self.img_range = img_range

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.AAB_trunk = nn.Sequential(
            *[AAB(num_feat, adm_reduction, adm_temperature, non_attention_kernel) for _ in range(num_block)])
        self.trunk_conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

        self.upconv1 = nn.Conv2d(num_feat, num_up_feat, 3, 1, 1)
        self.att1 = PixelAttention(num_up_feat)
        self.HRconv1 = nn.Conv2d(num_up_feat, num_up_feat, 3, 1, 1)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(num_up_feat, num_up_feat, 3, 1, 1)
            self.att2 = PixelAttention(num_up_feat)
            self.HRconv2 = nn.Conv2d(num_up_feat, num_up_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_up_feat, num_out_ch, 3, 1, 1)

    def _reconstruct(self, feat, factor, upconv, att, hrconv):
        feat = upconv(F.interpolate(feat, scale_factor=factor, mode='nearest'))
        feat = F.leaky_relu(att(feat), 0.2)
        return F.leaky_relu(hrconv(feat), 0.2)

    def forward(self, x):
        x = x * self.img_range
        feat = self.conv_first(x)
        feat = feat + self.trunk_conv(self.AAB_trunk(feat))
        if self.upscale == 4:
            feat = self._reconstruct(feat, 2, self.upconv1, self.att1, self.HRconv1)
            feat = self._reconstruct(feat, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            feat = self._reconstruct(feat, self.upscale, self.upconv1, self.att1, self.HRconv1)
        out = self.conv_last(feat) + F.interpolate(x, scale_factor=self.upscale, mode='bilinear', align_corners=False)
        return out / self.img_range


# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint family (srplugins.checkpoints): the authors' aan_x{2,3,4}.pt are raw state dicts in this module's layout
# ------------------------------------------------------------------------------------------------------------------- #
from srplugins.checkpoints.family import Built, count_blocks, register_arch, register_family, scale_x2_or_x3  # noqa

register_arch('A2N', 'sr', scale=lambda opt: opt.get('upscale', 4))


def _a2n_from_state(state, hints):
    """Hyper-parameters from shapes; x2 and x3 files have identical keys and shapes, so their scale comes from the
    argument or the ``_x{N}`` file name (never guessed)."""
    opt = dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=state['conv_first.weight'].shape[0],
        num_up_feat=state['upconv1.weight'].shape[0],
        num_block=count_blocks(state, 'AAB_trunk.'))
    kernel = state['AAB_trunk.0.non_attention.weight'].shape[-1]
    notes = []
    if kernel != 3:
        opt['non_attention_kernel'] = int(kernel)
        notes.append(f'non-attention branch is {kernel}x{kernel}: A2N-M variant')
    given = hints.get('scale')
    if 'upconv2.weight' in state:
        if given not in (None, 4):
            raise ValueError(f'A2N checkpoint has the x4 reconstruction (upconv2/att2/HRconv2) but scale={given} was '
                             'given.')
        scale = 4
    else:
        scale, note = scale_x2_or_x3('an A2N checkpoint without upconv2', given, hints.get('path'))
        notes.append(note)
    opt['upscale'] = scale
    return Built('A2N', opt, state, notes)


register_family(
    'a2n',
    'A2N (attention in attention network)',
    ('conv_first.weight', 'AAB_trunk.0.attention.k1.weight', 'trunk_conv.weight', 'upconv1.weight', 'att1.conv.weight',
     'HRconv1.weight', 'conv_last.weight'),
    build=_a2n_from_state)
