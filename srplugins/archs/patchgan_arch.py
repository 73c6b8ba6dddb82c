"""PatchGAN discriminator with spectral normalisation, as used for BSRGAN.

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 5 (training: "spectral norm regularization based least square PatchGAN"). Official behaviour followed:
KAIR ``models/network_discriminator.py::Discriminator_PatchGAN(input_nc=3, ndf=64, n_layers=3,
norm_type='spectral')``: five 4x4 convolutions with padding 2 (pix2pix uses 1), channels 64-128-256-512-1,
strides 2, 2, 2, 1, 1, spectral norm on every conv (the norm layer is an identity), bias everywhere,
LeakyReLU(0.2) after all but the last, weights initialised N(0, 0.02). Receptive field 70x70; 2,764,737
parameters for ``num_feat=64``.

State-dict keys follow KAIR (``model.child{i}.0.weight_orig / weight_u / weight_v / bias``) so discriminators
trained with KAIR load with ``strict=True``; the hook-based ``torch.nn.utils.spectral_norm`` keeps those names.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn.utils import spectral_norm


@ARCH_REGISTRY.register()
class PatchGANDiscriminatorSN(nn.Module):
    """Spectral-norm PatchGAN discriminator (BSRGAN / KAIR ``Discriminator_PatchGAN``).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_feat (int): Channels of the first conv; doubled per stride-2 layer, capped at 512. Default: 64.
        num_layers (int): Number of stride-2 convs (3 gives the 70x70 receptive field). Default: 3.

    Shapes:
        input: (B, num_in_ch, H, W). output: (B, 1, H', W') patch logits; with the default config
        H' = floor(H/8) + 3 for H divisible by 8 (288 -> 39, 256 -> 35, 96 -> 15).
    """

    def __init__(self, num_in_ch=3, num_feat=64, num_layers=3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        self.model = nn.Sequential()
        self.model.add_module('child0', nn.Sequential(self._conv(num_in_ch, num_feat, 2), nn.LeakyReLU(0.2, True)))
        nf = num_feat
        for i in range(1, num_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            # nn.Identity keeps KAIR's module index layout (conv, norm, act) without adding parameters
            self.model.add_module(f'child{i}',
                                  nn.Sequential(self._conv(nf_prev, nf, 2), nn.Identity(), nn.LeakyReLU(0.2, True)))
        nf_prev, nf = nf, min(nf * 2, 512)
        self.model.add_module(f'child{num_layers}',
                              nn.Sequential(self._conv(nf_prev, nf, 1), nn.Identity(), nn.LeakyReLU(0.2, True)))
        self.model.add_module(f'child{num_layers + 1}', nn.Sequential(self._conv(nf, 1, 1)))

    @staticmethod
    def _conv(in_ch, out_ch, stride):
        conv = nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=stride, padding=2)
        nn.init.normal_(conv.weight, 0.0, 0.02)
        return spectral_norm(conv)

    def forward(self, x):
        """x: (B, C, H, W) -> (B, 1, H', W') logits (no sigmoid; use GANLoss 'lsgan' as in the paper)."""
        return self.model(x)


# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint family (srplugins.checkpoints): KAIR's Discriminator_PatchGAN (spectral norm) keys
# ------------------------------------------------------------------------------------------------------------------- #
from srplugins.checkpoints.family import Built, indices, register_arch, register_family  # noqa: E402

register_arch('PatchGANDiscriminatorSN', 'discriminator')


def _patchgan_sn_from_state(state, hints):
    children = indices(state, 'model.child')
    first = state['model.child0.0.weight_orig']
    opt = dict(num_in_ch=first.shape[1], num_feat=first.shape[0], num_layers=len(children) - 2)
    return Built('PatchGANDiscriminatorSN', opt, state)


register_family(
    'patchgan_sn',
    'KAIR PatchGAN discriminator with spectral norm (BSRGAN)', ('model.child0.0.weight_orig', ),
    build=_patchgan_sn_from_state)
