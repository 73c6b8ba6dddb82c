"""Fixes for the known breakages of the stack srplugins stands on (basicsr 1.4.2 on a current torch/torchvision).

Every fix is small, idempotent and applied only where it is needed. Each one names the bug it fixes; each has a test
in ``tests/test_compat.py`` that fails without it. The fixes are split in three groups:

* :func:`apply_import_fixes` runs from ``srplugins/__init__.py`` **before anything imports basicsr** (and therefore
  also in spawned DataLoader workers, which re-import srplugins):

  - ``torchvision.transforms.functional_tensor`` alias (module removed in torchvision 0.17; basicsr 1.4.2 imports it
    in ``basicsr/data/degradations.py``: ``ModuleNotFoundError`` on ``import basicsr``).

* :func:`apply_basicsr_fixes` (also at ``import srplugins``) patches basicsr objects after it is imported, with the
  stack fixes only, so that ``import srplugins`` inside another basicsr program (Real-ESRGAN, GFPGAN) changes
  nothing else:

  - CPU-aware ``init_dist`` (basicsr's divides by ``torch.cuda.device_count()`` -> ``ZeroDivisionError`` without a
    GPU, uses NCCL only, ignores YAML ``dist_params`` for the pytorch launcher).
  - ``BaseModel.model_to_device``: DDP with ``device_ids=None`` on CPU (basicsr passes
    ``torch.cuda.current_device()``).
  - ``basicsr.train.load_resume_state``: basicsr's rules, the state mapped onto the model's device (basicsr maps to
    CUDA: an error without a GPU) (:func:`load_resume_state_on_device`).
  - ``basicsr.data.worker_init_fn``: fresh randomness per epoch (basicsr seeds every worker identically every epoch,
    so on-the-fly degradations repeat their random draws).

* :func:`apply_policies` is called by srplugins' entry points (``srplugins/train.py``, ``test.py``), never at import:

  - ``basicsr.train.load_resume_state`` -> :func:`load_resume_state`: auto-resume searched under
    ``root_path/experiments/<name>`` (basicsr: relative to the cwd); the newest state that reads, with complete
    network files, is used (a state or network left empty / truncated by a killed save is skipped with a warning
    naming it); a warning when nothing is found (basicsr silently archives the experiment and restarts): printed and
    issued as a ``UserWarning`` at once, and logged (console + ``train_*.log``) by ``basicsr.train.get_root_logger``
    once the run's logger exists.
  - ``VGGFeatureExtractor``: backbone weights through :func:`srplugins.utils.pretrained.resolve_pretrained` (basicsr
    downloads at construction, a bare ``URLError`` offline, and loads the vgg19 file for every ``vgg_type``).
  - ``BaseModel.load_network``: a generator checkpoint whose file name says ``_x2`` / ``_x3`` / ``_x4`` must match the
    option ``scale`` (A2N x2 and x3 files have identical shapes and would load silently into the wrong model); the
    error names the ``path.pretrain_network_*`` option; discriminator files are scale-free and not checked.
    :func:`scale_from_filename` is srplugins' one parser of scale tokens in file names.

Argument normalisation for ``torch.distributed.launch`` (``--local-rank=N``) is :func:`normalize_local_rank_argv`,
called by the entry points.
"""
import datetime
import importlib
import importlib.util
import os
import os.path as osp
import random
import re
import sys
import types
import warnings

_STATE = {'import_fixes': False, 'basicsr_fixes': False, 'dist_params': {}, 'pending_log_warnings': []}
# basicsr's own functions, replaced by apply_basicsr_fixes (kept for tests and for delegation)
_ORIGINALS = {}


# --------------------------------------------------------------------------------------------------------------------
# import-time fixes
# --------------------------------------------------------------------------------------------------------------------
def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def fix_torchvision_functional_tensor():
    """Alias ``torchvision.transforms.functional_tensor`` when torchvision no longer has it (>= 0.17).

    basicsr 1.4.2 only uses ``rgb_to_grayscale`` from it; the public ``torchvision.transforms.functional`` function
    is the same operation. Returns True when the alias was installed.
    """
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules or _module_exists(name):
        return False
    from torchvision.transforms import functional
    alias = types.ModuleType(name)
    alias.__doc__ = 'srplugins alias: torchvision.transforms.functional_tensor was removed in torchvision 0.17.'
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[name] = alias
    return True


