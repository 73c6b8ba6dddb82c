"""Checkpoint detection / conversion: spandrel-style round trips (random weights in the official layout -> save ->
detect -> convert -> strict load -> identical outputs and hyper-parameters) for every supported family."""
import numpy as np
import pytest
import re
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.utils.registry import ARCH_REGISTRY
from collections import OrderedDict

import srplugins  # noqa: F401
from srplugins import checkpoints as ckpt
from srplugins.checkpoints.family import rename_keys
from tests.conftest import load_script


def _save(tmp_path, name, obj):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def _same_outputs(ref, info, size=16, in_ch=3):
    torch.manual_seed(0)
    x = torch.rand(1, in_ch, size, size)
    net, _ = ckpt.build_network(info, strict=True)
    with torch.no_grad():
        assert torch.equal(ref.eval()(x), net(x))
    return net


def _arch(name):
    if name not in ARCH_REGISTRY:
        pytest.skip(f'{name} is not registered yet')
    return ARCH_REGISTRY.get(name)


def _rrdb(scale=4):
    torch.manual_seed(1)
    return RRDBNet(3, 3, scale=scale, num_feat=8, num_block=2, num_grow_ch=4)


def _to_old_esrgan(state, num_block):
    """basicsr RRDBNet x4 keys -> old ESRGAN layout (ecosystem notes / DASR spec Sec. 6.4)."""
    rules = [(r'^conv_first\.', 'model.0.'), (r'^body\.(\d+)\.rdb(\d)\.conv(\d)\.', r'model.1.sub.\1.RDB\2.conv\3.0.'),
             (r'^conv_body\.', f'model.1.sub.{num_block}.'), (r'^conv_up1\.', 'model.3.'), (r'^conv_up2\.', 'model.6.'),
             (r'^conv_hr\.', 'model.8.'), (r'^conv_last\.', 'model.10.')]
    return rename_keys(state, rules)


# ----------------------------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize('scale', [4, 2, 1])
def test_basicsr_rrdbnet_params_ema_preferred(tmp_path, scale):
    net, other = _rrdb(scale), _rrdb(scale)
    torch.nn.init.zeros_(other.conv_last.weight)
    path = _save(tmp_path, 'net_g.pth', {'params': other.state_dict(), 'params_ema': net.state_dict()})
    info = ckpt.read(path)
    assert info.family == 'basicsr_rrdbnet' and info.arch_type == 'RRDBNet'
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=8, num_block=2, num_grow_ch=4)
    assert info.scale == scale and info.size_multiple == {4: 1, 2: 2, 1: 4}[scale]
    _same_outputs(net, info)  # params_ema, not params, was taken


def test_kair_bsrgan_x4_to_basicsr_and_x2_to_kair_arch(tmp_path):
    from srplugins.checkpoints.bsrgan_keys import basicsr_to_bsrgan
    net = _rrdb(4)
    kair = basicsr_to_bsrgan(net.state_dict())
    assert 'RRDB_trunk.0.RDB1.conv1.weight' in kair and 'HRconv.weight' in kair
    info = ckpt.read(_save(tmp_path, 'BSRGAN.pth', kair))
    assert info.family == 'kair_rrdbnet' and info.arch_opt['scale'] == 4 and info.arch_opt['num_block'] == 2
    _same_outputs(net, info)

    # BSRGANx2.pth: 3-channel conv_first and a single upconv1 -> KAIR-layout arch, not basicsr RRDBNet
    torch.manual_seed(1)
    net_x2 = _arch('BSRGANRRDBNet')(num_feat=8, num_block=2, num_grow_ch=4, scale=2)
    info = ckpt.read(_save(tmp_path, 'BSRGANx2.pth', net_x2.state_dict()))
    assert info.family == 'kair_rrdbnet' and info.arch_type == 'BSRGANRRDBNet' and info.scale == 2
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4, scale=2)
    _same_outputs(net_x2, info)


