"""What ``srplugins/train.py`` and ``srplugins/test.py`` do around basicsr's pipelines.

* srplugins' policies (:func:`srplugins.compat.apply_policies`: resume rules, offline VGG lookup, checkpoint scale
  check) are switched on here, not at ``import srplugins``.
* Training runs :func:`srplugins.utils.trainer.train_pipeline` (basicsr's loop, exactly resumable); testing runs
  ``basicsr.test.test_pipeline``. Both parse options with :func:`parse_options` (basicsr's, plus
  ``--strict_options``, ``--force_yml key=~`` and :func:`srplugins.utils.options_check.check_options`); a test option
  whose set folders are missing evaluates the sets that are present (:func:`skip_missing_test_sets`).
* Exit status: 2 and ``error: ...`` for an option error or an unreadable checkpoint file (truncated, not a
  checkpoint, or refused by ``torch.load(weights_only=True)``); 3 when the training-health guard stopped training
  (``srplugins.utils.health.TrainingHealthError``, message on stderr, no traceback); 4 when a distributed collective
  timed out (a frozen or dead rank), naming ``dist_params.timeout``.
* argv: ``--local-rank`` (torch >= 2.0 ``torch.distributed.launch``) normalised to basicsr's ``--local_rank``;
  torchrun passes ``LOCAL_RANK`` in the environment and needs nothing.
* YAML ``dist_params`` (backend, timeout) handed to the CPU-aware ``init_dist`` of :mod:`srplugins.compat`.
* ``num_threads`` (top-level option, optional): torch's intra-op threads for this run. Small networks on a few CPU
  cores train faster with 1 thread when a DataLoader worker shares the cores (the CPU demos set it).
* root_path = the current working directory: ``experiments/``, ``results/`` and ``tb_logger/`` are written there, and
  relative paths in option files (``dataroot_*``, ``pretrain_network_*``) resolve against it too.
* After training, the bicubic baseline of every validation set is logged next to the model's figures
  (``val.bicubic_baseline``, default true for training, false for testing).
* Distributed runs end with a barrier and ``destroy_process_group`` (basicsr never destroys the group, and gloo ranks
  occasionally abort at interpreter exit otherwise).
"""
import argparse
import os
import os.path as osp
import sys
import warnings

from srplugins import compat


