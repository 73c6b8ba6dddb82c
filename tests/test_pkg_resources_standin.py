"""The test-only pkg_resources stand-in for pytorch_wavelets (tests/pkg_resources_standin.py)."""
import importlib.util
import pytest

from tests import pkg_resources_standin
from tests.conftest import REPO_ROOT
from tests.test_compat import _last_json, _run_python

# a stand-in for pytorch_wavelets: its coeffs module reads a data file with pkg_resources at import, as
# pytorch_wavelets/dtcwt/coeffs.py does
_FAKE_WAVELETS = (
    ('pytorch_wavelets/__init__.py', 'from pytorch_wavelets.coeffs import DATA\n'),
    ('pytorch_wavelets/coeffs.py', 'from pkg_resources import resource_stream\n'
     "DATA = resource_stream('pytorch_wavelets', 'data.txt').read()\n"),
    ('pytorch_wavelets/data.txt', 'filter taps'),
)


def _pkg_resources_probe(tmp_path, real_pkg_resources):
    """Install the stand-in, import pkg_resources alone, then (a fake) pytorch_wavelets that needs pkg_resources."""
    for rel, text in _FAKE_WAVELETS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if real_pkg_resources:
        (tmp_path / 'pkg_resources.py').write_text('REAL = True\n'
                                                   'def resource_stream(package, resource):\n'
                                                   '    import io\n'
                                                   "    return io.BytesIO(b'from the real pkg_resources')\n")
    return _last_json(
        _run_python(f"""
        import importlib.machinery, json, sys
        REPO_ROOT = {REPO_ROOT!r}
        sys.path.insert(0, {str(tmp_path)!r})
        # setuptools >= 81: whatever setuptools is installed here, its pkg_resources is not found
        path_finder = importlib.machinery.PathFinder.find_spec
        def find_spec(name, path=None, target=None):
            if name == 'pkg_resources' and {not real_pkg_resources!r}:
                return None
            return path_finder(name, path, target)
        importlib.machinery.PathFinder.find_spec = staticmethod(find_spec)
        sys.path.insert(0, REPO_ROOT)
        from tests import pkg_resources_standin
        pkg_resources_standin.install()
        out = {{'in_sys_modules': 'pkg_resources' in sys.modules}}
        try:
            import pkg_resources  # noqa: F401  (not pytorch_wavelets: must fail as it would without srplugins)
            out['alone'] = 'ok'
        except ModuleNotFoundError as error:
            out['alone'] = str(error)
        sys.modules.pop('pkg_resources', None)
        import pytorch_wavelets
        out['data'] = pytorch_wavelets.DATA.decode()
        out['stand_in'] = (sys.modules['pkg_resources'].__doc__ or '').startswith('srplugins stand-in')
        print(json.dumps(out))
        """))


def test_pkg_resources_stand_in_only_when_pytorch_wavelets_needs_it(tmp_path):
    """No real pkg_resources (setuptools >= 81): served to pytorch_wavelets only, nothing made at install."""
    result = _pkg_resources_probe(tmp_path, real_pkg_resources=False)
    assert result['in_sys_modules'] is False
    assert 'pkg_resources' in result['alone']
    assert result['data'] == 'filter taps'
    assert result['stand_in'] is True


def test_pkg_resources_stand_in_never_shadows_the_real_one(tmp_path):
    result = _pkg_resources_probe(tmp_path, real_pkg_resources=True)
    assert result['alone'] == 'ok'
    assert result['data'] == 'from the real pkg_resources'
    assert result['stand_in'] is False


def test_pkg_resources_stand_in_with_installed_pytorch_wavelets():
    """The real pytorch_wavelets imports and works through the stand-in when pkg_resources is missing."""
    if importlib.util.find_spec('pytorch_wavelets') is None:
        pytest.skip('pytorch_wavelets is not installed (extra [wavelets])')
    result = _last_json(
        _run_python(f"""
        import importlib.machinery, json, sys
        REPO_ROOT = {REPO_ROOT!r}
        path_finder = importlib.machinery.PathFinder.find_spec
        def find_spec(name, path=None, target=None):
            return None if name == 'pkg_resources' else path_finder(name, path, target)
        importlib.machinery.PathFinder.find_spec = staticmethod(find_spec)
        try:
            import pytorch_wavelets  # noqa
            plain = 'ok'
        except ModuleNotFoundError as error:
            plain = str(error)
        for name in [m for m in sys.modules if m.startswith('pytorch_wavelets')]:
            del sys.modules[name]
        sys.path.insert(0, REPO_ROOT)
        from tests import pkg_resources_standin
        pkg_resources_standin.install()
        from pytorch_wavelets import DWTForward
        import torch
        low, high = DWTForward(J=1, wave='haar', mode='reflect')(torch.rand(1, 1, 4, 4))
        stand_in = (sys.modules['pkg_resources'].__doc__ or '').startswith('srplugins stand-in')
        print(json.dumps({{'plain': plain, 'stand_in': stand_in, 'low': list(low.shape)}}))
        """))
    assert 'pkg_resources' in result['plain']
    assert result['stand_in'] is True
    assert result['low'] == [1, 1, 2, 2]
    assert pkg_resources_standin.install() is False  # idempotent: conftest added it already
