"""Every plugin name resolves to the plugin's own class, and every `type` named in options/ is registered."""
import glob
import os.path as osp
import pytest
import yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

import srplugins  # noqa: F401
from tests.conftest import REPO_ROOT

REGISTRIES = {
    'arch': ARCH_REGISTRY,
    'dataset': DATASET_REGISTRY,
    'loss': LOSS_REGISTRY,
    'metric': METRIC_REGISTRY,
    'model': MODEL_REGISTRY
}


def _plugin_entries():
    for kind, registry in REGISTRIES.items():
        for name, obj in registry._obj_map.items():
            if getattr(obj, '__module__', '').startswith('srplugins.'):
                yield kind, name, obj


def test_plugin_names_resolve_to_plugin_classes():
    """basicsr's ``Registry.get`` falls back to ``<name>_basicsr``: make sure every plugin name gets the plugin."""
    entries = list(_plugin_entries())
    for kind, name, obj in entries:
        assert REGISTRIES[kind].get(name) is obj, (kind, name)
        assert not name.endswith('_basicsr'), name
        module = obj.__module__
        suffix = {'arch': '_arch', 'dataset': '_dataset', 'loss': '_loss', 'metric': '_metric', 'model': '_model'}
        assert module.split('.')[1] == {
            'arch': 'archs',
            'dataset': 'data',
            'loss': 'losses',
            'metric': 'metrics',
            'model': 'models'
        }[kind], (name, module)
        assert module.endswith(suffix[kind]), (name, module)


def test_registration_happens_once_per_module():
    """Re-running the auto-import (as a spawned worker's re-import would) does not register twice."""
    from srplugins import archs, data, losses, metrics, models
    from srplugins.utils.autoimport import import_suffixed_modules
    for package, suffix in ((archs, '_arch.py'), (data, '_dataset.py'), (losses, '_loss.py'), (metrics, '_metric.py'),
                            (models, '_model.py')):
        assert import_suffixed_modules(package.__name__, package.__file__, suffix) == package._modules


def _types_in_options(opt):
    """(registry kind, type name, key path) for every registry-resolved `type` of an option dict."""
    found = []
    if opt.get('model_type'):
        found.append(('model', opt['model_type'], 'model_type'))
    for phase, dataset in (opt.get('datasets') or {}).items():
        if isinstance(dataset, dict) and dataset.get('type'):
            found.append(('dataset', dataset['type'], f'datasets.{phase}.type'))
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict) and value.get('type'):
            found.append(('arch', value['type'], f'{key}.type'))
    for key, value in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(value, dict) and value.get('type'):
            found.append(('loss', value['type'], f'train.{key}.type'))
    for key, value in ((opt.get('val') or {}).get('metrics') or {}).items():
        if isinstance(value, dict) and value.get('type'):
            found.append(('metric', value['type'], f'val.metrics.{key}.type'))
    return found


OPTION_FILES = sorted(glob.glob(osp.join(REPO_ROOT, 'options', '**', '*.yml'), recursive=True))


@pytest.mark.parametrize('path', OPTION_FILES, ids=[osp.relpath(p, REPO_ROOT) for p in OPTION_FILES])
def test_option_file_types_are_registered(path):
    with open(path, encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    assert isinstance(opt, dict) and opt.get('name'), path
    for kind, name, where in _types_in_options(opt):
        registry = REGISTRIES[kind]
        assert name in registry, f'{osp.relpath(path, REPO_ROOT)}: {where} = {name} is not registered in {kind}'
