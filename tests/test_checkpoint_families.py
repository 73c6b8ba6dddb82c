"""Generic round trip for every checkpoint family declared next to its network (srplugins/archs/*_arch.py and
srplugins/checkpoints/basicsr_families.py): random weights of several non-default hyper-parameter sets, saved in the
published key layout -> detected -> hyper-parameters equal the constructor's -> strict load -> identical outputs.
Also: files that record their network options (training checkpoints, converted files) and the DSN discriminator
with num_feat 32 through srplugins-convert."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

import srplugins  # noqa: F401
from srplugins import checkpoints
from srplugins.checkpoints.bsrgan_keys import basicsr_to_bsrgan
from srplugins.checkpoints.family import rename_keys


def _old_esrgan(state):
    num_block = len({k.split('.')[1] for k in state if k.startswith('body.')})
    rules = [(r'^conv_first\.', 'model.0.'), (r'^body\.(\d+)\.rdb(\d)\.conv(\d)\.', r'model.1.sub.\1.RDB\2.conv\3.0.'),
             (r'^conv_body\.', f'model.1.sub.{num_block}.'), (r'^conv_up1\.', 'model.3.'), (r'^conv_up2\.', 'model.6.'),
             (r'^conv_hr\.', 'model.8.'), (r'^conv_last\.', 'model.10.')]
    return rename_keys(state, rules)


def _same(state):
    return state


# (family, arch_type, constructor options, key-layout transform, file name, hints, input (C, size))
CASES = [
    ('basicsr_rrdbnet', 'RRDBNet', dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1,
                                        num_grow_ch=4), _same, 'g.pth', {}, (3, 8)),
    ('basicsr_rrdbnet', 'RRDBNet', dict(num_in_ch=1, num_out_ch=1, scale=2, num_feat=12, num_block=2,
                                        num_grow_ch=6), _same, 'g.pth', {}, (1, 8)),
    ('basicsr_rrdbnet', 'RRDBNet', dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=4, num_block=3,
                                        num_grow_ch=2), _same, 'g.pth', {}, (3, 8)),
    ('kair_rrdbnet', 'RRDBNet', dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=12, num_block=2,
                                     num_grow_ch=6), basicsr_to_bsrgan, 'BSRGAN.pth', {}, (3, 8)),
    ('kair_rrdbnet', 'BSRGANRRDBNet', dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, num_grow_ch=4,
                                           scale=2), _same, 'BSRGANx2.pth', {}, (3, 8)),
    ('kair_rrdbnet', 'BSRGANRRDBNet', dict(num_in_ch=1, num_out_ch=1, num_feat=6, num_block=1, num_grow_ch=2,
                                           scale=2), _same, 'g.pth', {}, (1, 8)),
    ('old_esrgan', 'RRDBNet', dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2,
                                   num_grow_ch=4), _old_esrgan, 'DASR_SRN.pth', {}, (3, 8)),
    ('old_esrgan', 'RRDBNet', dict(num_in_ch=1, num_out_ch=3, scale=4, num_feat=6, num_block=3,
                                   num_grow_ch=3), _old_esrgan, 'DASR_SRN.pth', {}, (1, 8)),
    ('a2n', 'A2N', dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_up_feat=4, num_block=2,
                        upscale=4), _same, 'a.pt', {}, (3, 8)),
    ('a2n', 'A2N', dict(num_in_ch=1, num_out_ch=1, num_feat=12, num_up_feat=6, num_block=1,
                        upscale=3), _same, 'aan_x3.pt', {}, (1, 7)),
    ('a2n', 'A2N',
     dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_up_feat=8, num_block=3, upscale=2,
          non_attention_kernel=1), _same, 'weights.pt', dict(scale=2), (3, 7)),
    ('dasr_downsampler', 'DASRDownsampler', dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2,
                                                 scale=4), _same, 'd.pth', {}, (3, 16)),
    ('dasr_downsampler', 'DASRDownsampler', dict(num_in_ch=1, num_out_ch=1, num_feat=12, num_block=1,
                                                 scale=2), _same, 'd.pth', {}, (1, 16)),
    ('dasr_downsampler', 'DASRDownsampler', dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_block=3,
                                                 scale=1), _same, 'd.pth', {}, (3, 16)),
    ('dasr_fsd', 'DASRFSDiscriminator',
     dict(num_in_ch=3, filter_type='gau', kernel_size=7, cat_or_sum='cat', norm='batch', d_arch='fsd',
          num_feat=32), _same, 'D.tar', {}, (3, 16)),
    ('dasr_fsd', 'DASRFSDiscriminator',
     dict(
         num_in_ch=1, filter_type='wavelet', kernel_size=5, cat_or_sum='sum', norm='instance', d_arch='fsd',
         num_feat=8), _same, 'D.tar', {}, (1, 16)),
    ('dasr_fsd', 'DASRFSDiscriminator',
     dict(
         num_in_ch=3, filter_type='avg_pool', kernel_size=3, cat_or_sum='cat', norm='batch', d_arch='fsd',
         num_feat=16), _same, 'D.tar', dict(filter_type='avg_pool', kernel_size=3), (3, 16)),
    ('dasr_nld', 'DASRFSDiscriminator',
     dict(
         num_in_ch=3, filter_type='gau', kernel_size=5, cat_or_sum='cat', norm='instance', d_arch='nld_s2',
         num_feat=32), _same, 'D.tar', dict(d_arch='nld_s2'), (3, 32)),
    ('dasr_nld', 'DASRFSDiscriminator',
     dict(
         num_in_ch=3, filter_type='wavelet', kernel_size=5, cat_or_sum='cat', norm='batch', d_arch='nld_s1',
         num_feat=8), _same, 'D.tar', dict(d_arch='nld_s1'), (3, 32)),
    ('dasr_patch', 'DASRPatchDiscriminator', dict(num_in_ch=9, num_feat=8,
                                                  num_layers=2), _same, 'D_t.pth', {}, (9, 32)),
    ('dasr_patch', 'DASRPatchDiscriminator', dict(num_in_ch=3, num_feat=4,
                                                  num_layers=3), _same, 'D_t.pth', {}, (3, 64)),
    ('patchgan_sn', 'PatchGANDiscriminatorSN', dict(num_in_ch=3, num_feat=8,
                                                    num_layers=2), _same, 'D.pth', {}, (3, 32)),
    ('patchgan_sn', 'PatchGANDiscriminatorSN', dict(num_in_ch=1, num_feat=4,
                                                    num_layers=4), _same, 'D.pth', {}, (1, 64)),
    ('srresnet', 'SRResNet', dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2,
                                  upscale=2), _same, 'g.pth', {}, (3, 8)),
    ('srresnet', 'SRResNet',
     dict(num_in_ch=1, num_out_ch=1, num_feat=6, num_block=3, upscale=8,
          per_channel_prelu=True), _same, 'g.pth', {}, (1, 4)),
    ('srgan_discriminator', 'SRGANDiscriminator', dict(num_in_ch=3, num_feat=4,
                                                       input_size=32), _same, 'd.pth', {}, (3, 32)),
    ('srgan_discriminator', 'SRGANDiscriminator', dict(num_in_ch=1, num_feat=2,
                                                       input_size=48), _same, 'd.pth', {}, (1, 48)),
    ('unet_sn', 'UNetSNDiscriminator', dict(num_in_ch=3, num_feat=8,
                                            skip_connection=True), _same, 'netD.pth', {}, (3, 16)),
    ('unet_sn', 'UNetSNDiscriminator', dict(num_in_ch=1, num_feat=4, skip_connection=False), _same, 'netD.pth',
     dict(skip_connection=False), (1, 16)),
    ('srvgg_compact', 'SRVGGNetCompact_basicsr',
     dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4, act_type='prelu'), _same, 'v3.pth', {}, (3, 8)),
    ('srvgg_compact', 'SRVGGNetCompact_basicsr',
     dict(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=2, upscale=2, act_type='prelu'), _same, 'v3.pth', {}, (1, 8)),
]


@pytest.mark.parametrize(
    'family,arch_type,opt,transform,name,hints,shape', CASES, ids=[f'{c[0]}-{i}' for i, c in enumerate(CASES)])
def test_family_round_trip(tmp_path, family, arch_type, opt, transform, name, hints, shape):
    torch.manual_seed(len(opt))
    source_arch = 'RRDBNet' if transform in (basicsr_to_bsrgan, _old_esrgan) else arch_type
    net = ARCH_REGISTRY.get(source_arch)(**opt).eval()
    path = str(tmp_path / name)
    torch.save(transform(net.state_dict()), path)

    info = checkpoints.read(path, **hints)
    assert info.family == family and info.arch_type == arch_type
    assert info.arch_opt == opt
    rebuilt, _ = checkpoints.build_network(info)  # strict load
    channels, size = shape
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x), rebuilt(x))
    if info.purpose != 'discriminator':
        assert info.scale == pytest.approx(rebuilt(x).shape[-1] / size)

    # converted once, the file needs no hint and rebuilds the same network from its recorded options
    converted = str(tmp_path / 'converted.pth')
    checkpoints.convert(path, converted, **hints)
    again, info2 = checkpoints.build_network(converted)
    assert info2.arch_type == arch_type and info2.arch_opt == opt and info2.purpose == info.purpose
    assert info2.scale == info.scale and info2.size_multiple == info.size_multiple
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_every_declared_family_has_a_round_trip_case():
    from srplugins.checkpoints.core import _ensure_registered
    _ensure_registered()
    assert {f.name for f in checkpoints.families()} == {c[0] for c in CASES}


def test_training_checkpoint_records_network_opt_so_no_scale_is_needed(tmp_path):
    # the format srplugins' models save: params (+ params_ema), network_opt (the option file's block), scale
    torch.manual_seed(0)
    opt = dict(type='A2N', num_feat=8, num_up_feat=4, num_block=1, upscale=3)
    net = ARCH_REGISTRY.get('A2N')(**{k: v for k, v in opt.items() if k != 'type'})
    other = ARCH_REGISTRY.get('A2N')(**{k: v for k, v in opt.items() if k != 'type'})
    path = str(tmp_path / 'net_g_latest.pth')  # no _x{N}: A2N x2 / x3 would otherwise need --scale
    torch.save({'params': other.state_dict(), 'params_ema': net.state_dict(), 'network_opt': opt, 'scale': 3}, path)
    built, info = checkpoints.build_network(path)
    assert info.family == 'network_opt' and info.network_opt == opt and info.scale == 3
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(built(x), net(x))  # params_ema preferred
    with pytest.raises(ValueError, match='records a x3 A2N'):
        checkpoints.read(path, scale=2)
    # a discriminator file of the same run
    d_opt = dict(type='UNetSNDiscriminator', num_in_ch=3, num_feat=8, skip_connection=True)
    d_net = ARCH_REGISTRY.get('UNetSNDiscriminator')(num_in_ch=3, num_feat=8)
    torch.save({'params': d_net.state_dict(), 'network_opt': d_opt, 'scale': 3}, str(tmp_path / 'net_d_latest.pth'))
    _, d_info = checkpoints.build_network(str(tmp_path / 'net_d_latest.pth'))
    assert d_info.purpose == 'discriminator' and d_info.scale == 1 and d_info.size_multiple == 8


def _official_dsn(tmp_path, num_feat=32, filter_type='avg_pool'):
    torch.manual_seed(3)
    gen = ARCH_REGISTRY.get('DASRDownsampler')(num_feat=8, num_block=1, scale=2)
    disc = ARCH_REGISTRY.get('DASRFSDiscriminator')(filter_type=filter_type, norm='batch', num_feat=num_feat)
    path = str(tmp_path / 'last_iteration.tar')
    torch.save(
        {
            'epoch': 1,
            'fs_type': filter_type,
            'fs_kernel_size': 5,
            'D_type': 'FSD',
            'model_g_state_dict': {
                'module.' + k: v
                for k, v in gen.state_dict().items()
            },
            'models_d_state_dict': disc.state_dict()
        }, path)
    return path, gen, disc


def test_dsn_discriminator_num_feat_32_converts_and_loads_strictly(tmp_path, capsys):
    from srplugins.tools.convert import main
    path, _, disc = _official_dsn(tmp_path)
    dst = str(tmp_path / 'D.pth')
    assert main([path, dst, '--purpose', 'discriminator']) == 0
    out = capsys.readouterr().out
    assert 'network_d:\n  type: DASRFSDiscriminator' in out and 'network_g:' not in out
    assert '  num_feat: 32' in out and 'path.pretrain_network_d' in out
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert saved['network_opt'] == disc.config()
    opt = dict(saved['network_opt'])
    rebuilt = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    rebuilt.load_state_dict(saved['params'], strict=True)  # what basicsr's load_network(strict=True) does
    # the generator of the same file prints a network_g block
    assert main([path, '--detect_only']) == 0
    assert 'network_g:\n  type: DASRDownsampler' in capsys.readouterr().out


def test_load_dsn_one_detector_for_official_files_and_bundles(tmp_path):
    path, gen, disc = _official_dsn(tmp_path)
    net_g, net_d, opts = checkpoints.load_dsn(path)
    assert opts['network_d'] == disc.config() and opts['network_g']['scale'] == 2
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(net_d(x), disc.eval()(x)) and torch.equal(net_g(x), gen.eval()(x))
    # without fs_type the avg_pool / rgb choice is refused, never guessed; an override decides it
    obj = torch.load(path, weights_only=True)
    del obj['fs_type']
    torch.save(obj, path)
    with pytest.raises(ValueError, match="avg_pool' or 'rgb'"):
        checkpoints.load_dsn(path)
    _, net_d, opts = checkpoints.load_dsn(path, overrides={'filter_type': 'rgb'})
    assert opts['network_d']['filter_type'] == 'rgb' and opts['network_d']['num_feat'] == 32
    with pytest.raises(ValueError, match='not a DSN checkpoint'):
        torch.save({'params': gen.state_dict()}, str(tmp_path / 'g.pth'))
        checkpoints.load_dsn(str(tmp_path / 'g.pth'))
