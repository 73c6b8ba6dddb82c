"""U-Net discriminator with spectral normalisation, usable by every GAN recipe of srplugins.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021
(arXiv 2107.10833), Sec. 4.2 "U-Net discriminator with spectral normalization". KAIR's BSRGAN GAN config uses the same
network (``Discriminator_UNet``, identical layers and keys, always with skips).

What is reused: the network itself is basicsr 1.4.2's ``UNetDiscriminatorSN`` (registered there as
``UNetDiscriminatorSN_basicsr``; the ``realesrgan`` and HAT packages register the plain name ``UNetDiscriminatorSN``).
Its layers, forward pass and state-dict layout are exactly Real-ESRGAN's: three stride-2 4x4 convolutions down,
three bilinear x2 upsamplings with 3x3 convolutions up (optionally adding the encoder features), two extra 3x3
convolutions and a 3x3 head giving one logit per input pixel. Spectral norm is the hook-based
``torch.nn.utils.spectral_norm`` on conv1..conv8, so the keys are ``convK.weight_orig`` / ``convK.weight_u`` /
``convK.weight_v`` as in the released ``RealESRGAN_x4plus_netD.pth``.

What this module adds (deliberate differences from upstream, which are additions only):
    * A registry name of its own, ``UNetSNDiscriminator``, so srplugins can be imported together with ``realesrgan`` or
      HAT in either order without the "already registered" assertion, and so a YAML ``type`` never silently falls back
      to another package's class.
    * A clear ``ValueError`` when the input sides are not multiples of 8 (upstream fails deep inside the forward pass
      with a tensor size mismatch) or the channel count is not ``num_in_ch``.
    * Loading state dicts saved from a network whose spectral norm used the newer parametrization API
      (``convK.parametrizations.weight.original`` / ``.0._u`` / ``.0._v``): those keys are renamed to the hook-based
      names before loading, so such files also load with ``strict=True``. Real-ESRGAN's own names load unchanged.
"""
import re
from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
from basicsr.utils.registry import ARCH_REGISTRY

# 'conv3.parametrizations.weight.original' -> 'conv3.weight_orig', '....weight.0._u' -> '...weight_u', same for _v
_PARAMETRIZED_KEY = re.compile(r'^(?P<layer>.*)parametrizations\.weight\.(?:original|0\._(?P<vec>[uv]))$')


def rename_parametrized_spectral_norm_keys(state_dict, prefix=''):
    """Rename new-API spectral-norm keys to the hook-based names, in place.

    Args:
        state_dict (dict[str, Tensor]): State dict, possibly holding ``<layer>parametrizations.weight.original`` and
            ``<layer>parametrizations.weight.0._u`` / ``._v`` keys.
        prefix (str): Only keys starting with this prefix are considered. Default: ''.

    Returns:
        list[tuple[str, str]]: The (old, new) key pairs that were renamed.
    """
    renamed = []
    for key in list(state_dict.keys()):
        if not key.startswith(prefix):
            continue
        match = _PARAMETRIZED_KEY.match(key[len(prefix):])
        if match is None:
            continue
        suffix = 'weight_orig' if match.group('vec') is None else f'weight_{match.group("vec")}'
        new_key = prefix + match.group('layer') + suffix
        if new_key in state_dict:
            raise ValueError(f'State dict holds both {key!r} and {new_key!r}: cannot tell which one to load.')
        state_dict[new_key] = state_dict.pop(key)
        renamed.append((key, new_key))
    return renamed


@ARCH_REGISTRY.register()
class UNetSNDiscriminator(UNetDiscriminatorSN):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN, Sec. 4.2), with input checks.

    Same network and state-dict keys as basicsr's / Real-ESRGAN's ``UNetDiscriminatorSN`` (28 entries for
    ``num_feat=64``: ``conv0.weight/bias``, ``conv{1..8}.weight_orig/weight_u/weight_v``, ``conv9.weight/bias``;
    4,376,897 trainable parameters for ``num_in_ch=3, num_feat=64``).

    Args:
        num_in_ch (int): Channel number of inputs. Default: 3.
        num_feat (int): Channel number of the first feature map; the encoder doubles it three times. Default: 64.
        skip_connection (bool): Add the encoder features to the decoder features (U-Net skips). Turning it off
            changes only the forward pass, not the parameters or keys. Default: True.

    Input:
        x (Tensor): (B, num_in_ch, H, W) with H and W multiples of 8 (three stride-2 stages are undone by three x2
            upsamplings).

    Returns:
        Tensor: (B, 1, H, W) per-pixel realness logits (no sigmoid; use ``GANLoss`` ``vanilla``, i.e. BCE with
        logits averaged over pixels, or ``lsgan`` / ``hinge``).
    """

    def __init__(self, num_in_ch=3, num_feat=64, skip_connection=True):
        super().__init__(num_in_ch, num_feat=num_feat, skip_connection=skip_connection)
        self.num_in_ch = num_in_ch
        self.register_load_state_dict_pre_hook(self._accept_parametrized_keys)

    @staticmethod
    def _accept_parametrized_keys(module, state_dict, prefix, *args):
        rename_parametrized_spectral_norm_keys(state_dict, prefix)

    def forward(self, x):
        if x.dim() != 4 or x.size(1) != self.num_in_ch:
            raise ValueError(f'UNetSNDiscriminator expects input of shape (B, {self.num_in_ch}, H, W) '
                             f'(network_d.num_in_ch={self.num_in_ch}), got {tuple(x.shape)}.')
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f'UNetSNDiscriminator needs height and width that are multiples of 8 (three stride-2 '
                             f'stages), got {h}x{w}. Choose the training crop (e.g. datasets.train.gt_size or the '
                             f'top-level gt_size) as a multiple of 8.')
        return super().forward(x)


# ------------------------------------------------------------------------------------------------------------------- #
#  Checkpoint family (srplugins.checkpoints): Real-ESRGAN's *_netD.pth and KAIR's Discriminator_UNet keys
# ------------------------------------------------------------------------------------------------------------------- #
from collections import OrderedDict  # noqa: E402

from srplugins.checkpoints.family import Built, register_arch, register_family  # noqa: E402

register_arch('UNetSNDiscriminator', 'discriminator', size_multiple=8)


def _unet_key_order(key):
    match = re.match(r'conv(\d+)\.(.*)', key)
    return (int(match.group(1)), match.group(2)) if match else (99, key)


def _unet_sn_from_state(state, hints):
    state = OrderedDict(state)
    rename_parametrized_spectral_norm_keys(state)
    state = OrderedDict(sorted(state.items(), key=lambda kv: _unet_key_order(kv[0])))
    opt = dict(
        num_in_ch=state['conv0.weight'].shape[1],
        num_feat=state['conv0.weight'].shape[0],
        skip_connection=bool(hints.get('skip_connection', True)))
    return Built('UNetSNDiscriminator', opt, state,
                 ['skip_connection does not change the weights; assumed True unless given'])


register_family(
    'unet_sn',
    'U-Net discriminator with spectral norm (Real-ESRGAN / KAIR)', ('conv0.weight', 'conv9.weight'),
    build=_unet_sn_from_state)
