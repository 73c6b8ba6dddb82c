"""Checkpoint families of architectures that basicsr registers itself (no ``*_arch.py`` of srplugins defines them).

* basicsr / Real-ESRGAN ``RRDBNet`` (``conv_first``, ``body.{i}.rdb{r}.conv{c}``, ``conv_body``, ``conv_up1/2``,
  ``conv_hr``, ``conv_last``): basicsr ``archs/rrdbnet_arch.py`` pixel-unshuffles x2 / x1 inputs, so ``conv_first``
  sees 4x / 16x the image channels and the input must be a multiple of 2 / 4;
* Real-ESRGAN's ``SRVGGNetCompact`` (``body.{n}``: conv, PReLU, conv, ...; the last conv has ``num_out_ch * s^2``
  channels before the pixel shuffle), registered by basicsr as ``SRVGGNetCompact_basicsr``;
* discriminators: ``UNetDiscriminatorSN_basicsr`` (input multiple of 8), ``VGGStyleDiscriminator``.
"""
from srplugins.checkpoints.family import Built, count_blocks, indices, register_arch, register_family

register_arch(
    'RRDBNet',
    'sr',
    scale=lambda opt: opt.get('scale', 4),
    size_multiple=lambda opt: {
        1: 4,
        2: 2
    }.get(opt.get('scale', 4), 1))
register_arch('SRVGGNetCompact_basicsr', 'sr', scale=lambda opt: opt.get('upscale', 4))
register_arch('SRVGGNetCompact', 'sr', scale=lambda opt: opt.get('upscale', 4))
register_arch('UNetDiscriminatorSN_basicsr', 'discriminator', size_multiple=8)
register_arch('UNetDiscriminatorSN', 'discriminator', size_multiple=8)
register_arch('VGGStyleDiscriminator', 'discriminator')
register_arch('VGGStyleDiscriminator_basicsr', 'discriminator')


def _build_basicsr_rrdb(state, hints):
    in_ch = state['conv_first.weight'].shape[1]
    out_ch = state['conv_last.weight'].shape[0]
    if in_ch == 16 * out_ch:
        scale, num_in_ch = 1, in_ch // 16
    elif in_ch == 4 * out_ch:
        scale, num_in_ch = 2, in_ch // 4
    else:
        scale, num_in_ch = 4, in_ch
    opt = dict(
        num_in_ch=num_in_ch,
        num_out_ch=out_ch,
        scale=scale,
        num_feat=state['conv_first.weight'].shape[0],
        num_block=count_blocks(state, 'body.'),
        num_grow_ch=state['body.0.rdb1.conv1.weight'].shape[0])
    return Built('RRDBNet', opt, state)


def _build_srvgg(state, hints):
    idx = indices(state, 'body.')
    convs = [i for i in idx if state[f'body.{i}.weight'].dim() == 4]
    acts = [i for i in idx if state[f'body.{i}.weight'].dim() == 1]
    first, last = state[f'body.{convs[0]}.weight'], state[f'body.{convs[-1]}.weight']
    num_out_ch = int(hints.get('num_out_ch') or first.shape[1])
    upscale = int(round((last.shape[0] / num_out_ch)**0.5))
    notes = []
    act_type = 'prelu' if acts else hints.get('act_type', 'prelu')
    if not acts:
        notes.append(f'activation has no weights (relu or leakyrelu); using act_type={act_type!r}')
    opt = dict(
        num_in_ch=first.shape[1],
        num_out_ch=num_out_ch,
        num_feat=first.shape[0],
        num_conv=len(convs) - 2,
        upscale=upscale,
        act_type=act_type)
    return Built('SRVGGNetCompact_basicsr', opt, state, notes)


register_family(
    'basicsr_rrdbnet',
    'basicsr / Real-ESRGAN RRDBNet', ('conv_first.weight', 'body.0.rdb1.conv1.weight', 'conv_body.weight',
                                      'conv_up1.weight', 'conv_hr.weight', 'conv_last.weight'),
    build=_build_basicsr_rrdb)
register_family(
    'srvgg_compact',
    'Real-ESRGAN SRVGGNetCompact', ('body.0.weight', 'body.1.weight'),
    forbidden=('conv_first.weight', 'body.0.rdb1.conv1.weight'),
    build=_build_srvgg)
