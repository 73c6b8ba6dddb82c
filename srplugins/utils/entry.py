"""What ``srplugins/train.py`` and ``srplugins/test.py`` do around basicsr's unchanged pipelines.

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


class _CaptureOptions:
    """Wraps ``parse_options`` in a basicsr module to keep the parsed options for the steps after the pipeline."""

    def __init__(self, module):
        self.module = module
        self.original = module.parse_options
        self.opt = None

    def __enter__(self):

        def parse_options(*args, **kwargs):
            opt, parsed = self.original(*args, **kwargs)
            self.opt = opt
            return opt, parsed

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


def run_train(argv=None, root_path=None):
    """Train with ``basicsr.train.train_pipeline``; see the module docstring."""
    import basicsr.train

    _prepare(argv)
    root_path = osp.abspath(root_path or os.getcwd())
    with _CaptureOptions(basicsr.train) as captured:
        basicsr.train.train_pipeline(root_path)
    opt = captured.opt
    if opt is not None and opt.get('rank', 0) == 0 and opt.get('val') and opt['val'].get('bicubic_baseline', True):
        from srplugins.utils.baseline import log_bicubic_baseline
        log_bicubic_baseline(opt)
    _finish_distributed()


def run_test(argv=None, root_path=None):
    """Evaluate with ``basicsr.test.test_pipeline``; see the module docstring."""
    import basicsr.test

    _prepare(argv)
    root_path = osp.abspath(root_path or os.getcwd())
    with _CaptureOptions(basicsr.test) as captured:
        basicsr.test.test_pipeline(root_path)
    opt = captured.opt
    if opt is not None and opt.get('rank', 0) == 0 and opt.get('val') and opt['val'].get('bicubic_baseline', False):
        from srplugins.utils.baseline import log_bicubic_baseline
        log_bicubic_baseline(opt)
    _finish_distributed()
