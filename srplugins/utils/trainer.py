"""srplugins' training loop: basicsr 1.4.2's ``train_pipeline`` with an exactly resumable trajectory.

The loop is basicsr's (same data loaders, model calls, logging, checkpoint and validation frequencies; built from
``basicsr.train``'s own pieces), with these differences:

* **Exact resume.** Each training state written by the loop holds, besides basicsr's ``epoch`` / ``iter`` /
  optimizers / schedulers, a ``srplugins_loop`` entry: the batches already consumed in the current epoch, the torch
  RNG state from which the epoch's DataLoader iterator drew its worker base seed, and the torch / CUDA / numpy /
  ``random`` states of every rank at the save. On resume the epoch's iterator is re-created from the same RNG state
  (same sampler order, same worker seeds), the consumed batches are loaded again and dropped (the workers' random
  draws advance exactly as in the uninterrupted run; no training step is done for them), and the RNG states are
  restored. A straight run and a resumed one are then bit-identical on CPU, with DataLoader workers (basicsr
  restarts the saved epoch from its first batch and re-seeds everything at start).
* Validation runs with the RNG states saved and restored around it, so the training trajectory does not depend on
  ``val_freq``.
* The final validation after training is skipped when the last iteration was just validated; it is logged at the
  last iteration (basicsr used ``total_iter + 1`` or more: "Best @ 22 iter" after a 20-iteration run).
* The ETA in the log lines counts the remaining iterations (basicsr printed ``eta: -1 day, 23:59:59`` at the last).
"""
import contextlib
import datetime
import logging
import random
import time
from os import path as osp

LOOP_KEY = 'srplugins_loop'


# --------------------------------------------------------------------------------------------------------------------
# random states
# --------------------------------------------------------------------------------------------------------------------
def capture_rng():
    """torch (CPU and every CUDA device), numpy and ``random`` states of this process, in a weights-only-safe form."""
    import numpy as np
    import torch
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {
            'kind': kind,
            'keys': torch.from_numpy(keys.astype(np.int64)),
            'pos': int(pos),
            'has_gauss': int(has_gauss),
            'gauss': float(gauss)
        },
        'random': random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state):
    """Inverse of :func:`capture_rng`."""
    import numpy as np
    import torch
    torch.set_rng_state(state['torch'])
    num = state['numpy']
    np.random.set_state(
        (num['kind'], num['keys'].numpy().astype(np.uint32), num['pos'], num['has_gauss'], num['gauss']))
    version, internal, gauss_next = state['random']
    random.setstate((version, tuple(internal), gauss_next))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@contextlib.contextmanager
def preserved_rng():
    """Run a block (validation) without changing this process's random states."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def _gather(obj):
    """``obj`` of every rank, in rank order (a one-element list without distributed training)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


