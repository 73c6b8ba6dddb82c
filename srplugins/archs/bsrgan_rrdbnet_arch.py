"""RRDBNet in KAIR's layout, for the official BSRGAN x2 release (and x4 files without conversion).

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 5 (generator: ESRGAN's RRDB network, nf 64, nb 23, gc 32). Official behaviour followed: KAIR
``models/network_rrdbnet.py::RRDBNet(in_nc, out_nc, nf, nb, gc, sf)``: 3x3 ``conv_first``, ``nb`` RRDBs of three
5-conv dense blocks (residuals scaled by 0.2), ``trunk_conv`` with a global skip, then for each factor 2 of the scale a
nearest x2 upsample + conv + LeakyReLU(0.2) (``upconv1``, ``upconv2``), ``HRconv`` + LeakyReLU, ``conv_last``.

Why a separate class: basicsr ``RRDBNet(scale=2)`` pixel-unshuffles its input (12-channel ``conv_first``) and always
upsamples twice, so ``BSRGANx2.pth`` (3-channel ``conv_first``, only ``upconv1``) cannot load into it. For x4 both
networks are identical up to key names; prefer basicsr ``RRDBNet`` with ``srplugins.checkpoints.bsrgan_keys`` there.
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


from srplugins.checkpoints import family as ckpt_family  # noqa: E402
# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint families (srplugins.checkpoints): the KAIR / BSRGAN layout and the old ESRGAN layout (DASR SRN, ESRGAN)
# ------------------------------------------------------------------------------------------------------------------- #
from srplugins.checkpoints.bsrgan_keys import bsrgan_to_basicsr  # noqa: E402

ckpt_family.register_arch('BSRGANRRDBNet', 'sr', scale=lambda opt: opt.get('scale', 4))


def _kair_rrdb_from_state(state, hints):
    """x4 is renamed to basicsr ``RRDBNet`` (identical network); x2 (3-channel input, single ``upconv1``) has no basicsr
    equivalent and stays in KAIR layout for :class:`BSRGANRRDBNet`."""
    opt = dict(
        num_in_ch=state['conv_first.weight'].shape[1],
        num_out_ch=state['conv_last.weight'].shape[0],
        num_feat=state['conv_first.weight'].shape[0],
        num_block=ckpt_family.count_blocks(state, 'RRDB_trunk.'),
        num_grow_ch=state['RRDB_trunk.0.RDB1.conv1.weight'].shape[0])
    if 'upconv2.weight' in state:
        return ckpt_family.Built('RRDBNet', dict(opt, scale=4), bsrgan_to_basicsr(state))
    return ckpt_family.Built('BSRGANRRDBNet', dict(opt, scale=2), state, [
        "x2 KAIR layout has no basicsr RRDBNet equivalent (basicsr's x2 pixel-unshuffles its input); loaded into "
        'BSRGANRRDBNet'
    ])


def _old_esrgan_from_state(state, hints):
    """Old ESRGAN ``model.{0, 1.sub.{i}.RDB{r}.conv{c}.0, 3, 6, 8, 10}``: renamed to basicsr ``RRDBNet`` (x4) or to the
    KAIR layout (x2, one nearest upconv); x2 and x3 have identical shapes, so that scale is never guessed."""
    sub = ckpt_family.indices(state, 'model.1.sub.')
    num_block = len([i for i in sub if f'model.1.sub.{i}.RDB1.conv1.0.weight' in state])
    trunk = f'model.1.sub.{num_block}.'
    if f'{trunk}weight' not in state:
        raise ValueError(f'Old-ESRGAN checkpoint without the trunk conv {trunk}weight after {num_block} RRDB blocks.')
    tops = [i for i in ckpt_family.indices(state, 'model.') if i >= 2 and f'model.{i}.weight' in state]
    if len(tops) < 3:
        raise ValueError(f'Old-ESRGAN checkpoint has too few convs after the trunk: model.{tops}.')
    ups, hr, last = tops[:-2], tops[-2], tops[-1]
    num_feat = state['model.0.weight'].shape[0]
    if any(state[f'model.{i}.weight'].shape[0] != num_feat for i in ups):
        raise ValueError('Old-ESRGAN checkpoint with pixel-shuffle upsampling (upconv output channels != num_feat) is '
                         'not supported; only the nearest-neighbour upconv variant (DASR SRN, ESRGAN) is.')
    rules = [(r'^model\.0\.', 'conv_first.'),
             (r'^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.', r'body.\1.rdb\2.conv\3.'),
             (rf'^model\.1\.sub\.{num_block}\.', 'conv_body.'), (rf'^model\.{hr}\.', 'conv_hr.'),
             (rf'^model\.{last}\.', 'conv_last.')]
    rules += [(rf'^model\.{i}\.', f'conv_up{n + 1}.') for n, i in enumerate(ups)]
    renamed = ckpt_family.rename_keys(state, rules)
    opt = dict(
        num_in_ch=state['model.0.weight'].shape[1],
        num_out_ch=state[f'model.{last}.weight'].shape[0],
        num_feat=num_feat,
        num_block=num_block,
        num_grow_ch=state['model.1.sub.0.RDB1.conv1.0.weight'].shape[0])
    given = hints.get('scale')
    if len(ups) == 2:
        if given not in (None, 4):
            raise ValueError(f'Old-ESRGAN checkpoint has two upsampling convs (x4) but scale={given} was given.')
        return ckpt_family.Built('RRDBNet', dict(opt, scale=4), renamed)
    if len(ups) == 1:
        scale, note = ckpt_family.scale_x2_or_x3('an old-ESRGAN checkpoint with one upsampling conv (nearest x2 or x3)',
                                                 given, hints.get('path'))
        if scale == 3:
            raise ValueError('Old-ESRGAN x3 checkpoint (one nearest-x3 upconv): no registered architecture builds this '
                             'variant (BSRGANRRDBNet and basicsr RRDBNet upsample by factors of 2), so it cannot be '
                             'loaded or converted.')
        kair = ckpt_family.rename_keys(renamed, [(r'^body\.(\d+)\.rdb(\d)\.', r'RRDB_trunk.\1.RDB\2.'),
                                                 (r'^conv_body\.', 'trunk_conv.'), (r'^conv_up1\.', 'upconv1.'),
                                                 (r'^conv_hr\.', 'HRconv.')])
        built = _kair_rrdb_from_state(kair, hints)
        built.notes.insert(0, note)
        return built
    raise ValueError(f'Old-ESRGAN checkpoint with {len(ups)} upsampling convs (scale {2**len(ups)}) is not '
                     'supported.')


ckpt_family.register_family(
    'kair_rrdbnet',
    'KAIR / BSRGAN RRDBNet (new ESRGAN layout)',
    ('conv_first.weight', 'RRDB_trunk.0.RDB1.conv1.weight', 'trunk_conv.weight', 'upconv1.weight', 'HRconv.weight',
     'conv_last.weight'),
    build=_kair_rrdb_from_state)
ckpt_family.register_family(
    'old_esrgan',
    'old ESRGAN RRDBNet layout (ESRGAN, DASR SRN)', ('model.0.weight', 'model.1.sub.0.RDB1.conv1.0.weight'),
    build=_old_esrgan_from_state)
