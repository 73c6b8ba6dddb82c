"""Option-file checks of srplugins' entry points: unknown keys, numbers written as strings, value domains.

basicsr reads options with ``opt.get(key)`` and ``opt[key]``: a misspelled optional key is silently ignored
(``ema_decy: 0.999`` trains without EMA), a misspelled required one is a bare ``KeyError``, and ``lr: 1e-4`` (no
``!!float``: YAML 1.1 reads it as a string) crashes inside torch. :func:`check_options` runs on the parsed options
before anything is built:

* **Known keys** per section are derived from the code that reads them: the ``__init__`` signature of the registered
  network / loss / optimizer / scheduler class and of the metric function named by ``type``; the option names read in
  the source of the dataset and model classes (their whole MRO: ``opt['key']``, ``opt.get('key')``,
  ``train_opt['key']`` ...); basicsr's own keys; plus :data:`ALLOWED`, the one place to add options that are read
  elsewhere (e.g. options of srplugins' training wrappers). An unknown key is a warning naming it and the closest known
  key (``train.ema_decy`` -> ``ema_decay``); ``--strict_options`` makes it an error.
* **Numbers as strings** in exponent form (``1e-4``) become floats.
* **Domains**: ``scale`` 1-8, learning rates > 0, ``*_prob`` in [0, 1], ``gt_size`` divisible by ``scale``, required
  keys present (a ValueError naming the key and the closest present key, not a bare KeyError).
  ``batch_size_per_gpu`` larger than the dataset is checked once the dataset exists (:func:`check_train_loader`).
"""
import difflib
import inspect
import re
import warnings

# Keys accepted in addition to those derived from code, per section ('datasets' = any dataset entry). Extend here.
ALLOWED = {
    'top': {
        'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'num_threads', 'datasets', 'path', 'train', 'val',
        'logger', 'dist_params', 'find_unused_parameters', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume',
        'root_path'
    },
    'datasets': {
        'name',
        'type',
        'phase',
        'scale',
        'num_worker_per_gpu',
        'batch_size_per_gpu',
        'dataset_enlarge_ratio',
        'prefetch_mode',
        'pin_memory',
        'persistent_workers',
        'io_backend',
        'color',
        'degrade_on',
        'filename_tmpl',
        'dataroot_gt',
        'dataroot_lq',
        'meta_info_file',
        'meta_info',
        'gt_size',
        'use_hflip',
        'use_rot',
        'use_flip',
        'use_shuffle',  # in basicsr's example options; unused since its samplers (kept: harmless)
        # Real-ESRGAN degradation settings, read as opt.get(name + suffix) by RealESRGANGTDataset
        *(f'{name}{suffix}' for name in ('blur_kernel_size', 'kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range',
                                         'betap_range', 'sinc_prob') for suffix in ('', '2')),
    },
    'train': {
        'total_iter', 'warmup_iter', 'ema_decay', 'scheduler', 'net_d_iters', 'net_d_init_iters', 'net_d_iter', 'amp',
        'channels_last', 'compile', 'grad_clip', 'accum_iter', 'nonfinite', 'max_skips'
    },
    'val': {
        'val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'distributed', 'self_ensemble', 'tile', 'tile_pad',
        'bicubic_baseline'
    },
    'path': {
        'resume_state', 'ignore_resume_networks', 'experiments_root', 'models', 'training_states', 'log',
        'visualization', 'results_root'
    },
    'logger': {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'},
    'wandb': {'project', 'resume_id', 'entity', 'name'},
    'dist_params': {'backend', 'port', 'timeout'},
    'io_backend': {'type', 'db_paths', 'client_keys'},
}
# path.<prefix>_<network>: pretrain_network_g, strict_load_d, param_key_g ...
_PATH_PREFIXES = ('pretrain_network_', 'strict_load_', 'param_key_')

_EXPONENT_NUMBER = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$')
# opt['key'], opt.get('key', ...), and helpers called as f(opt, 'key', ...)
_READ_KEY = re.compile(r"""(?:\[|\.get\(|\.pop\(|\.setdefault\(|\(\s*(?:self\.)?\w*opt\s*,)\s*['"]([A-Za-z_]\w*)['"]""")


class OptionError(ValueError):
    """An option value or key that cannot be used; the message names the option."""


def _closest(key, known):
    match = difflib.get_close_matches(str(key), sorted(str(k) for k in known), n=1, cutoff=0.6)
    return match[0] if match else None


def _source_keys(cls):
    """Option names read in the source of ``cls`` and its bases (string subscripts and ``get`` calls)."""
    keys = set()
    for klass in inspect.getmro(cls):
        if klass is object or klass.__module__.startswith('torch'):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        keys.update(_READ_KEY.findall(source))
    return keys


def _signature_keys(obj, skip=('self', )):
    """(named parameters, accepts **kwargs) of a class's ``__init__`` or of a function."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None, True
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in skip}
    return names, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _registry_get(registry, name):
    try:
        return registry.get(name)
    except KeyError:
        return None


class _Checker:

    def __init__(self, strict):
        self.strict = strict
        self.unknown = []

    def unknown_keys(self, section, mapping, known):
        for key in mapping:
            if key in known:
                continue
            close = _closest(key, known)
            hint = f' (did you mean {close}?)' if close else ''
            self.unknown.append(f'{section}.{key}{hint}'.lstrip('.'))

    def report(self):
        if not self.unknown:
            return
        listing = '; '.join(self.unknown)
        if self.strict:
            raise OptionError(f'unknown option key(s): {listing}. Remove or correct them (--strict_options is set).')
        for item in self.unknown:
            warnings.warn(
                f'unknown option key {item}: it is not read by basicsr or the classes named in the option '
                'file and has no effect (--strict_options makes this an error).',
                stacklevel=3)
            print(f'WARNING: unknown option key {item}: it has no effect.', flush=True)


def convert_number_strings(node, where=''):
    """Replace strings such as ``'1e-4'`` (YAML 1.1 reads exponent numbers without a dot as strings) by floats."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
            node[key] = float(value)
        elif isinstance(value, (dict, list)):
            convert_number_strings(value, f'{where}.{key}')


def require(mapping, key, section):
    """``mapping[key]`` or an OptionError naming ``section.key`` and the closest key present."""
    if not isinstance(mapping, dict) or key not in mapping or (mapping[key] is None and key != 'val'):
        present = list(mapping) if isinstance(mapping, dict) else []
        close = _closest(key, present)
        hint = f'; found {section + "." if section else ""}{close}: is it misspelled?' if close else ''
        raise OptionError(f'required option {section + "." if section else ""}{key} is missing{hint}')
    return mapping[key]


def _number(value, option, low=None, high=None, low_open=False, integer=False):
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())  # !!float 5e3 is usual
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not integral):
        kind = 'an integer' if integer else 'a number'
        raise OptionError(f'option {option} must be {kind}, got {value!r}')
    if low is not None and (value <= low if low_open else value < low):
        raise OptionError(f'option {option} must be {">" if low_open else ">="} {low}, got {value!r}')
    if high is not None and value > high:
        raise OptionError(f'option {option} must be <= {high}, got {value!r}')


