"""Key mapping between the official BSRGAN / BSRNet RRDBNet checkpoints (KAIR layout) and basicsr ``RRDBNet``.

Official files (``BSRNet.pth``, ``BSRGAN.pth``, ``BSRGANx2.pth`` from the KAIR v1.0 release) are bare state dicts of
KAIR ``models/network_rrdbnet.py::RRDBNet`` with keys ``conv_first``, ``RRDB_trunk.{i}.RDB{r}.conv{c}``,
``trunk_conv``, ``upconv1``, ``upconv2``, ``HRconv``, ``conv_last``. For x4 (nf 64, nb 23, gc 32) the network is
identical to basicsr ``RRDBNet(3, 3, scale=4)`` up to names (702 keys, 16,697,987 parameters), so a rename gives a
strict load and identical outputs.

x2 is refused on purpose: ``BSRGANx2.pth`` has a 3-channel ``conv_first`` and a single ``upconv1``, whereas basicsr
``RRDBNet(scale=2)`` pixel-unshuffles its input (12-channel ``conv_first``) and always has two x2 upsampling convs.
"""
from collections import OrderedDict

__all__ = ['is_bsrgan_rrdbnet', 'bsrgan_rrdbnet_scale', 'bsrgan_to_basicsr', 'basicsr_to_bsrgan']

# (KAIR substring, basicsr substring); applied in order on dotted key components
_RENAMES = (('RRDB_trunk.', 'body.'), ('.RDB1.', '.rdb1.'), ('.RDB2.', '.rdb2.'), ('.RDB3.', '.rdb3.'),
            ('trunk_conv.', 'conv_body.'), ('upconv1.', 'conv_up1.'), ('upconv2.', 'conv_up2.'), ('HRconv.',
                                                                                                  'conv_hr.'))


def _strip(state_dict):
    """Unwrap {'params_ema'|'params': sd} and strip a DataParallel 'module.' prefix."""
    if not isinstance(state_dict, dict):
        raise ValueError(f'expected a state dict (mapping of names to tensors), got {type(state_dict).__name__}')
    for key in ('params_ema', 'params'):
        if key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
            break
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in state_dict.items())


def is_bsrgan_rrdbnet(state_dict):
    """True when the state dict uses the KAIR/BSRGAN RRDBNet key layout."""
    keys = _strip(state_dict).keys()
    return any(k.startswith('RRDB_trunk.') for k in keys) and 'conv_first.weight' in keys


def bsrgan_rrdbnet_scale(state_dict):
    """Scale of a KAIR-layout RRDBNet state dict: 4 with ``upconv2``, else 2."""
    return 4 if 'upconv2.weight' in _strip(state_dict) else 2


def bsrgan_to_basicsr(state_dict):
    """Rename a KAIR/BSRGAN x4 RRDBNet state dict to basicsr ``RRDBNet`` keys (tensors are shared, not copied).

    Args:
        state_dict (dict): Bare KAIR-layout state dict (``params``/``params_ema`` wrappers and ``module.`` are
            accepted too).

    Returns:
        OrderedDict: basicsr-layout state dict for ``RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, ...)``.

    Raises:
        ValueError: If the dict is not in the KAIR layout, or is the x2 release (no basicsr equivalent).
    """
    sd = _strip(state_dict)
    if not is_bsrgan_rrdbnet(sd):
        raise ValueError('not a KAIR/BSRGAN RRDBNet state dict: expected keys conv_first.weight and '
                         f'RRDB_trunk.0.RDB1.conv1.weight, got e.g. {list(sd)[:3]}')
    if bsrgan_rrdbnet_scale(sd) != 4:
        raise ValueError('this is an x2 KAIR/BSRGAN RRDBNet (e.g. BSRGANx2.pth: 3-channel conv_first, single '
                         'upconv1). basicsr RRDBNet(scale=2) pixel-unshuffles its input and has two upsampling '
                         'convs, so the weights cannot be mapped; only x4 files (BSRGAN.pth, BSRNet.pth) convert.')
    out = OrderedDict()
    for key, value in sd.items():
        new = key
        for old, rep in _RENAMES:
            new = new.replace(old, rep)
        out[new] = value
    return out


def basicsr_to_bsrgan(state_dict):
    """Inverse of ``bsrgan_to_basicsr`` (basicsr x4 ``RRDBNet`` keys -> KAIR keys)."""
    sd = _strip(state_dict)
    out = OrderedDict()
    for key, value in sd.items():
        new = key
        for old, rep in reversed(_RENAMES):  # reversed: 'conv_body.' must be handled before 'body.'
            new = new.replace(rep, old)
        out[new] = value
    return out