def _peek_options(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', type=str)
    known, _ = parser.parse_known_args(argv)
    if known.opt is None:
        return None
    if not osp.isfile(known.opt):
        raise FileNotFoundError(f'-opt {known.opt}: option file not found (relative paths are resolved against the '
                                f'current directory {os.getcwd()}).')
    import yaml
    from basicsr.utils.options import ordered_yaml
    with open(known.opt, mode='r', encoding='utf-8') as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    if not isinstance(opt, dict):
        raise ValueError(f'-opt {known.opt}: expected a YAML mapping (BasicSR option file), got {type(opt).__name__}')
    return opt


def _prepare(argv):
    argv = compat.normalize_local_rank_argv(list(sys.argv[1:] if argv is None else argv))
    opt = _peek_options(argv)
    if opt is not None:
        compat.set_dist_params(opt.get('dist_params'))
        _set_num_threads(opt.get('num_threads'))
        check_degrade_on(opt)
    sys.argv = [sys.argv[0]] + argv  # basicsr's parse_options reads sys.argv
    return argv


def check_degrade_on(opt):
    """``degrade_on: model`` in a dataset needs a model that degrades HR batches (``BSRNetModel`` / ``BSRGANModel``).

    basicsr's stock models would otherwise fail in the first iteration with ``KeyError: 'lq'``.
    """
    datasets = opt.get('datasets') or {}
    users = [
        name for name, dataset in datasets.items()
        if isinstance(dataset, dict) and dataset.get('degrade_on', 'dataset') == 'model'
    ]
    if not users:
        return
    from basicsr.utils.registry import MODEL_REGISTRY

    import srplugins  # noqa: F401  (registers the plugin models)
    model_type = opt.get('model_type')
    try:
        model_cls = MODEL_REGISTRY.get(model_type)
    except KeyError:
        return  # basicsr reports the unknown model_type itself
    if not getattr(model_cls, 'degrades_hr_batches', False):
        raise ValueError(f'datasets.{users[0]}.degrade_on: model hands HR-only batches to the model, but model_type '
                         f'{model_type} does not degrade them: use BSRNetModel (L1) or BSRGANModel (GAN), or set '
                         'degrade_on: dataset.')


def _set_num_threads(num_threads):
    if num_threads is None:
        return
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ValueError(f'Option num_threads must be a positive integer (torch intra-op threads), got {num_threads!r}')
    import torch
    torch.set_num_threads(num_threads)


# --------------------------------------------------------------------------------------------------------------------
# option parsing: basicsr 1.4.2's parse_options, with --force_yml key=~, --strict_options and option checks
# --------------------------------------------------------------------------------------------------------------------
def apply_force_yml(opt, entries):
    """Apply ``--force_yml`` entries ``a:b:c=value`` to ``opt`` in place.

    As basicsr (values through its ``_postprocess_yml_value``), except: ``key=~`` (or ``=none``) removes the key
    (basicsr assigned None, and a dataset entry set to None then crashed its parser with a TypeError); a value may
    contain ``=``; a missing parent key is an error naming it.
    """
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries or []:
        if '=' not in entry:
            raise ValueError(f'--force_yml {entry!r}: expected key:subkey=value (e.g. train:ema_decay=0.999)')
        keys, value = (part.strip() for part in entry.split('=', 1))
        raw = value
        value = _postprocess_yml_value(value)
        path = keys.split(':')
        node = opt
        for depth, key in enumerate(path[:-1]):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                raise ValueError(f'--force_yml {entry}: option {":".join(path[:depth + 1])} does not exist (or is not '
                                 'a mapping) in the option file.')
            node = node[key]
        if raw == '~' or raw.lower() == 'none':
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return opt


def parse_options(root_path, is_train=True):
    """basicsr 1.4.2's ``parse_options`` (same arguments and derived options) with srplugins' additions.

    Additions: ``--strict_options`` (unknown option keys are errors, not warnings); ``--force_yml key=~`` removes a
    key (:func:`apply_force_yml`); the options are checked by :func:`srplugins.utils.options_check.check_options`
    after ``--force_yml``; for testing, dataset entries whose folders are missing are skipped with a warning.
    """
    import random
    import torch
    import yaml
    from basicsr.utils import set_random_seed
    from basicsr.utils.dist_util import get_dist_info
    from basicsr.utils.options import ordered_yaml

    from srplugins.utils.options_check import check_options

    parser = argparse.ArgumentParser()
    parser.add_argument('-opt', type=str, required=True, help='Path to option YAML file.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--auto_resume', action='store_true')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--local_rank', type=int, default=0)
    parser.add_argument(
        '--force_yml',
        nargs='+',
        default=None,
        help='Force to update yml files. Examples: train:ema_decay=0.999; key=~ removes a key')
    parser.add_argument(
        '--strict_options', action='store_true', help='unknown option keys are errors (default: warnings)')
    args = parser.parse_args()

    with open(args.opt, mode='r', encoding='utf-8') as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])

    # --force_yml first (basicsr applies it after init_dist), so that forced dist_params reach init_dist too
    apply_force_yml(opt, args.force_yml)
    compat.set_dist_params(opt.get('dist_params'))
    if args.launcher == 'none':
        opt['dist'] = False
        print('Disable distributed.', flush=True)
    else:
        opt['dist'] = True
        if args.launcher == 'slurm' and 'dist_params' in opt:
            compat.init_dist(args.launcher, **opt['dist_params'])
        else:
            compat.init_dist(args.launcher)
    opt['rank'], opt['world_size'] = get_dist_info()

    seed = opt.get('manual_seed')
    if seed is None:
        seed = random.randint(1, 10000)
        opt['manual_seed'] = seed
    set_random_seed(seed + opt['rank'])

    opt['auto_resume'] = args.auto_resume
    opt['is_train'] = is_train
    check_options(opt, is_train=is_train, strict=args.strict_options)
    if not is_train:
        skip_missing_test_sets(opt)

    if args.debug and not opt['name'].startswith('debug'):
        opt['name'] = 'debug_' + opt['name']
    if opt['num_gpu'] == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()

    for phase, dataset in opt['datasets'].items():
        phase = phase.split('_')[0]
        dataset['phase'] = phase
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        if dataset.get('dataroot_gt') is not None:
            dataset['dataroot_gt'] = osp.expanduser(dataset['dataroot_gt'])
        if dataset.get('dataroot_lq') is not None:
            dataset['dataroot_lq'] = osp.expanduser(dataset['dataroot_lq'])

    for key, val in opt['path'].items():
        if (val is not None) and ('resume_state' in key or 'pretrain_network' in key):
            opt['path'][key] = osp.expanduser(val)
    opt['path'].setdefault('resume_state', None)  # basicsr's check_resume reads it with []

    if is_train:
        experiments_root = osp.join(root_path, 'experiments', opt['name'])
        opt['path']['experiments_root'] = experiments_root
        opt['path']['models'] = osp.join(experiments_root, 'models')
        opt['path']['training_states'] = osp.join(experiments_root, 'training_states')
        opt['path']['log'] = experiments_root
        opt['path']['visualization'] = osp.join(experiments_root, 'visualization')
        if 'debug' in opt['name']:
            if 'val' in opt:
                opt['val']['val_freq'] = 8
            opt['logger']['print_freq'] = 1
            opt['logger']['save_checkpoint_freq'] = 8
    else:
        results_root = osp.join(root_path, 'results', opt['name'])
        opt['path']['results_root'] = results_root
        opt['path']['log'] = results_root
        opt['path']['visualization'] = osp.join(results_root, 'visualization')
    _STATE['opt'] = opt
    return opt, args


_STATE = {'opt': None}


def _dataset_folders(dataset):
    return [(key, dataset[key]) for key in sorted(dataset) if str(key).startswith('dataroot') and dataset[key]]


