"""Import every module of a subpackage whose file name ends with a reserved suffix (BasicSR's convention)."""
import importlib
import os
import os.path as osp


def import_suffixed_modules(package_name, package_file, suffix):
    """Import ``<package_name>.<stem>`` for every ``<stem><suffix>`` file beside ``package_file``.

    Modules are imported by their absolute name, so a module is registered once even when a script's folder is on
    ``sys.path`` or a spawned DataLoader worker re-imports the package.

    Args:
        package_name (str): e.g. ``'srplugins.archs'``.
        package_file (str): The package's ``__file__``.
        suffix (str): e.g. ``'_arch.py'``.

    Returns:
        list[module]: The imported modules, sorted by name.
    """
    folder = osp.dirname(osp.abspath(package_file))
    stems = sorted(osp.splitext(name)[0] for name in os.listdir(folder) if name.endswith(suffix))
    return [importlib.import_module(f'{package_name}.{stem}') for stem in stems]