def apply_import_fixes():
    """Apply the fixes that must precede ``import basicsr``. Idempotent."""
    if not _STATE['import_fixes']:
        fix_torchvision_functional_tensor()
        _STATE['import_fixes'] = True


# --------------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------------
def normalize_local_rank_argv(argv):
    """Rewrite ``--local-rank=N`` / ``--local-rank N`` (torch >= 2.0 launcher) to basicsr's ``--local_rank``.

    Args:
        argv (list[str]): Arguments without the program name.

    Returns:
        list[str]: A new list.
    """
    out = []
    for arg in argv:
        if arg == '--local-rank':
            out.append('--local_rank')
        elif arg.startswith('--local-rank='):
            out.append('--local_rank=' + arg.split('=', 1)[1])
        else:
            out.append(arg)
    return out


# --------------------------------------------------------------------------------------------------------------------
# distributed
# --------------------------------------------------------------------------------------------------------------------
def set_dist_params(dist_params):
    """Remember the YAML ``dist_params`` for :func:`init_dist` (basicsr passes them only to the slurm launcher)."""
    if dist_params is not None and not isinstance(dist_params, dict):
        raise ValueError(f'Option dist_params must be a mapping (backend, port, timeout), got {dist_params!r}')
    _STATE['dist_params'] = dict(dist_params or {})


def init_dist(launcher, backend=None, timeout=None, **kwargs):
    """CPU-aware replacement for ``basicsr.utils.dist_util.init_dist``.

    * ``pytorch`` launcher (``torch.distributed.launch`` and ``torchrun``): rank/world size from the environment;
      with CUDA, ``LOCAL_RANK`` selects the GPU whatever the backend (basicsr used ``RANK % num_gpus``, wrong across
      nodes and a division by zero without a GPU).
    * backend: the argument, else YAML ``dist_params.backend``, else ``nccl`` when CUDA is available, else ``gloo``.
      ``nccl`` without CUDA is an error that says to use gloo.
    * timeout: seconds (argument or YAML ``dist_params.timeout``); torch's default otherwise. Long validations on
      rank 0 can otherwise hit the collective timeout of the other ranks.
    * ``slurm``: delegated to basicsr with the resolved backend.
    """
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    params = dict(_STATE['dist_params'])
    params.update(kwargs)
    backend = backend or params.pop('backend', None)
    params.pop('backend', None)
    timeout = timeout if timeout is not None else params.pop('timeout', None)
    params.pop('timeout', None)
    use_cuda = torch.cuda.is_available()
    if backend is None:
        backend = 'nccl' if use_cuda else 'gloo'
    if backend == 'nccl' and not use_cuda:
        raise ValueError('dist_params.backend is nccl but CUDA is not available: set `dist_params: {backend: gloo}` '
                         'in the option file (or leave backend out to pick gloo automatically on CPU).')
    if use_cuda and mp.get_start_method(allow_none=True) is None:
        # as basicsr: CUDA in DataLoader workers needs spawn. On CPU the default (fork) is kept.
        mp.set_start_method('spawn')
    if launcher == 'pytorch':
        for var in ('RANK', 'WORLD_SIZE'):
            if var not in os.environ:
                raise RuntimeError(f'--launcher pytorch needs the environment variable {var}: start the script with '
                                   '`python -m torch.distributed.launch --nproc_per_node=N ...` or `torchrun`.')
        if use_cuda:  # every backend: the model goes to the current CUDA device
            local_rank = int(os.environ.get('LOCAL_RANK', int(os.environ['RANK']) % torch.cuda.device_count()))
            torch.cuda.set_device(local_rank)
        init_kwargs = {}
        if timeout is not None:
            init_kwargs['timeout'] = datetime.timedelta(seconds=float(timeout))
        dist.init_process_group(backend=backend, **init_kwargs)
    elif launcher == 'slurm':
        from basicsr.utils import dist_util
        dist_util._init_dist_slurm(backend, port=params.get('port'))
    else:
        raise ValueError(f'Invalid launcher type: {launcher!r}; expected "pytorch" or "slurm".')


