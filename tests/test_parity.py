"""scripts/parity.py: the parts that need no official code (verdict, key conversion, recipe shrinking, helpers), and
the per-method parity runs against official checkouts named by ``SRPLUGINS_REF_*`` (skipped when unset)."""
import io
import math
import os
import pytest
import re
import torch
from collections import OrderedDict

from tests.conftest import REPO_ROOT, load_script

# the parity runs point the backbone loaders at their random files: undone after each test
pytestmark = pytest.mark.usefixtures('isolate_backbone_env')


@pytest.fixture(scope='module')
def parity():
    return load_script('parity')


def _result(losses, params, dtype='float64'):
    return {'dtype': dtype, 'notes': [], 'iters': [{"losses": los, "params": par} for los, par in zip(losses, params)]}


# ----------------------------------------------------------------------------------------------------------- verdict
def test_verdict_passes_within_tolerances(parity):
    res = _result([{'l_pix': [1.0, 1.0 + 5e-6]}, {'l_pix': [2.0, 2.0]}], [{'net_g': 9e-6}, {'net_g': 0.0}])
    ok, line = parity.verdict('a2n', res)
    assert ok
    assert line.startswith('PARITY A2N: PASS 2 iters, float64')


@pytest.mark.parametrize('losses,params,what', [
    ([{
        'l_pix': [1.0, 1.0 + 2e-5]
    }], [{
        'net_g': 0.0
    }], 'l_pix, iter 1'),
    ([{
        'l_pix': [1.0, 1.0]
    }, {
        'l_pix': [1.0, 1.0]
    }], [{
        'net_g': 0.0
    }, {
        'net_d': 2e-5
    }], 'net_d, iter 2'),
    ([{
        'l_pix': [float('nan'), 1.0]
    }], [{
        'net_g': 0.0
    }], 'l_pix, iter 1'),
    ([{
        'l_pix': [1.0, 1.0]
    }], [{
        'net_g': float('nan')
    }], 'net_g, iter 1'),
])
def test_verdict_fails_and_names_the_worst_figure(parity, losses, params, what):
    ok, line = parity.verdict('bsrgan', _result(losses, params))
    assert not ok
    assert line.startswith('PARITY BSRGAN: FAIL ')
    assert what in line


def test_verdict_fails_on_missing_term_and_on_no_iterations(parity):
    ok, line = parity.verdict('srgan', _result([{'l_g_gan': [None, 0.5]}], [{'net_g': 0.0}]))
    assert not ok and 'missing on one side' in line
    ok, line = parity.verdict('srgan', _result([], []))
    assert not ok and line == 'PARITY SRGAN: FAIL no iterations ran (tolerances: loss 1e-05 relative, params 1e-05 ' \
        'absolute)'


def test_relative_difference_is_symmetric_and_zero_for_equal_zeros(parity):
    assert parity.rel_diff(0.0, 0.0) == 0.0
    assert parity.rel_diff(1.0, 1.1) == pytest.approx(0.1 / 1.1)
    assert parity.rel_diff(1.1, 1.0) == parity.rel_diff(1.0, 1.1)
    assert parity.rel_diff(float('inf'), 1.0) == math.inf


def test_report_prints_every_term_and_ends_with_the_verdict(parity):
    res = _result([{'l_g_pix': [0.5, 0.5], 'l_d_real': [0.7, 0.7]}], [{'net_g': 1e-9, 'net_d': 0.0}])
    res['notes'] = ['a patch']
    out = io.StringIO()
    ok, line = parity.report('realesrgan', res, stream=out)
    text = out.getvalue().splitlines()
    assert ok and text[-1] == line
    assert any('l_g_pix' in t and 'official' in t for t in text)
    assert any('l_d_real' in t for t in text)
    assert any('net_d' in t and 'max |param diff|' in t for t in text)
    assert 'note: a patch' in text


def test_json_conversion_of_tensors_and_non_finite(parity):
    out = parity.to_jsonable({'a': torch.tensor(1.5), 'b': [float('nan'), 2], 'c': (None, True)})
    assert out == {'a': 1.5, 'b': ['nan', 2], 'c': [None, True]}


