"""srplugins-recipes (srplugins/tools/recipes.py): every shipped option file is listed with a description, copy writes
the file unchanged and refuses to overwrite, unknown names are errors that suggest names."""
import os.path as osp
import yaml

from srplugins.tools import recipes
from tests.conftest import REPO_ROOT


def test_every_shipped_option_file_is_a_recipe_with_a_description(capsys):
    found = recipes.all_recipes()
    assert osp.realpath(recipes.RECIPES_DIR) == osp.realpath(osp.join(REPO_ROOT, 'options'))  # options/ links here
    assert {'demo_A2N_x2', 'demo_DASR_DSN_x4', 'train_RealESRGAN_x4plus', 'test_A2N_official_x2'} <= set(found)
    for name, path in found.items():
        text = recipes.describe(path)
        assert 10 < len(text) <= 100, (name, text)
        assert not text.startswith('#')
    assert recipes.main(['list']) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in found)
    assert 'demo/\n' in out and 'train/A2N/\n' in out
    assert recipes.main(['list', '*A2N_x2*']) == 0
    lines = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith('  ')]
    assert lines == ['demo_A2N_x2', 'test_A2N_x2', 'train_A2N_x2']


def test_description_is_the_first_sentence(tmp_path):
    path = tmp_path / 'r.yml'
    path.write_text('# SRGAN x4 (Ledig et al. 2017, Sec. 3.2). Second sentence\n# goes on.\n#   python x\nname: r\n')
    assert recipes.describe(str(path)) == 'SRGAN x4 (Ledig et al. 2017, Sec. 3.2).'
    path.write_text('name: r\n')
    try:
        recipes.describe(str(path))
    except ValueError as err:
        assert 'r.yml' in str(err)
    else:
        raise AssertionError('a recipe without a description must be an error')


def test_copy_writes_the_recipe_and_keeps_an_existing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert recipes.main(['copy', 'demo_A2N_x2']) == 0
    with open(osp.join(REPO_ROOT, 'options', 'demo', 'demo_A2N_x2.yml'), encoding='utf-8') as f:
        original = f.read()
    assert (tmp_path / 'demo_A2N_x2.yml').read_text(encoding='utf-8') == original
    assert yaml.safe_load(original)['datasets']['train']['dataroot_gt'] == 'datasets/demo/train/HR'
    (tmp_path / 'demo_A2N_x2.yml').write_text('edited')
    assert recipes.main(['copy', 'demo_A2N_x2.yml']) == 2
    assert 'already exists' in capsys.readouterr().err
    assert (tmp_path / 'demo_A2N_x2.yml').read_text() == 'edited'
    assert recipes.main(['copy', 'demo_A2N_x2', '--force']) == 0
    assert recipes.main(['copy', 'train_A2N_x2', 'sub/dir']) == 0
    assert (tmp_path / 'sub' / 'dir' / 'train_A2N_x2.yml').is_file()
    assert recipes.main(['copy', 'A2N_x9']) == 2
    assert 'no recipe named' in capsys.readouterr().err
