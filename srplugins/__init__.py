# flake8: noqa
"""srplugins: published super-resolution methods as BasicSR 1.4.2 plugins.

Importing this package first applies :mod:`srplugins.compat` (before anything imports basicsr), then imports the
subpackages, whose modules register their classes in basicsr's registries exactly once.
"""
from srplugins import compat

compat.apply_import_fixes()
compat.apply_basicsr_fixes()

from srplugins import archs, data, losses, metrics, models  # noqa: E402  (registration side effects)
from srplugins.version import __version__  # noqa: E402