def test_plot_writes_a_png(parity, tmp_path):
    pytest.importorskip('matplotlib')
    res = _result([{'l_pix': [1.0, 1.0]}, {'l_pix': [0.5, 0.5]}], [{'net_g': 0.0}] * 2)
    res['val_psnr'] = {'ours': 30.0, 'official': 30.0}
    path = tmp_path / 'p.png'
    parity.plot('a2n', res, str(path))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# -------------------------------------------------------------------------------------------------- key conversion
RENAMES = [('RRDB_trunk.', 'body.'), ('.RDB1.', '.rdb1.'), ('trunk_conv.', 'conv_body.')]


def test_convert_keys_both_ways_round_trip(parity):
    official = OrderedDict([('module.conv_first.weight', torch.zeros(1)),
                            ('RRDB_trunk.0.RDB1.conv1.weight', torch.ones(1)), ('trunk_conv.bias', torch.full((1, ),
                                                                                                              2.))])
    ours = parity.convert_keys(official, RENAMES)
    assert list(ours) == ['conv_first.weight', 'body.0.rdb1.conv1.weight', 'conv_body.bias']
    assert ours['conv_body.bias'] is official['trunk_conv.bias']
    back = parity.convert_keys(ours, parity.invert_renames(RENAMES))
    assert list(back) == ['conv_first.weight', 'RRDB_trunk.0.RDB1.conv1.weight', 'trunk_conv.bias']


def test_convert_keys_refuses_collisions(parity):
    with pytest.raises(ValueError, match='two keys'):
        parity.convert_keys({'a.x': 1, 'b.x': 2}, [('a.', 'c.'), ('b.', 'c.')])


def test_max_param_diff_across_layouts(parity):
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 1, 1))
    official = {
        k.replace('0.', 'head.').replace('1.', 'tail.'): v.detach().clone()
        for k, v in ours.state_dict().items()
    }
    renames = [('head.', '0.'), ('tail.', '1.')]
    assert parity.max_param_diff(ours, official, renames) == 0.0
    official['tail.bias'] += 0.25
    assert parity.max_param_diff(ours, official, renames) == pytest.approx(0.25)
    del official['tail.bias']
    assert parity.max_param_diff(ours, official, renames) == math.inf
    # and back: the official layout loads into ours strictly through the conversion
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 1, 1))
    official['tail.bias'] = torch.zeros(1)
    parity.load_converted(fresh, official, renames)
    assert torch.equal(fresh[0].weight, official['head.weight'])


# ---------------------------------------------------------------------------------------------------- recipe shrink
def test_load_recipe_shrinks_only_what_is_asked(parity):
    import yaml
    path = 'options/train/A2N/train_A2N_x2.yml'
    with open(os.path.join(REPO_ROOT, path), encoding='utf-8') as f:
        full = yaml.safe_load(f)
    opt = parity.load_recipe(path, batch=2, patch=48, width=8, overrides={'train.optim_g.lr': 1e-3})
    assert opt['datasets']['train']['batch_size_per_gpu'] == 2
    assert opt['datasets']['train']['gt_size'] == 48
    assert opt['network_g']['num_feat'] == 8
    assert opt['train']['optim_g']['lr'] == 1e-3
    assert opt['shrunk'] == [
        'datasets.train.batch_size_per_gpu: 32 -> 2', 'datasets.train.gt_size: 128 -> 48',
        'network_g.num_feat: 40 -> 8', 'train.optim_g.lr: 0.0005 -> 0.001'
    ]
    for key in ('batch_size_per_gpu', 'gt_size'):
        full['datasets']['train'].pop(key), opt['datasets']['train'].pop(key)
    full['network_g'].pop('num_feat'), opt['network_g'].pop('num_feat')
    full['train']['optim_g'].pop('lr'), opt['train']['optim_g'].pop('lr')
    opt.pop('shrunk')
    assert opt == full  # nothing else changed


def test_load_recipe_errors_name_the_file_and_option(parity):
    with pytest.raises(FileNotFoundError, match='nope.yml'):
        parity.load_recipe('options/nope.yml')
    with pytest.raises(KeyError, match='network_x'):
        parity.load_recipe('options/train/A2N/train_A2N_x2.yml', overrides={'network_x.num_feat': 1})