def _check_probabilities(node, where):
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        option = f'{where}.{key}'.lstrip('.')
        if isinstance(value, dict) and key not in ('network_g', 'network_d'):
            _check_probabilities(value, option)
        elif re.search(r'(^|_)prob\d*$', str(key)) and value is not None:
            for v in (value if isinstance(value, list) else [value]):
                _number(v, option, 0, 1)


def check_options(opt, is_train=True, strict=False):
    """Check (and normalise in place) parsed options; see the module docstring. Returns ``opt``."""
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    convert_number_strings(opt)
    checker = _Checker(strict)
    require(opt, 'name', '')
    model_type = require(opt, 'model_type', '')
    datasets = require(opt, 'datasets', '')
    require(opt, 'path', '')
    require(opt, 'num_gpu', '')
    model_cls = _registry_get(MODEL_REGISTRY, model_type)
    model_keys = _source_keys(model_cls) if model_cls is not None else set()

    if 'scale' in opt:
        _number(opt['scale'], 'scale', 1, 8, integer=True)

    # top level: basicsr's keys, network_* and the model's own top-level reads (e.g. Real-ESRGAN's degradations)
    top_known = ALLOWED['top'] | model_keys | {k for k in opt if str(k).startswith('network_')}
    checker.unknown_keys('', opt, top_known)

    for phase, dataset in datasets.items():
        where = f'datasets.{phase}'
        if not isinstance(dataset, dict):
            raise OptionError(f'option {where} must be a mapping (a dataset entry), got {dataset!r}')
        dtype = require(dataset, 'type', where)
        cls = _registry_get(DATASET_REGISTRY, dtype)
        if cls is None:
            raise OptionError(f'option {where}.type: no dataset registered as {dtype!r}')
        checker.unknown_keys(where, dataset, ALLOWED['datasets'] | _source_keys(cls) | model_keys)
        if isinstance(dataset.get('io_backend'), dict):
            checker.unknown_keys(f'{where}.io_backend', dataset['io_backend'], ALLOWED['io_backend'])
        if str(phase).split('_')[0] == 'train' and is_train:
            for key in ('batch_size_per_gpu', 'num_worker_per_gpu'):
                require(dataset, key, where)
            _number(dataset['batch_size_per_gpu'], f'{where}.batch_size_per_gpu', 1, integer=True)
            _number(dataset.get('dataset_enlarge_ratio', 1), f'{where}.dataset_enlarge_ratio', 1)
            gt_size, scale = dataset.get('gt_size'), opt.get('scale')
            if gt_size is not None and isinstance(scale, int) and scale > 0:
                _number(gt_size, f'{where}.gt_size', 1, integer=True)
                if gt_size % scale:
                    raise OptionError(f'option {where}.gt_size = {gt_size} is not divisible by scale = {scale}: the '
                                      f'LQ patch would be {gt_size / scale:g} pixels; use a multiple of {scale}.')

    for key, net in opt.items():
        if not str(key).startswith('network_') or not isinstance(net, dict):
            continue
        cls = _registry_get(ARCH_REGISTRY, require(net, 'type', key))
        if cls is None:
            raise OptionError(f'option {key}.type: no network registered as {net["type"]!r}')
        names, var_kw = _signature_keys(cls)
        if names is not None and not var_kw:
            checker.unknown_keys(key, net, names | {'type'})

    path = opt['path'] or {}
    checker.unknown_keys('path', {
        k: v
        for k, v in path.items() if not str(k).startswith(_PATH_PREFIXES)
    }, ALLOWED['path'])

    if is_train:
        train = require(opt, 'train', '')
        _number(require(train, 'total_iter', 'train'), 'train.total_iter', 1)
        logger_opt = require(opt, 'logger', '')
        _number(require(logger_opt, 'print_freq', 'logger'), 'logger.print_freq', 1, integer=True)
        _number(require(logger_opt, 'save_checkpoint_freq', 'logger'), 'logger.save_checkpoint_freq', 1, integer=True)
        checker.unknown_keys('logger', logger_opt, ALLOWED['logger'])
        if isinstance(logger_opt.get('wandb'), dict):
            checker.unknown_keys('logger.wandb', logger_opt['wandb'], ALLOWED['wandb'])
        train_known = set(ALLOWED['train']) | model_keys
        for key, value in train.items():
            where = f'train.{key}'
            if str(key).startswith('optim_') and isinstance(value, dict):
                train_known.add(key)
                _check_optimizer(value, where, checker)
            elif key == 'scheduler' and isinstance(value, dict):
                _check_scheduler(value, where, checker)
            elif isinstance(value, dict) and 'type' in value:
                loss_cls = _registry_get(LOSS_REGISTRY, value['type'])
                if loss_cls is not None:
                    train_known.add(key)
                    names, var_kw = _signature_keys(loss_cls)
                    if names is not None and not var_kw:
                        checker.unknown_keys(where, value, names | {'type'})
        checker.unknown_keys('train', train, train_known)
        if opt.get('val') is not None:
            _number(require(opt['val'], 'val_freq', 'val'), 'val.val_freq', 1)
    val = opt.get('val')
    if isinstance(val, dict):
        checker.unknown_keys('val', val, ALLOWED['val'] | model_keys)
        for name, metric in (val.get('metrics') or {}).items():
            func = _registry_get(METRIC_REGISTRY, require(metric, 'type', f'val.metrics.{name}'))
            if func is None:
                raise OptionError(f'option val.metrics.{name}.type: no metric registered as {metric["type"]!r}')
            names, _ = _signature_keys(func, skip=('img', 'img2', 'self'))
            if names is not None:  # basicsr's metrics swallow **kwargs: a misspelling would be ignored
                checker.unknown_keys(f'val.metrics.{name}', metric, names | {'type', 'better'})
    if isinstance(opt.get('dist_params'), dict):
        checker.unknown_keys('dist_params', opt['dist_params'], ALLOWED['dist_params'])
        if opt['dist_params'].get('timeout') is not None:
            _number(opt['dist_params']['timeout'], 'dist_params.timeout', 0, low_open=True)

    _check_probabilities({k: v for k, v in opt.items() if k != 'val'}, '')
    checker.report()
    return opt