def _model_to_device(self, net):
    """``BaseModel.model_to_device`` that wraps DDP with ``device_ids=None`` on CPU."""
    import torch
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt['dist']:
        find_unused_parameters = self.opt.get('find_unused_parameters', False)
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


# --------------------------------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------------------------------
def resume_map_location(opt):
    """Where a training state must be loaded: the device the model will live on."""
    import torch
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _load_state_file(path, map_location):
    import torch
    return torch.load(path, map_location=map_location, weights_only=True)


def load_resume_state_on_device(opt):
    """Stack fix for ``basicsr.train.load_resume_state``: basicsr's behaviour, the state mapped onto the model's device.

    basicsr maps the state to ``torch.cuda.current_device()`` (an error without a GPU). Nothing else changes: basicsr's
    ``--auto_resume`` rules stay as they are for other basicsr programs (srplugins' entry points install
    :func:`load_resume_state` instead).
    """
    from basicsr.train import check_resume
    from basicsr.utils import scandir

    resume_state_path = None
    if opt['auto_resume']:
        state_path = osp.join('experiments', opt['name'], 'training_states')
        if osp.isdir(state_path):
            states = list(scandir(state_path, suffix='state', recursive=False, full_path=False))
            if states:
                states = [float(v.split('.state')[0]) for v in states]
                resume_state_path = osp.join(state_path, f'{max(states):.0f}.state')
                opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
    if resume_state_path is None:
        return None
    resume_state = _load_state_file(resume_state_path, resume_map_location(opt))
    check_resume(opt, resume_state['iter'])
    return resume_state


def _unreadable_checkpoint(path):
    """None when ``path`` looks like a complete torch checkpoint, else why not (cheap: no tensor is loaded)."""
    import zipfile
    if not osp.isfile(path):
        return 'missing'
    if osp.getsize(path) == 0:
        return 'empty (0 bytes)'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if not archive.namelist():
                    return 'empty archive'
        except (zipfile.BadZipFile, OSError) as error:
            return f'unreadable ({error})'
        return None
    try:  # legacy (non-zip) torch format
        _load_state_file(path, 'cpu')
    except Exception as error:  # noqa: B902  (any failure: truncated, not a checkpoint)
        return f'unreadable ({type(error).__name__}: {error})'
    return None


def _resume_networks(opt, resume_iter):
    models = opt['path'].get('models') or osp.join(opt['root_path'], 'experiments', opt['name'], 'models')
    ignored = opt['path'].get('ignore_resume_networks') or []
    return [
        osp.join(models, f"net_{key.replace('network_', '')}_{resume_iter}.pth") for key in opt
        if str(key).startswith('network_') and key not in ignored
    ]


def _newest_readable_state(opt, state_dir, states, warn):
    """Load the newest ``<iter>.state`` that reads and whose networks ``net_<x>_<iter>.pth`` read too."""
    for resume_iter in sorted((int(v.split('.')[0]) for v in states), reverse=True):
        path = osp.join(state_dir, f'{resume_iter}.state')
        try:
            state = _load_state_file(path, resume_map_location(opt))
            if not isinstance(state, dict) or 'iter' not in state:
                raise ValueError('not a basicsr training state (no "iter" entry)')
        except Exception as error:  # noqa: B902  (truncated, 0 bytes, not a checkpoint: skip it, say why)
            warn(f'--auto_resume: skipping the unreadable training state {path} '
                 f'({type(error).__name__}: {str(error)[:200]}); trying the previous one.')
            continue
        bad = [(net, why) for net in _resume_networks(opt, resume_iter) for why in [_unreadable_checkpoint(net)] if why]
        if bad:
            warn(f'--auto_resume: skipping the training state {path}: its network file ' +
                 ', '.join(f'{net} is {why}' for net, why in bad) + '; trying the previous state.')
            continue
        return path, state
    return None, None


def _warn_everywhere(opt, msg):
    warnings.warn(msg, stacklevel=3)
    if opt.get('rank', 0) == 0:
        print(f'WARNING: {msg}', flush=True)
    # Not get_root_logger() here: basicsr would mark its logger initialised without the log file, and the run's
    # train_*.log and every INFO line would be lost. The log file gets it once it exists.
    _STATE['pending_log_warnings'].append(msg)