def test_old_esrgan_layout_with_module_prefix(tmp_path):
    net = _rrdb(4)
    old = _to_old_esrgan(net.state_dict(), num_block=2)
    assert 'model.1.sub.0.RDB1.conv1.0.weight' in old and 'model.1.sub.2.weight' in old
    wrapped = OrderedDict(('module.' + k, v) for k, v in old.items())
    info = ckpt.read(_save(tmp_path, 'DASR_SRN_G.pth', wrapped))
    assert info.family == 'old_esrgan' and info.arch_type == 'RRDBNet'
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4, scale=4)
    _same_outputs(net, info)

    # x2 old layout (model.3 upconv, model.5 HR conv, model.7 last): the KAIR x2 network
    torch.manual_seed(1)
    net_x2 = _arch('BSRGANRRDBNet')(num_feat=8, num_block=2, num_grow_ch=4, scale=2)
    kair = net_x2.state_dict()
    kair_to_basicsr = [(r'^RRDB_trunk\.(\d+)\.RDB(\d)\.', r'body.\1.rdb\2.'), (r'^trunk_conv\.', 'conv_body.'),
                       (r'^upconv1\.', 'conv_up1.'), (r'^HRconv\.', 'conv_hr.')]
    x2 = _to_old_esrgan(rename_keys(kair, kair_to_basicsr), num_block=2)
    x2 = rename_keys(x2, [(r'^model\.8\.', 'model.5.'), (r'^model\.10\.', 'model.7.')])
    assert 'model.5.weight' in x2 and 'model.6.weight' not in x2
    info = ckpt.read(_save(tmp_path, 'old_x2.pth', x2))
    assert info.family == 'old_esrgan' and info.arch_type == 'BSRGANRRDBNet' and info.scale == 2
    _same_outputs(net_x2, info)


def test_old_esrgan_single_upconv_scale_is_x2_or_x3_never_guessed(tmp_path):
    # the original ESRGAN / old BasicSR RRDBNet builds x3 as ONE nearest-x3 upconv (``if upscale == 3:
    # upsampler = upsample_block(nf, nf, 3)``) and x2 as one nearest-x2 upconv: identical keys and shapes
    torch.manual_seed(1)
    net_x2 = _arch('BSRGANRRDBNet')(num_feat=8, num_block=2, num_grow_ch=4, scale=2)
    kair_to_basicsr = [(r'^RRDB_trunk\.(\d+)\.RDB(\d)\.', r'body.\1.rdb\2.'), (r'^trunk_conv\.', 'conv_body.'),
                       (r'^upconv1\.', 'conv_up1.'), (r'^HRconv\.', 'conv_hr.')]
    old = _to_old_esrgan(rename_keys(net_x2.state_dict(), kair_to_basicsr), num_block=2)
    old = rename_keys(old, [(r'^model\.8\.', 'model.5.'), (r'^model\.10\.', 'model.7.')])

    anonymous = _save(tmp_path, 'ESRGAN_G.pth', old)
    with pytest.raises(
            ValueError,
            match=r'x2 and x3 weights of an old-ESRGAN checkpoint .*identical keys.*--scale 2 or --scale 3'):
        ckpt.read(anonymous)
    info = ckpt.read(anonymous, scale=2)
    assert info.arch_type == 'BSRGANRRDBNet' and info.scale == 2 and 'the argument' in info.notes[0]
    _same_outputs(net_x2, info)
    with pytest.raises(ValueError, match='no registered architecture builds this variant'):
        ckpt.read(anonymous, scale=3)
    with pytest.raises(ValueError, match='no registered architecture builds this variant'):
        ckpt.read(_save(tmp_path, 'ESRGAN_x3.pth', old))
    with pytest.raises(ValueError, match='says x2'):
        ckpt.read(_save(tmp_path, 'ESRGAN_x2.pth', old), scale=3)
    with pytest.raises(ValueError, match='x2 or x3, but scale=4'):
        ckpt.read(anonymous, scale=4)
    with pytest.raises(ValueError, match='says x4'):
        ckpt.read(_save(tmp_path, 'ESRGAN_x4.pth', old))
    # two upconvs are x4 whatever the name; a contradicting argument is refused
    with pytest.raises(ValueError, match=r'two upsampling convs \(x4\) but scale=2'):
        ckpt.read(_save(tmp_path, 'G.pth', _to_old_esrgan(_rrdb(4).state_dict(), num_block=2)), scale=2)


def _a2n(upscale, **kwargs):
    torch.manual_seed(2)
    return _arch('A2N')(num_feat=8, num_up_feat=4, num_block=2, upscale=upscale, **kwargs)


def test_a2n_scale_from_file_name_argument_or_error(tmp_path):
    net = _a2n(3)
    state = net.state_dict()
    info = ckpt.read(_save(tmp_path, 'aan_x3.pt', state))
    assert info.family == 'a2n' and info.scale == 3
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_up_feat=4, num_block=2, upscale=3)
    _same_outputs(net, info, size=9)

    anonymous = _save(tmp_path, 'weights.pt', state)
    with pytest.raises(ValueError, match=r'--scale 2 or --scale 3'):
        ckpt.read(anonymous)
    assert ckpt.read(anonymous, scale=3).arch_opt['upscale'] == 3
    with pytest.raises(ValueError, match='says x3'):
        ckpt.read(str(tmp_path / 'aan_x3.pt'), scale=2)