def skip_missing_test_sets(opt):
    """Drop test / validation sets whose ``dataroot_*`` folders do not exist, with a warning naming each one.

    The official test options list five benchmark sets; with only some downloaded the others are skipped and the rest
    evaluated. All missing is a FileNotFoundError naming the folders.
    """
    datasets = opt['datasets']
    missing = {}
    for phase, dataset in list(datasets.items()):
        if io_backend_type(dataset) != 'disk':
            continue
        absent = [(key, path) for key, path in _dataset_folders(dataset) if not osp.exists(osp.expanduser(path))]
        if absent:
            missing[phase] = absent
    if not missing:
        return
    if len(missing) == len(datasets):
        listing = '; '.join(f'datasets.{p}.{k} = {v}' for p, absent in missing.items() for k, v in absent)
        raise FileNotFoundError(f'no test set of {opt.get("name")} is present: {listing} (relative paths resolve '
                                f'against the current directory {os.getcwd()}).')
    for phase, absent in missing.items():
        name = datasets[phase].get('name', phase)
        folders = ', '.join(f'{k} = {v}' for k, v in absent)
        msg = f'test set {name} (datasets.{phase}) skipped: folder not found ({folders}).'
        warnings.warn(msg, stacklevel=2)
        print(f'WARNING: {msg}', flush=True)
        del datasets[phase]


def io_backend_type(dataset):
    backend = dataset.get('io_backend') or {}
    return backend.get('type', 'disk') if isinstance(backend, dict) else 'disk'


class _UseParser:
    """Swap ``parse_options`` in a basicsr module (``basicsr.test`` imported the name) for srplugins' parser."""

    def __init__(self, module):
        self.module = module
        self.original = module.parse_options

    def __enter__(self):
        self.module.parse_options = parse_options
        return self

    def __exit__(self, *exc):
        self.module.parse_options = self.original
        return False


def _finish_distributed():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _training_health_error():
    """helper class srplugins.utils.health.TrainingHealthError, or None when that module does not exist."""
    try:
        from srplugins.utils.health import TrainingHealthError
    except ImportError:
        return None
    return TrainingHealthError


def _exit_with_message(status, message):
    try:
        from basicsr.utils import get_root_logger
        get_root_logger().error(message)
    except Exception:  # noqa: B902  (the message reaches stderr whatever the logger's state)
        pass
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(status)


def run_train(argv=None, root_path=None):
    """Train with srplugins' loop over basicsr's pieces (:mod:`srplugins.utils.trainer`); see the module docstring.

    Exit status 2 with ``error: ...`` on stderr for an option error (:class:`OptionError`) or an unreadable checkpoint
    (:class:`srplugins.checkpoints.CheckpointReadError`), 3 when the training-health guard stopped training (non-finite
    loss), 4 when a distributed collective timed out.
    """
    compat.apply_policies()
    import srplugins  # noqa: F401
    from srplugins.checkpoints.io import CheckpointReadError
    from srplugins.utils import trainer
    from srplugins.utils.options_check import OptionError

    health_error = _training_health_error() or ()
    try:
        _prepare(argv)
        root_path = osp.abspath(root_path or os.getcwd())
        opt = trainer.train_pipeline(root_path, parse_options)
    except (OptionError, CheckpointReadError) as error:
        _exit_with_message(2, f'error: {error}')
    except health_error as error:
        _exit_with_message(3, f'Training stopped: {error}')
    except Exception as error:  # noqa: B902
        if _is_collective_timeout(error):
            _exit_with_message(4, _timeout_message(error))
        raise
    if opt is not None and opt.get('rank', 0) == 0 and opt.get('val') and opt['val'].get('bicubic_baseline', True):
        from srplugins.utils.baseline import log_bicubic_baseline
        log_bicubic_baseline(opt)
    _finish_distributed()


def _is_collective_timeout(error):
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return False
    text = f'{type(error).__name__} {error}'.lower()
    return 'timed out' in text or 'timeout' in text or 'connection closed by peer' in text or 'connection reset' in text


def _timeout_message(error):
    timeout = compat._STATE['dist_params'].get('timeout')
    setting = f'{timeout} s' if timeout is not None else "torch's default (30 min)"
    return (f'error: a distributed collective failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}): '
            f'another rank stopped or froze. The wait is bounded by the option dist_params.timeout (now {setting}); '
            'check the other ranks\' logs.')


def run_test(argv=None, root_path=None):
    """Evaluate with ``basicsr.test.test_pipeline`` through srplugins' option parser; see the module docstring."""
    compat.apply_policies()
    import basicsr.test

    from srplugins.checkpoints.io import CheckpointReadError
    from srplugins.utils.options_check import OptionError

    try:
        _prepare(argv)
        root_path = osp.abspath(root_path or os.getcwd())
        with _UseParser(basicsr.test):
            basicsr.test.test_pipeline(root_path)
    except (OptionError, CheckpointReadError) as error:
        _exit_with_message(2, f'error: {error}')
    opt = _STATE['opt']
    if opt is not None and opt.get('rank', 0) == 0 and opt.get('val') and opt['val'].get('bicubic_baseline', False):
        from srplugins.utils.baseline import log_bicubic_baseline
        log_bicubic_baseline(opt)
    _finish_distributed()