def load_resume_state(opt):
    """srplugins' resume policy (entry points only), replacing ``basicsr.train.load_resume_state``.

    ``--auto_resume`` looks for the newest ``<iter>.state`` in ``opt['path']['training_states']`` (under
    ``root_path/experiments/<name>``) that can be read and whose networks (``models/net_<x>_<iter>.pth``) are complete:
    a state or network left truncated / empty by a killed save is skipped with a warning naming it. Without any state
    it warns, saying the run starts from scratch and the old folder is archived. The state is mapped onto the model's
    device (CPU without a GPU).
    """
    from basicsr.train import check_resume
    from basicsr.utils import scandir

    resume_state_path, resume_state = None, None
    if opt['auto_resume']:
        state_dir = opt['path'].get('training_states') or osp.join(opt['root_path'], 'experiments', opt['name'],
                                                                   'training_states')
        states = []
        if osp.isdir(state_dir):
            states = [v for v in scandir(state_dir, suffix='state', recursive=False, full_path=False)]
            states = [v for v in states if re.fullmatch(r'\d+\.state', v)]
        if states:
            resume_state_path, resume_state = _newest_readable_state(opt, state_dir, states,
                                                                     lambda msg: _warn_everywhere(opt, msg))
        if resume_state_path is not None:
            opt['path']['resume_state'] = resume_state_path
        else:
            exp_root = opt['path'].get('experiments_root', osp.dirname(state_dir))
            what = 'no readable training state' if states else 'no training state'
            msg = (f'--auto_resume: {what} (<iter>.state) found in {state_dir}; starting from iteration 0. ' +
                   (f'The existing folder {exp_root} will be archived (renamed with _archived_<time>).'
                    if osp.exists(exp_root) else ''))
            _warn_everywhere(opt, msg)
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
        if not osp.isfile(resume_state_path):
            raise FileNotFoundError(f'path.resume_state: training state file {resume_state_path} does not exist.')
        try:
            resume_state = _load_state_file(resume_state_path, resume_map_location(opt))
        except Exception as error:  # noqa: B902
            raise ValueError(f'path.resume_state = {resume_state_path}: cannot read the training state, truncated or '
                             f'not a checkpoint ({type(error).__name__}: {str(error)[:200]})') from None

    if resume_state is None:
        return None
    check_resume(opt, resume_state['iter'])
    return resume_state


def _wrap_train_get_root_logger(original):
    """``basicsr.train.get_root_logger`` that logs the warnings held back until the run's logger (and file) exist."""

    def get_root_logger(*args, **kwargs):
        logger = original(*args, **kwargs)
        pending = _STATE['pending_log_warnings']
        while pending:
            logger.warning(pending.pop(0))
        return logger

    get_root_logger.__wrapped__ = original
    get_root_logger.__doc__ = original.__doc__
    return get_root_logger


# --------------------------------------------------------------------------------------------------------------------
# data loader randomness
# --------------------------------------------------------------------------------------------------------------------
def worker_init_fn(worker_id, num_workers, rank, seed):
    """Seed numpy and ``random`` in a DataLoader worker from the option seed, rank, worker id and the epoch.

    ``torch.initial_seed()`` in a worker is the loader's per-iterator base seed + worker id, drawn from the main
    process's torch generator (seeded by ``manual_seed``): it differs every epoch, so the draws of on-the-fly
    degradations differ every epoch, and the whole run stays reproducible from ``manual_seed``.
    """
    import numpy as np
    import torch
    seq = np.random.SeedSequence([int(seed), int(rank), int(num_workers), int(worker_id), torch.initial_seed() % 2**63])
    np.random.seed(seq.generate_state(1)[0])
    random.seed(int(seq.generate_state(2, dtype=np.uint64)[1]))


# --------------------------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------------------------
# A scale token: ``x{N}`` (one digit) at the start of the stem or after ``_`` / ``-`` / ``.``, optionally written
# ``SRx{N}``, followed by the end, a separator or a letter: ``aan_x2``, ``net_g_x3_latest``, ``RealESRGAN_x4plus``,
# ``A2N_SRx4_DIV2K``; not ``max4``, ``x16`` or ``box2``.
_SCALE_TOKEN = re.compile(r'(?:^|[_\-.])(?:SR)?x([1-9])(?=$|[_\-.a-zA-Z])', re.IGNORECASE)