def _check_optimizer(optim, where, checker):
    import torch
    otype = require(optim, 'type', where)
    cls = getattr(torch.optim, otype, None)
    if cls is not None:
        names, var_kw = _signature_keys(cls, skip=('self', 'params'))
        if names is not None and not var_kw:
            checker.unknown_keys(where, optim, names | {'type'})
    if 'lr' in optim:
        _number(optim['lr'], f'{where}.lr', 0, low_open=True)


def _check_scheduler(sched, where, checker):
    import torch
    from basicsr.models import lr_scheduler
    stype = require(sched, 'type', where)
    cls = getattr(lr_scheduler, stype, None) or getattr(torch.optim.lr_scheduler, stype, None)
    if cls is not None:
        names, var_kw = _signature_keys(cls, skip=('self', 'optimizer'))
        if names is not None and not var_kw:
            checker.unknown_keys(where, sched, names | {'type'})


def check_train_loader(opt, train_set, train_loader):
    """A training set too small for one batch would train zero iterations and save an untrained network."""
    if train_loader is None or len(train_loader) > 0:
        return
    dataset_opt = opt['datasets']['train']
    ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
    raise OptionError(f'option datasets.train.batch_size_per_gpu = {dataset_opt["batch_size_per_gpu"]} is larger than '
                      f'the samples per process ({len(train_set)} images x dataset_enlarge_ratio {ratio} / '
                      f'{opt.get("world_size", 1)} process(es)): no training iteration would run. Lower the batch '
                      'size or raise dataset_enlarge_ratio.')
