"""Test-only ``pkg_resources`` stand-in for ``pytorch_wavelets`` (reference implementation in the DASR tests).

pytorch_wavelets' ``dtcwt/coeffs.py`` does ``from pkg_resources import resource_stream`` at import, which fails with
setuptools >= 81. No shipped srplugins code imports pytorch_wavelets (the Haar DWT is ``srplugins.ops.frequency``), so
this fix lives with the tests that compare against it: ``tests/conftest.py`` calls :func:`install`.
"""
import importlib.abc
import importlib.util
import sys


def _importing_pytorch_wavelets():
    return any(name == 'pytorch_wavelets' or name.startswith('pytorch_wavelets.') for name in list(sys.modules))


class _PkgResourcesStandInLoader(importlib.abc.Loader):
    """Makes the ``pkg_resources`` stand-in: only ``resource_stream``, what pytorch_wavelets uses."""

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        import importlib.resources as resources

        def resource_stream(package, resource):
            return resources.files(package).joinpath(resource).open('rb')

        module.__doc__ = 'srplugins stand-in: only resource_stream, for pytorch_wavelets on setuptools >= 81.'
        module.resource_stream = resource_stream


class PkgResourcesStandInFinder(importlib.abc.MetaPathFinder):
    """Last entry of ``sys.meta_path``: serves the ``pkg_resources`` stand-in while pytorch_wavelets is imported.

    Being last, it is asked only after every real finder failed, i.e. only when setuptools no longer provides
    ``pkg_resources``; and it answers only while a ``pytorch_wavelets`` module is being (or has been) imported, so any
    other ``import pkg_resources`` still fails as it would without srplugins.
    """

    def find_spec(self, name, path=None, target=None):
        if name != 'pkg_resources' or not _importing_pytorch_wavelets():
            return None
        return importlib.util.spec_from_loader(name, _PkgResourcesStandInLoader(), origin='srplugins stand-in')


def install():
    """Provide ``pkg_resources.resource_stream`` to ``pytorch_wavelets`` when setuptools >= 81 removed it.

    pytorch_wavelets' ``dtcwt/coeffs.py`` does ``from pkg_resources import resource_stream`` at import. Nothing is
    created here: a :class:`PkgResourcesStandInFinder` is appended to ``sys.meta_path``, and the stand-in module exists
    only once pytorch_wavelets is actually imported and no real ``pkg_resources`` is found. Returns True when the
    finder was added (False when it already was: idempotent).
    """
    if any(isinstance(finder, PkgResourcesStandInFinder) for finder in sys.meta_path):
        return False
    sys.meta_path.append(PkgResourcesStandInFinder())
    return True
