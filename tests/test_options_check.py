"""Option checks of the entry points (srplugins.utils.options_check) and srplugins' --force_yml."""
import copy
import pytest
import warnings

from srplugins.utils.entry import apply_force_yml
from srplugins.utils.options_check import OptionError, check_options
from tests.conftest import load_option

DEMO = load_option('options/demo/demo_A2N_x2.yml')


def _demo(**changes):
    opt = copy.deepcopy(DEMO)
    for dotted, value in changes.items():
        node = opt
        keys = dotted.split('__')
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return opt


def _unknown_warnings(opt, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        check_options(opt, **kwargs)
    return [str(w.message) for w in caught if 'unknown option key' in str(w.message)]


@pytest.mark.slow
def test_every_shipped_demo_option_is_clean():
    import glob
    import os.path as osp

    from tests.conftest import REPO_ROOT
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'options', '**', '*.yml'), recursive=True)):
        opt = load_option(path)
        is_train = '/test/' not in path
        assert _unknown_warnings(opt, is_train=is_train) == [], path


def test_misspelled_optional_key_warns_with_the_closest_key():
    messages = _unknown_warnings(_demo(train__ema_decy=0.999))
    assert len(messages) == 1 and 'train.ema_decy (did you mean ema_decay?)' in messages[0]


@pytest.mark.parametrize('section, key, close', [
    ('network_g', 'num_blok', 'num_block'),
    ('datasets__train', 'use_hflp', 'use_hflip'),
    ('val', 'val_frq', 'val_freq'),
    ('train__optim_g', 'weight_decy', 'weight_decay'),
    ('train__pixel_opt', 'loss_wieght', 'loss_weight'),
])
def test_unknown_keys_in_each_section(section, key, close):
    messages = _unknown_warnings(_demo(**{f'{section}__{key}': 1}))
    assert any(f'{key} (did you mean {close}?)' in m for m in messages), messages


def test_strict_options_makes_unknown_keys_errors():
    with pytest.raises(OptionError, match=r'train\.ema_decy \(did you mean ema_decay\?\)'):
        check_options(_demo(train__ema_decy=0.999), strict=True)


def test_new_options_of_the_plugin_are_known():
    opt = _demo()
    opt['train'].update(
        amp='bf16', channels_last=True, compile=False, grad_clip=1.0, accum_iter=2, nonfinite='skip', max_skips=3)
    opt['val'].update(distributed=True, self_ensemble=True, tile=64, tile_pad=8, bicubic_baseline=False)
    opt['datasets']['train'].update(color='gray')
    opt['dist_params']['timeout'] = 300
    assert _unknown_warnings(opt) == []


def test_numbers_written_as_strings_are_converted():
    opt = _demo(train__optim_g__lr='1e-4')
    opt['train']['scheduler']['eta_min'] = '1E-7'
    check_options(opt)
    assert opt['train']['optim_g']['lr'] == 1e-4 and opt['train']['scheduler']['eta_min'] == 1e-7
    assert opt['datasets']['train']['filename_tmpl'] == '{}'


@pytest.mark.parametrize('changes, pattern', [
    ({
        'scale': 9
    }, r'option scale must be <= 8'),
    ({
        'scale': 0
    }, r'option scale must be >= 1'),
    ({
        'train__optim_g__lr': 0
    }, r'option train\.optim_g\.lr must be > 0'),
    ({
        'train__optim_g__lr': 'fast'
    }, r'option train\.optim_g\.lr must be a number'),
    ({
        'datasets__train__gt_size': 65
    }, r'datasets\.train\.gt_size = 65 is not divisible by scale = 2'),
    ({
        'datasets__train__sinc_prob': 1.5
    }, r'option datasets\.train\.sinc_prob must be <= 1'),
    ({
        'dist_params__timeout': -1
    }, r'option dist_params\.timeout must be > 0'),
])
def test_values_out_of_their_domain_name_the_option(changes, pattern):
    with pytest.raises(OptionError, match=pattern):
        check_options(_demo(**changes))


def test_misspelled_required_key_is_not_a_bare_key_error():
    opt = _demo()
    opt['train']['total_iters'] = opt['train'].pop('total_iter')
    with pytest.raises(OptionError, match=r'required option train\.total_iter is missing; found train\.total_iters'):
        check_options(opt)
    opt = _demo()
    opt['datasets']['train']['batch_size'] = opt['datasets']['train'].pop('batch_size_per_gpu')
    with pytest.raises(OptionError, match=r'datasets\.train\.batch_size_per_gpu is missing'):
        check_options(opt)


def test_force_yml_removes_a_key_and_sets_nested_values():
    opt = {'datasets': {'test_1': {'name': 'Set5'}, 'test_2': {'name': 'Set14'}}, 'train': {'ema_decay': 0.9}}
    apply_force_yml(opt, ['datasets:test_2=~', 'train:ema_decay=0.999', 'train:optim_g=none'])
    assert opt == {'datasets': {'test_1': {'name': 'Set5'}}, 'train': {'ema_decay': 0.999}}
    apply_force_yml(opt, ['datasets:test_1:name=a=b'])
    assert opt['datasets']['test_1']['name'] == 'a=b'
    with pytest.raises(ValueError, match=r'--force_yml nope:x=1: option nope does not exist'):
        apply_force_yml(opt, ['nope:x=1'])