def scales_in_filename(path):
    """Distinct scales written in a file name (see :func:`scale_from_filename`), in order of appearance."""
    if not path:
        return []
    stem = osp.splitext(osp.basename(str(path)))[0]
    scales = []
    for token in _SCALE_TOKEN.findall(stem):
        if int(token) not in scales:
            scales.append(int(token))
    return scales


def scale_from_filename(path, strict=True):
    """The scale a checkpoint's file name declares (``aan_x2.pt`` -> 2, ``net_g_x3_latest.pth`` -> 3), else None.

    The one parser of scale tokens in srplugins (used by the ``load_network`` check, ``srplugins.checkpoints``
    and ``scripts/eval_a2n_official.py``); no basicsr import. A name with two different scales
    (``A2N_x2_to_x4.pth``) is a ValueError (``strict``) or None (``strict=False``: no scale is guessed from it).
    """
    scales = scales_in_filename(path)
    if len(scales) > 1:
        if strict:
            raise ValueError(f'{path}: the file name declares {len(scales)} different scales '
                             f'({", ".join(f"x{s}" for s in scales)}); rename the file so that it names only the '
                             'scale of its weights.')
        return None
    return scales[0] if scales else None


def check_checkpoint_scale(load_path, scale, option='path.pretrain_network_g'):
    """Raise ValueError when a generator checkpoint's file name declares another scale than the option ``scale``.

    ``option`` names where the path came from in the error message. A name with two different scales is refused.
    """
    if scale is None or load_path is None:
        return
    try:
        found = scale_from_filename(load_path)
    except ValueError as error:
        raise ValueError(f'{option} = {error} The option `scale` is {scale}.') from None
    if found is not None and found != int(scale):
        raise ValueError(f'{option} = {load_path}: the file name says x{found} but the option `scale` is {scale}. '
                         'Checkpoints of different scales can have identical shapes (A2N x2/x3) and would load '
                         'silently into the wrong model: use the file made for this scale, or rename the file if it '
                         'is really a x{} model.'.format(scale))


def _pretrain_option(opt, load_path):
    """The ``path.pretrain_network_*`` key whose value is ``load_path`` (None when the path is from elsewhere)."""
    target = osp.abspath(osp.expanduser(str(load_path)))
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_network_') and value and osp.abspath(osp.expanduser(str(value))) == target:
            return key
    return None


def _is_discriminator(key, net):
    """Discriminators are scale-free: ``pretrain_network_d`` (``_d2``, ``_d_*``) or a ``*Discriminator*`` class."""
    net = getattr(net, 'module', net)  # DataParallel / DistributedDataParallel
    if key is not None and re.fullmatch(r'pretrain_network_d(\d*|_.*)', key):
        return True
    return 'discriminator' in type(net).__name__.lower()


class _LoadedFileTorch(types.ModuleType):
    """Stands in for ``torch`` in ``basicsr.models.base_model`` during one ``load_network`` call: ``torch.load`` of
    ``path`` returns the object srplugins already read (``weights_only=True``); everything else is torch's."""

    def __init__(self, torch_module, path, obj):
        super().__init__('torch')
        self._torch, self._path, self._obj = torch_module, path, obj

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, f, *args, **kwargs):
        if f is self._path or (isinstance(f, (str, os.PathLike)) and str(f) == str(self._path)):
            return self._obj
        kwargs.setdefault('weights_only', True)
        return self._torch.load(f, *args, **kwargs)


