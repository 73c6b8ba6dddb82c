"""scripts/parity_dasr.py: key conversion, official-argparse extraction, recipe -> official flags (CI, no official
code) and, with ``SRPLUGINS_REF_DASR`` pointing at a checkout of ShuhangGu/DASR, one parity iteration per stage."""
import os
import pytest
import torch

import srplugins  # noqa: F401

# isort: split
from basicsr.archs.rrdbnet_arch import RRDBNet

from srplugins.checkpoints import detect
from tests.conftest import REPO_ROOT, load_script

# the parity runs point the backbone loaders at their random files: undone after each test
pytestmark = pytest.mark.usefixtures('isolate_backbone_env')

REF_ENV = 'SRPLUGINS_REF_DASR'


@pytest.fixture(scope='module')
def pd():
    return load_script('parity_dasr')


def _small_rrdb(seed=0):
    torch.manual_seed(seed)
    return RRDBNet(3, 3, num_feat=8, num_block=2, num_grow_ch=4, scale=4)


def test_rrdb_basicsr_to_official_uses_the_official_layout(pd):
    official = pd.rrdb_basicsr_to_official(_small_rrdb().state_dict())
    # official SRN Sequential: 0 conv, 1 ShortcutBlock(sub: RRDBs + trunk conv), 3 / 6 upconvs, 8 HR conv, 10 last
    assert 'model.0.weight' in official and 'model.10.bias' in official
    assert 'model.1.sub.1.RDB3.conv5.0.weight' in official
    assert 'model.1.sub.2.weight' in official  # trunk conv after 2 blocks
    assert {k.split('.')[1] for k in official if not k.startswith('model.1.')} == {'0', '3', '6', '8', '10'}
    assert len(official) == len(_small_rrdb().state_dict())


def test_rrdb_conversion_round_trip_and_agrees_with_the_checkpoint_converter(pd):
    state = _small_rrdb().state_dict()
    official = pd.rrdb_basicsr_to_official(state)
    back = pd.rrdb_official_to_basicsr(official)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    # srplugins' own old-ESRGAN converter (an independent implementation) gives the same names and tensors
    info = detect(official)
    assert info.arch_type == 'RRDBNet'
    assert set(info.state_dict) == set(back)
    assert all(torch.equal(info.state_dict[k], back[k]) for k in back)


def test_rrdb_conversion_errors_name_the_problem(pd):
    with pytest.raises(ValueError, match='old-ESRGAN'):
        pd.rrdb_official_to_basicsr({'conv_first.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='basicsr x4 RRDBNet'):
        pd.rrdb_basicsr_to_official({'model.0.weight': torch.zeros(1)})


def test_max_abs_diff(pd):
    a = {'w': torch.zeros(2, 2), 'n': torch.tensor(3)}
    b = {'w': torch.tensor([[0., 0.], [0., -0.25]]), 'n': torch.tensor(5)}
    assert pd.max_abs_diff(a, b) == 0.25  # integer buffers (e.g. num_batches_tracked) are not parameters
    with pytest.raises(ValueError, match='differ in keys'):
        pd.max_abs_diff(a, {'v': torch.zeros(2, 2)})
    with pytest.raises(ValueError, match='shape'):
        pd.max_abs_diff(a, {'w': torch.zeros(3)})


FAKE_TRAIN_PY = '''
import argparse
import data_loader  # never executed: only the parser block is
parser = argparse.ArgumentParser(description='x')
parser.add_argument('--filter', default='gau', type=str)
parser.add_argument('--w_tex', default=0.005, type=float)
parser.add_argument('--no_per_loss', dest='use_per_loss', action='store_false')
opt = parser.parse_args()
raise SystemExit('the loop must not run')
'''


def test_official_dsn_parser_runs_only_the_argparse_block(pd):
    parser = pd.official_dsn_parser(FAKE_TRAIN_PY)
    opt = parser.parse_args(['--filter', 'wavelet'])
    assert (opt.filter, opt.w_tex, opt.use_per_loss) == ('wavelet', 0.005, True)
    with pytest.raises(ValueError, match='ArgumentParser'):
        pd.official_dsn_parser('x = 1\n')


def test_dsn_flags_from_the_shipped_recipe(pd):
    import yaml
    with open(os.path.join(REPO_ROOT, pd.DSN_RECIPE)) as f:
        recipe = yaml.safe_load(f)
    flags = pd.dsn_flags_from_recipe(recipe, batch_size=2, crop_size=128)
    pairs = dict(zip(flags[0::2], flags[1::2]))
    # the official README command and the recipe's loss weights / optimiser
    assert pairs['--generator'] == 'DeResnet' and pairs['--discriminator'] == 'FSD'
    assert pairs['--norm_layer'] == 'Instance' and pairs['--filter'] == 'wavelet' and pairs['--cat_or_sum'] == 'cat'
    assert (pairs['--batch_size'], pairs['--crop_size']) == ('2', '128')
    assert float(pairs['--w_col']) == 1.0 and float(pairs['--w_per']) == 0.01 and float(pairs['--w_tex']) == 0.005
    assert float(pairs['--learning_rate']) == 1e-4 and float(pairs['--adam_beta_1']) == 0.5


def _ref():
    ref = os.environ.get(REF_ENV)
    if not ref:
        pytest.skip(f'{REF_ENV} not set (path of a git clone of github.com/ShuhangGu/DASR)')
    return ref


@pytest.mark.parametrize('method', ['dasr_dsn', 'dasr_sr'])
def test_one_parity_iteration_against_the_official_code(pd, method, tmp_path):
    ref = _ref()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    result = pd.METHODS[method](ref, 1, 0, None, str(tmp_path), False)
    assert result['dtype'] == 'float64'
    (rec, ) = result['iters']
    for term, (ours, official) in rec['losses'].items():
        assert abs(ours - official) <= 1e-5 * max(abs(ours), abs(official)), term
    assert rec['params'] and all(diff <= 1e-5 for diff in rec['params'].values()), rec['params']
    assert any('largest parameter change' in n for n in result['notes'])  # both sides trained