def test_a2n_x4_and_a2n_m(tmp_path):
    net = _a2n(4)
    info = ckpt.read(_save(tmp_path, 'whatever.pt', net.state_dict()))
    assert info.scale == 4 and 'upconv2.weight' in info.state_dict
    _same_outputs(net, info, size=8)
    with pytest.raises(ValueError, match='x4'):
        ckpt.read(str(tmp_path / 'whatever.pt'), scale=2)

    net_m = _a2n(2, non_attention_kernel=1)
    info = ckpt.read(_save(tmp_path, 'a2nm_x2.pt', net_m.state_dict()))
    assert info.arch_opt['non_attention_kernel'] == 1 and info.scale == 2
    _same_outputs(net_m, info, size=8)


@pytest.mark.parametrize('scale', [4, 2, 1])
def test_dasr_downsampler(tmp_path, scale):
    torch.manual_seed(3)
    net = _arch('DASRDownsampler')(num_feat=8, num_block=2, scale=scale)
    info = ckpt.read(_save(tmp_path, 'dsn.tar', {'model_g_state_dict': net.state_dict(), 'epoch': 4}))
    assert info.family == 'dasr_downsampler' and info.purpose == 'downsampler'
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, scale=scale)
    assert info.scale == pytest.approx(1 / scale) and info.size_multiple == scale
    _same_outputs(net, info)


@pytest.mark.parametrize('filter_type,cat_or_sum,norm,d_arch,num_feat', [
    ('gau', 'cat', 'batch', 'fsd', 32),
    ('gau', 'cat', 'instance', 'fsd', 8),
    ('wavelet', 'cat', 'instance', 'fsd', 16),
    ('wavelet', 'sum', 'batch', 'fsd', 64),
])
def test_dasr_fs_discriminator_detected_from_keys(tmp_path, filter_type, cat_or_sum, norm, d_arch, num_feat):
    torch.manual_seed(4)
    opt = dict(
        num_in_ch=3,
        filter_type=filter_type,
        kernel_size=5,
        cat_or_sum=cat_or_sum,
        norm=norm,
        d_arch=d_arch,
        num_feat=num_feat)
    net = _arch('DASRFSDiscriminator')(**opt)
    info = ckpt.read(_save(tmp_path, 'test.tar', net.state_dict()))
    assert info.family == 'dasr_fsd' and info.purpose == 'discriminator'
    assert info.arch_opt == opt
    _same_outputs(net, info)


def test_dasr_discriminator_ambiguous_filter_needs_metadata_or_argument(tmp_path):
    torch.manual_seed(5)
    net = _arch('DASRFSDiscriminator')(filter_type='avg_pool', norm='batch')
    raw = _save(tmp_path, 'd.tar', net.state_dict())
    with pytest.raises(ValueError, match="avg_pool' or 'rgb'"):
        ckpt.read(raw)
    assert ckpt.read(raw, filter_type='avg_pool').arch_opt['filter_type'] == 'avg_pool'
    assert ckpt.read(raw, filter_type='rgb').arch_opt['filter_type'] == 'rgb'

    # the official DSN training file records fs_type / D_type next to both state dicts
    gen = _arch('DASRDownsampler')(num_feat=8, num_block=1)
    training = _save(
        tmp_path, 'last_iteration.tar', {
            'epoch': 1,
            'iteration': 10,
            'fs_type': 'avg_pool',
            'fs_kernel_size': 5,
            'D_type': 'FSD',
            'model_g_state_dict': gen.state_dict(),
            'models_d_state_dict': net.state_dict()
        })
    assert ckpt.read(training).family == 'dasr_downsampler'
    info = ckpt.read(training, param_key='models_d_state_dict')
    assert info.arch_opt['filter_type'] == 'avg_pool'
    _same_outputs(net, info)

    # srplugins' own DSN bundle (DASRDownsamplerModel.save_dsn_bundle): params_g / params_d + network_g / network_d
    bundle = _save(
        tmp_path, 'dsn_latest.pth', {
            'format': 1,
            'iter': 10,
            'scale': 4,
            'network_g': {
                'type': 'DASRDownsampler',
                'num_feat': 8,
                'num_block': 1
            },
            'network_d': net.config(),
            'params_g': gen.state_dict(),
            'params_d': net.state_dict()
        })
    info = ckpt.read(bundle)  # built from the recorded network_g, not detected
    assert info.family == 'network_opt' and info.arch_type == 'DASRDownsampler' and info.purpose == 'downsampler'
    info = ckpt.read(bundle, param_key='params_d')
    assert info.arch_opt['filter_type'] == 'avg_pool'
    _same_outputs(net, info)
    info = ckpt.read(bundle, purpose='discriminator')  # the same without naming the entry
    assert info.arch_type == 'DASRFSDiscriminator' and info.network_opt == net.config()

    nld = _arch('DASRFSDiscriminator')(filter_type='gau', norm='instance', d_arch='nld_s2')
    path = _save(tmp_path, 'nld.tar', nld.state_dict())
    with pytest.raises(ValueError, match='nld_s1'):
        ckpt.read(path)
    _same_outputs(nld, ckpt.read(path, d_arch='nld_s2'))