def _wrap_load_network(original):

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """basicsr's ``load_network`` on a file read by :func:`srplugins.checkpoints.load_file`: ``torch.load`` with
        ``weights_only=True``, and a truncated / random / unsafe file is a ``CheckpointReadError`` (ValueError) naming
        the file and its option (``path.pretrain_network_g`` ...) instead of torch's unpickling traceback."""
        from basicsr.models import base_model

        from srplugins.checkpoints.io import load_file
        key = _pretrain_option(self.opt, load_path) if load_path is not None else None
        option = f'path.{key}' if key else 'checkpoint'
        if not _is_discriminator(key, net):
            check_checkpoint_scale(load_path, self.opt.get('scale'), option=option)
        if not osp.isfile(load_path):
            raise FileNotFoundError(f'{option} = {load_path}: checkpoint does not exist (from the option file\'s '
                                    '`path` section).')
        obj = load_file(load_path, option=option)
        if not isinstance(obj, dict):
            raise ValueError(f'{option} = {load_path}: expected a dict of tensors (e.g. {{\'params\': ...}}), got '
                             f'{type(obj).__name__}.')
        previous = base_model.torch
        base_model.torch = _LoadedFileTorch(previous, load_path, obj)
        try:
            return original(self, net, load_path, strict=strict, param_key=param_key)
        finally:
            base_model.torch = previous

    load_network.__wrapped__ = original
    load_network.__doc__ = original.__doc__
    return load_network


def _wrap_vgg_init(original):

    def __init__(self, layer_name_list, vgg_type='vgg19', *args, **kwargs):
        from basicsr.archs import vgg_arch

        from srplugins.utils.pretrained import resolve_pretrained, torchvision_weight_filename
        filename = torchvision_weight_filename(vgg_type)
        path = resolve_pretrained(filename, f'ImageNet {vgg_type} backbone of VGGFeatureExtractor / PerceptualLoss')
        previous = vgg_arch.VGG_PRETRAIN_PATH
        vgg_arch.VGG_PRETRAIN_PATH = path
        try:
            original(self, layer_name_list, vgg_type, *args, **kwargs)
        finally:
            vgg_arch.VGG_PRETRAIN_PATH = previous

    __init__.__wrapped__ = original
    return __init__


def apply_basicsr_fixes():
    """Patch basicsr with the stack fixes only (imported here). Idempotent. Run by ``import srplugins``."""
    if _STATE['basicsr_fixes']:
        return
    apply_import_fixes()
    import basicsr.data
    import basicsr.train
    import basicsr.utils.dist_util
    import basicsr.utils.options
    from basicsr.models.base_model import BaseModel

    _ORIGINALS.update(
        init_dist=basicsr.utils.dist_util.init_dist,
        model_to_device=BaseModel.model_to_device,
        load_resume_state=basicsr.train.load_resume_state,
        worker_init_fn=basicsr.data.worker_init_fn)
    basicsr.utils.dist_util.init_dist = init_dist
    basicsr.utils.options.init_dist = init_dist  # parse_options imported the name
    BaseModel.model_to_device = _model_to_device
    basicsr.train.load_resume_state = load_resume_state_on_device
    basicsr.data.worker_init_fn = worker_init_fn
    _STATE['basicsr_fixes'] = True


def apply_policies():
    """srplugins' policies, switched on by its entry points (``srplugins/train.py``, ``test.py``), never at import.

    * ``BaseModel.load_network``: the file-name scale check and a FileNotFoundError naming the ``path`` option.
    * ``VGGFeatureExtractor``: the offline lookup of the ImageNet backbone (no download at run time).
    * ``basicsr.train.load_resume_state``: the resume rules of :func:`load_resume_state` (experiments under the root
      path, unreadable newest state skipped, warning before archiving), its warnings logged once the run's logger
      exists.

    Idempotent; returns True when installed now.
    """
    if _STATE.get('policies'):
        return False
    apply_basicsr_fixes()
    import basicsr.train
    from basicsr.archs.vgg_arch import VGGFeatureExtractor
    from basicsr.models.base_model import BaseModel

    _ORIGINALS.update(
        load_network=BaseModel.load_network,
        train_get_root_logger=basicsr.train.get_root_logger,
        vgg_init=VGGFeatureExtractor.__init__)
    BaseModel.load_network = _wrap_load_network(BaseModel.load_network)
    basicsr.train.load_resume_state = load_resume_state
    basicsr.train.get_root_logger = _wrap_train_get_root_logger(basicsr.train.get_root_logger)
    VGGFeatureExtractor.__init__ = _wrap_vgg_init(VGGFeatureExtractor.__init__)
    _STATE['policies'] = True
    return True


def policies_installed():
    """Whether :func:`apply_policies` ran in this process."""
    return bool(_STATE.get('policies'))