def test_prepare_opt_is_cpu_single_process_without_pretrained(parity, tmp_path):
    opt = parity.load_recipe('options/train/RealESRGAN/train_RealESRGAN_x4plus.yml')
    opt['path']['pretrain_network_g'] = 'x.pth'
    out = parity.prepare_opt(opt, str(tmp_path))
    assert out['num_gpu'] == 0 and out['dist'] is False and out['is_train'] is True
    assert out['path']['pretrain_network_g'] is None
    assert out['path']['models'].startswith(str(tmp_path))
    assert opt['path']['pretrain_network_g'] == 'x.pth'  # the input is not modified


# ---------------------------------------------------------------------------------------------------------- helpers
def test_random_backbones_are_found_by_torchvision_and_srplugins(parity, tmp_path, monkeypatch):
    import torchvision

    from srplugins.utils.pretrained import resolve_pretrained
    monkeypatch.setenv('SRPLUGINS_PRETRAINED_DIR', '')
    monkeypatch.setenv('TORCH_HOME', '')
    monkeypatch.setattr(torch.hub, '_hub_dir', None)  # an earlier torch.hub.set_dir would hide TORCH_HOME
    paths = parity.write_random_backbones(str(tmp_path), seed=3, archs=('alexnet', ))
    assert resolve_pretrained('alexnet-owt-7be5be79.pth') == paths['alexnet']
    assert 'vgg19' not in paths
    # torchvision's own pretrained loader reads the cached random file (no download)
    net = torchvision.models.alexnet(weights='IMAGENET1K_V1')
    saved = torch.load(paths['alexnet'])
    assert torch.equal(net.features[0].weight, saved['features.0.weight'])
    lin = torch.load(paths['lpips_alex'])
    assert [v.shape[1] for v in lin.values()] == [64, 192, 384, 256, 256]
    assert all((v >= 0).all() for v in lin.values())


def test_batch_sampler_is_aligned_and_reproducible(parity, tmp_path, demo_data):
    data = parity.demo_data(str(tmp_path), demo_data)
    a = parity.BatchSampler(data, 2, 2, 8, seed=1)()
    b = parity.BatchSampler(data, 2, 2, 8, seed=1)()
    assert a[0].shape == (2, 3, 8, 8) and a[1].shape == (2, 3, 16, 16)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # the LR crop is the bicubic downscale of the HR crop: close to the HR crop's 2x2 means
    pooled = torch.nn.functional.avg_pool2d(a[1], 2)
    assert (pooled - a[0]).abs().mean() < 0.05


def test_psnr_y_reference_value(parity):
    hr = torch.zeros(1, 3, 8, 8)
    sr = torch.zeros(1, 3, 8, 8)
    sr[..., 0, 0] = 1.0  # Y differs by (65.481 + 128.553 + 24.966) = 219 at one pixel of 64
    expected = 10 * math.log10(255.**2 / (219.**2 / 64))
    assert parity.psnr_y(sr, hr, 0) == pytest.approx(expected)


# ------------------------------------------------------------------------------------- runs against official code
OFFICIAL = [('a2n', 'SRPLUGINS_REF_A2N'), ('realesrnet', 'SRPLUGINS_REF_REALESRGAN'),
            ('realesrgan', 'SRPLUGINS_REF_REALESRGAN'), ('bsrgan', 'SRPLUGINS_REF_KAIR')]


@pytest.mark.parametrize('name,env', OFFICIAL, ids=[m for m, _ in OFFICIAL])
def test_training_step_matches_the_official_code(parity, name, env, tmp_path):
    ref = os.environ.get(env)
    if not ref:
        pytest.skip(f'{env} is unset: set it to a git clone of the official repository to run the {name} parity')
    result = parity.all_methods()[name](ref, 2, 0, None, str(tmp_path), False)
    ok, line = parity.verdict(name, result)
    assert ok, line
    assert len(result['iters']) == 2 and all(rec['params'] for rec in result['iters'])
    # the networks trained: a comparison of frozen weights would pass trivially
    moved = [float(re.search(r'change over the run (\S+)', n).group(1)) for n in result['notes'] if 'change over' in n]
    assert moved and min(moved) > 0


def test_srgan_step_matches_the_paper_formulas(parity, tmp_path):
    # needs no official code, but writes a 548 MB random VGG19 file and trains VGG-loss GANs: minutes on a busy CPU
    if not os.environ.get('SRPLUGINS_PARITY_SRGAN'):
        pytest.skip('SRPLUGINS_PARITY_SRGAN is unset: set it to 1 to run the srgan parity against the paper formulas')
    result = parity.run_srgan(None, 2, 0, None, str(tmp_path), False, batch=2, gt_size=16)
    ok, line = parity.verdict('srgan', result)
    assert ok, line
    assert set(
        result['iters'][0]['losses']) == {'l_g_percep', 'l_g_gan', 'l_d_real', 'out_d_real', 'l_d_fake', 'out_d_fake'}