def test_dasr_patch_discriminator(tmp_path):
    net = _arch('DASRPatchDiscriminator')(num_in_ch=9, num_feat=8, num_layers=2)
    info = ckpt.read(_save(tmp_path, '1000_D_target.pth', net.state_dict()))
    assert info.family == 'dasr_patch' and info.arch_opt == dict(num_in_ch=9, num_feat=8, num_layers=2)
    _same_outputs(net, info, size=32, in_ch=9)


def test_unet_sn_old_and_parametrized_keys(tmp_path):
    torch.manual_seed(6)
    net = _arch('UNetSNDiscriminator')(num_in_ch=3, num_feat=8)
    state = net.state_dict()
    assert 'conv1.weight_orig' in state
    info = ckpt.read(_save(tmp_path, 'RealESRGAN_x4plus_netD.pth', {'params': state}))
    assert info.family == 'unet_sn' and info.arch_opt == dict(num_in_ch=3, num_feat=8, skip_connection=True)
    _same_outputs(net, info)

    renamed = OrderedDict()
    for key, value in state.items():
        key = re.sub(r'\.weight_orig$', '.parametrizations.weight.original', key)
        key = re.sub(r'\.weight_([uv])$', r'.parametrizations.weight.0._\1', key)
        renamed[key] = value
    info = ckpt.read(_save(tmp_path, 'new_api.pth', renamed))
    assert 'conv1.weight_orig' in info.state_dict
    _same_outputs(net, info)


def test_patchgan_sn_and_srvgg(tmp_path):
    net = _arch('PatchGANDiscriminatorSN')(num_in_ch=3, num_feat=8, num_layers=2)
    info = ckpt.read(_save(tmp_path, 'netD.pth', net.state_dict()))
    assert info.family == 'patchgan_sn' and info.arch_opt == dict(num_in_ch=3, num_feat=8, num_layers=2)
    _same_outputs(net, info, size=32)

    torch.manual_seed(7)
    vgg = ARCH_REGISTRY.get('SRVGGNetCompact_basicsr')(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4)
    info = ckpt.read(_save(tmp_path, 'realesr-general-x4v3.pth', {'params': vgg.state_dict()}))
    assert info.family == 'srvgg_compact' and info.scale == 4
    assert info.arch_opt == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4, act_type='prelu')
    _same_outputs(vgg, info)


@pytest.mark.parametrize('upscale,per_channel', [(4, False), (3, True)])
def test_srgan_generator_and_discriminator(tmp_path, upscale, per_channel):
    torch.manual_seed(8)
    gen = _arch('SRResNet')(num_feat=8, num_block=2, upscale=upscale, per_channel_prelu=per_channel)
    info = ckpt.read(_save(tmp_path, 'srresnet.pth', {'params': gen.state_dict()}))
    expected = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=upscale)
    if per_channel:
        expected['per_channel_prelu'] = True
    assert info.family == 'srresnet' and info.scale == upscale and info.arch_opt == expected
    _same_outputs(gen, info)
    disc = _arch('SRGANDiscriminator')(num_feat=4, input_size=32)
    info = ckpt.read(_save(tmp_path, 'srgan_d.pth', {'params': disc.state_dict()}))
    assert info.family == 'srgan_discriminator' and info.purpose == 'discriminator'
    assert info.arch_opt == dict(num_in_ch=3, num_feat=4, input_size=32)
    _same_outputs(disc, info, size=32)