@contextlib.contextmanager
def extra_training_state(fields):
    """Add ``fields`` to the training state that ``model.save`` writes (``{'epoch', 'iter', 'optimizers', ...}``).

    basicsr's ``save_training_state`` builds its dict locally and hands it to ``torch.save``; every model (basicsr's
    and srplugins', atomic writes included) goes through ``torch.save``. During ``model.save`` only, ``torch.save``
    adds ``fields`` to a dict that has basicsr's training-state keys; network files are untouched.
    """
    import torch
    original = torch.save

    def save(obj, *args, **kwargs):
        if isinstance(obj, dict) and {'epoch', 'iter', 'optimizers'} <= set(obj):
            obj = dict(obj, **fields)
        return original(obj, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


# --------------------------------------------------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------------------------------------------------
def _message_logger_class():
    from basicsr.utils import MessageLogger

    class RemainingEtaMessageLogger(MessageLogger):
        """basicsr's ``MessageLogger`` whose ETA counts the iterations left (0 at the last one, never negative)."""

        def __call__(self, log_vars):
            # basicsr computes time_avg * (max_iters - current_iter - 1): shifting max_iters by one makes that
            # time_avg * (iterations left), which is 0 at the last iteration.
            max_iters = self.max_iters
            self.max_iters = max(int(max_iters) + 1, int(log_vars['iter']) + 1)
            try:
                return super().__call__(log_vars)
            finally:
                self.max_iters = max_iters

    return RemainingEtaMessageLogger


# --------------------------------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------------------------------
def train_pipeline(root_path, parse_options):
    """basicsr's ``train_pipeline`` with the differences in the module docstring.

    Args:
        root_path (str): where ``experiments/`` and ``tb_logger/`` are written.
        parse_options (callable): ``(root_path, is_train) -> (opt, args)`` (basicsr's or srplugins' parser).

    Returns:
        dict: the parsed options.
    """
    import basicsr.train as bt
    import torch
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
    from basicsr.models import build_model
    from basicsr.train import create_train_val_dataloader, init_tb_loggers
    from basicsr.utils import AvgTimer, get_env_info, get_time_str, make_exp_dirs, mkdir_and_rename
    from basicsr.utils.options import copy_opt_file, dict2str

    from srplugins.utils.options_check import check_train_loader

    # looked up on basicsr.train at call time: srplugins' replacements (resume policy, logger) apply as in basicsr's
    # own pipeline
    load_resume_state = bt.load_resume_state
    get_root_logger = bt.get_root_logger

    opt, args = parse_options(root_path, is_train=True)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    resume_state = load_resume_state(opt)
    if resume_state is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_opt_file(args.opt, opt['path']['experiments_root'])

    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    tb_logger = init_tb_loggers(opt)

    train_loader, train_sampler, val_loaders, total_epochs, total_iters = create_train_val_dataloader(opt, logger)
    check_train_loader(opt, train_loader.dataset, train_loader)
    model = build_model(opt)

    loop = None
    if resume_state:
        model.resume_training(resume_state)
        logger.info(f"Resuming training from epoch: {resume_state['epoch']}, iter: {resume_state['iter']}.")
        start_epoch = resume_state['epoch']
        current_iter = resume_state['iter']
        loop = _loop_state_for_this_rank(resume_state, opt, logger)
        if loop is not None:
            start_epoch = loop['epoch']
    else:
        start_epoch = 0
        current_iter = 0

    msg_logger = _message_logger_class()(opt, current_iter, tb_logger)

    prefetch_mode = opt['datasets']['train'].get('prefetch_mode')
    if prefetch_mode is None or prefetch_mode == 'cpu':
        prefetcher = CPUPrefetcher(train_loader)
    elif prefetch_mode == 'cuda':
        prefetcher = CUDAPrefetcher(train_loader, opt)
        logger.info(f'Use {prefetch_mode} prefetch dataloader')
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
    else:
        raise ValueError(f"Wrong prefetch_mode {prefetch_mode}. Supported ones are: None, 'cuda', 'cpu'.")

    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    last_validated = None
    val_opt = opt.get('val')

    epoch = start_epoch
    for epoch in range(start_epoch, total_epochs + 1):
        if current_iter >= total_iters:
            break
        train_sampler.set_epoch(epoch)
        resuming_this_epoch = loop is not None and epoch == loop['epoch']
        if resuming_this_epoch:
            torch.set_rng_state(loop['epoch_rng'])
        epoch_rng = torch.get_rng_state()
        prefetcher.reset()  # the DataLoader iterator draws the workers' base seed from the torch RNG here
        batches_done = 0
        if resuming_this_epoch:
            for _ in range(loop['batches_done']):
                if prefetcher.next() is None:
                    break
                batches_done += 1
            if batches_done != loop['batches_done']:
                logger.warning(f'Resume: the epoch holds {batches_done} batches, the training state says '
                               f'{loop["batches_done"]} were consumed (dataset or batch size changed?).')
            restore_rng(loop['rng'])
            loop = None
        train_data = prefetcher.next()

        while train_data is not None:
            data_timer.record()
            current_iter += 1
            batches_done += 1
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter}
                log_vars.update({'lrs': model.get_current_learning_rate()})
                log_vars.update({'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()})
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)

            if current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                logger.info('Saving models and training states.')
                fields = {
                    LOOP_KEY: {
                        'epoch': epoch,
                        'batches_done': batches_done,
                        'world_size': opt.get('world_size', 1),
                        'ranks': _gather({
                            'epoch_rng': epoch_rng,
                            'rng': capture_rng()
                        }),
                    }
                }
                with extra_training_state(fields):
                    model.save(epoch, current_iter)

            if val_opt is not None and current_iter % val_opt['val_freq'] == 0:
                _validate(model, val_loaders, current_iter, tb_logger, val_opt, logger)
                last_validated = current_iter

            if current_iter >= total_iters:
                break
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    consumed_time = str(datetime.timedelta(seconds=int(time.time() - start_time)))
    logger.info(f'End of training. Time consumed: {consumed_time}')
    logger.info('Save the latest model.')
    model.save(epoch=-1, current_iter=-1)  # -1 stands for the latest
    if val_opt is not None and last_validated != current_iter:
        _validate(model, val_loaders, current_iter, tb_logger, val_opt, logger)
    if tb_logger:
        tb_logger.close()
    return opt


def _validate(model, val_loaders, current_iter, tb_logger, val_opt, logger):
    if len(val_loaders) > 1:
        logger.warning('Multiple validation datasets are *only* supported by SRModel.')
    with preserved_rng():
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, val_opt['save_img'])


def _loop_state_for_this_rank(resume_state, opt, logger):
    """The resume position and this rank's RNG states, or None (with a warning) when the state cannot give them."""
    loop = resume_state.get(LOOP_KEY)
    if loop is None:
        logger.warning('Resume: the training state has no srplugins loop position (written by another program): '
                       'the saved epoch restarts from its first batch and the random streams are re-seeded, so the '
                       'run continues but not exactly as an uninterrupted one would.')
        return None
    ranks = loop['ranks']
    world_size = opt.get('world_size', 1)
    if len(ranks) != world_size:
        logger.warning(f'Resume: the training state was written by {len(ranks)} process(es), this run has '
                       f'{world_size}: the data order continues, the random streams are re-seeded.')
        rank_state = None
    else:
        rank_state = ranks[opt.get('rank', 0)]
    if rank_state is None:
        import torch
        rank_state = {'epoch_rng': torch.get_rng_state(), 'rng': capture_rng()}
    return {'epoch': loop['epoch'], 'batches_done': loop['batches_done'], **rank_state}