# ------------------------------------------------------------------------------------------------ --variant and CLI
def test_every_variant_belongs_to_a_method(parity):
    methods = parity.all_methods()
    assert set(parity.VARIANTS) <= set(methods)
    assert all(parity.VARIANTS[m] for m in parity.VARIANTS)


def test_unknown_variant_is_refused_naming_the_known_ones(parity, capsys):
    assert parity.main(['a2n', '--ref', 'nowhere', '--variant', 'nope']) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and 'recipe_loss_scale' in err
    assert parity.main(['srgan', '--variant', 'recipe_loss_scale']) == 2
    assert 'its variants: none' in capsys.readouterr().err


def test_main_passes_the_variant_and_reports_it(parity, monkeypatch, capsys, tmp_path):
    seen = []

    def fake(ref, iters, seed, data, workdir, curves, **kwargs):
        seen.append(kwargs)
        result = {'dtype': 'float64', 'notes': [], 'iters': []}
        for _ in range(iters):
            rec = parity.new_record()
            rec['losses']['l_pix'] = [1.0, 1.0 + (1e-3 if kwargs.get('variant') else 0.)]
            rec['params']['net_g'] = 0.
            parity.finish_iteration(result, rec, curves)
        return result

    monkeypatch.setitem(parity.METHODS, 'a2n', fake)
    out = tmp_path / 'r.json'
    assert parity.main(['a2n', '--ref', 'x', '--iters', '2', '--json', str(out)]) == 0
    assert seen[-1] == {}  # no variant: the method's own default (the official behaviour)
    assert parity.main(['a2n', '--ref', 'x', '--iters', '2', '--variant', 'recipe_loss_scale', '--json', str(out)]) == 1
    assert seen[-1] == {'variant': 'recipe_loss_scale'}
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[-1].startswith('PARITY A2N: FAIL 2 iters')
    assert any(line.startswith('note: variant recipe_loss_scale:') for line in lines)
    assert 'parity a2n' in captured.err  # the progress bar
    import json
    saved = json.loads(out.read_text())
    assert saved['variant'] == 'recipe_loss_scale' and saved['passed'] is False


def test_a2n_recipe_loss_scale_variant_is_a_measured_difference(parity, tmp_path):
    ref = os.environ.get('SRPLUGINS_REF_A2N')
    if not ref:
        pytest.skip('SRPLUGINS_REF_A2N is unset: set it to a git clone of haoyuc/A2N to run the a2n variant')
    result = parity.run_a2n(ref, 2, 0, None, str(tmp_path), False, variant='recipe_loss_scale')
    first = result['iters'][0]
    # same start: our [0, 1] loss reported x255 equals the official 0..255 loss before any step
    assert parity.rel_diff(*first['losses']['l_pix']) < 1e-12
    # but Adam's eps makes the [0, 1] scale train differently: the variant is not a no-op
    assert first['params']['net_g'] > 1e-5
    assert not parity.verdict('a2n', result)[0]


def test_batch_option_reaches_methods_that_take_it_and_is_refused_elsewhere(parity, monkeypatch, capsys):
    seen = []

    def with_batch(ref, iters, seed, data, workdir, curves, batch=2):
        seen.append(batch)
        rec = parity.new_record()
        rec['losses']['l'] = [1.0, 1.0]
        rec['params']['net_g'] = 0.
        return {'dtype': 'float64', 'notes': [], 'iters': [rec]}

    def without_batch(ref, iters, seed, data, workdir, curves):
        raise AssertionError('must not run')

    monkeypatch.setitem(parity.METHODS, 'a2n', with_batch)
    monkeypatch.setitem(parity.METHODS, 'realesrnet', without_batch)
    assert parity.main(['a2n', '--ref', 'x', '--iters', '1', '--batch', '1']) == 0 and seen == [1]
    assert parity.main(['realesrnet', '--ref', 'x', '--batch', '1']) == 2
    assert parity.main(['a2n', '--ref', 'x', '--batch', '0']) == 2
    assert '--batch' in capsys.readouterr().err