# ----------------------------------------------------------------------------------------------------------------- #
def test_unknown_layout_lists_expected_and_found_prefixes(tmp_path):
    path = _save(tmp_path, 'mystery.pth', {'encoder.0.weight': torch.zeros(2, 3, 3, 3), 'head.bias': torch.zeros(2)})
    with pytest.raises(ValueError) as err:
        ckpt.read(path)
    text = str(err.value)
    assert 'Found key prefixes: encoder (1), head (1)' in text
    assert 'kair_rrdbnet' in text and 'RRDB_trunk.0.RDB1.conv1.weight' in text and 'AAB_trunk' in text


def test_safe_loading_refuses_arbitrary_pickles_unless_opted_in(tmp_path):
    net = _rrdb(4)
    path = _save(tmp_path, 'with_numpy.pth', {'params': net.state_dict(), 'best_psnr': np.float64(30.0)})
    with pytest.raises(ValueError, match='--unsafe_load'):
        ckpt.read(path)
    assert ckpt.read(path, unsafe_load=True).family == 'basicsr_rrdbnet'
    with pytest.raises(FileNotFoundError):
        ckpt.read(str(tmp_path / 'missing.pth'))


def test_unwrap_nested_and_prefixes():
    sd = OrderedDict([('module.conv.weight', torch.zeros(1))])
    state, meta = ckpt.unwrap({'state_dict': {'params': sd}, 'iter': 3})
    assert list(state) == ['conv.weight'] and meta == {'iter': 3}
    with pytest.raises(ValueError, match='param_key'):
        ckpt.unwrap({'params': sd}, param_key='params_ema')


@pytest.mark.parametrize('name,scale', [('aan_x2.pt', 2), ('aan_x3.pt', 3), ('A2N_SRx4_DIV2K.pth', 4),
                                        ('RealESRGAN_x4plus.pth', 4), ('weights.pt', None), ('model_x2_x3.pt', None),
                                        ('max4.pth', None)])
def test_scale_from_filename(name, scale):
    assert ckpt.scale_from_filename(name) == scale


def test_convert_checkpoint_roundtrip_and_script(tmp_path, capsys):
    net = _a2n(2)
    src = _save(tmp_path, 'aan_x2.pt', net.state_dict())
    dst = str(tmp_path / 'out' / 'A2N.pth')
    script = load_script('convert_checkpoint')
    assert script.main([src, dst]) == 0
    printed = capsys.readouterr().out
    assert 'family: a2n' in printed and 'upscale: 2' in printed and 'strict load: ok' in printed

    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(saved) == {'params', 'network_opt', 'scale', 'srplugins_info'} and saved['scale'] == 2
    assert saved['network_opt'] == dict(
        type='A2N', num_in_ch=3, num_out_ch=3, num_feat=8, num_up_feat=4, num_block=2, upscale=2)
    # BasicSR's own loading path: network_g from the recorded options, strict load of 'params'
    opt = dict(saved['network_opt'])
    rebuilt = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    rebuilt.load_state_dict(saved['params'], strict=True)
    # the converted file no longer needs the scale hint (the name 'A2N.pth' has none)
    info = ckpt.read(dst)
    assert info.scale == 2 and info.family == 'a2n'
    _same_outputs(net, info, size=8)
    # undeterminable scale on the command line -> exit code 2 and the message
    assert script.main([_save(tmp_path, 'plain.pt', net.state_dict()), str(tmp_path / 'x.pth')]) == 2
    assert '--scale' in capsys.readouterr().err


def test_convert_checkpoint_output_option(tmp_path, capsys):
    # README: ``convert_checkpoint.py BSRGAN.pth -o BSRGAN_basicsr.pth``; the positional output keeps working
    from srplugins.checkpoints.bsrgan_keys import basicsr_to_bsrgan
    src = _save(tmp_path, 'BSRGAN.pth', basicsr_to_bsrgan(_rrdb(4).state_dict()))
    script = load_script('convert_checkpoint')
    for argv, name in (([src, '-o'], 'a.pth'), ([src, '--output'], 'b.pth'), ([src], 'c.pth')):
        dst = str(tmp_path / name)
        assert script.main(argv + [dst]) == 0
        assert f'wrote {dst}' in capsys.readouterr().out
        assert set(torch.load(dst, map_location='cpu', weights_only=True)) >= {'params', 'network_opt'}
    same = str(tmp_path / 'd.pth')
    assert script.main([src, same, '-o', same]) == 0
    with pytest.raises(SystemExit) as exit_info:
        script.main([src, str(tmp_path / 'e.pth'), '-o', str(tmp_path / 'f.pth')])
    assert exit_info.value.code == 2 and 'two different outputs' in capsys.readouterr().err
    assert not (tmp_path / 'e.pth').exists() and not (tmp_path / 'f.pth').exists()
