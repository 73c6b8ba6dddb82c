"""Training options shared by every srplugins model and the drop-in basicsr models (``SRPlusModel``, ...).

basicsr 1.4.2 trains in float32 only, steps every iteration, never checks a loss and validates on rank 0 while the
other ranks wait. :class:`TrainingOptionsMixin` adds, without rewriting any model's ``optimize_parameters``:

``train`` options
    * ``amp: off | fp16 | bf16`` -- ``torch.autocast`` around the step (forwards and losses). ``fp16`` scales each
      optimizer's losses with its own ``torch.amp.GradScaler`` (generator and discriminator independently); the
      scalers' states are saved in the training state and restored on resume. ``bf16`` needs no scaler and runs on
      CPU too. Weights, optimizer states, validation and saved networks stay float32.
    * ``channels_last: true`` -- networks and their 4-D inputs in ``torch.channels_last`` memory format.
    * ``compile: false | true | <mode>`` -- ``torch.compile`` of the generator (in place, so state-dict keys and
      checkpoints are unchanged); ``<mode>`` is one of ``torch.compile``'s modes.
    * ``grad_clip: <max norm>`` -- ``clip_grad_norm_`` of each optimizer's parameters before its step (after
      unscaling under ``fp16``).
    * ``accum_iter: N`` -- gradient accumulation: losses are divided by N, optimizers step (and gradients are
      cleared) every N iterations; the effective batch is N x ``batch_size_per_gpu``. Save checkpoints at multiples
      of N (gradients are not part of the training state).
    * ``nonfinite: stop | skip`` and ``max_skips`` (default 5) -- the training-health guard, see below.

``val`` options (read when validating)
    * ``self_ensemble: true`` -- x8 geometric self-ensemble (the 8 flips / transposes, outputs mapped back and
      averaged), as EDSR's and A2N's ``--self_ensemble`` (Lim et al. 2017, Sec. 4.3, "geometric self-ensemble").
    * ``tile`` / ``tile_pad`` -- blended overlapping tiles (``srplugins``' seam-free tiler) for large images.
    * ``distributed: true`` -- under DDP every rank validates its share of the images (index ``i`` goes to rank
      ``i % world_size``); metric sums and counts are all-reduced, so the figures equal a rank-0 validation.

How the step is routed: basicsr's models call ``loss.backward()`` and ``optimizer.step()`` themselves. While a step
runs, each ``optimizer_*`` attribute is a thin :class:`_StepControl` around the real optimizer (``self.optimizers``
keeps the real ones, for schedulers and training states) and ``Tensor.backward`` of a scalar loss is routed to the
optimizer whose ``zero_grad`` was called last, which divides it by N and scales it under ``fp16``. Every model's
``optimize_parameters`` (inherited or overridden by a subclass) is wrapped once, so these options work for
basicsr's ``SRModel`` / ``SRGANModel`` / ``RealESRGANModel`` steps and srplugins' own.

Training-health guard: before an optimizer steps, the losses routed to it and (without ``fp16``, whose scaler skips
overflowing steps by design) its gradients are checked. A non-finite value stops every step of that iteration. With
``nonfinite: stop`` (default) the log names the iteration and the non-finite terms (``non-finite loss at iter 7:
l_pix=inf``) and :class:`srplugins.utils.health.TrainingHealthError` is raised before anything new is saved; with
``skip`` the iteration is dropped (its gradients cleared) and training goes on until more than ``max_skips``
iterations were skipped. Saving refuses a network holding NaN or inf. Validation logs every output image that
collapsed to a constant or black image.

Saving: networks and training states are written atomically (:func:`srplugins.utils.atomic.atomic_torch_save`) with
basicsr's file names and retries; network files also hold ``network_opt`` (the ``network_g`` / ``network_d``
options, plain dicts) and ``scale``, so tools can rebuild the network from the file alone. basicsr's
``load_network`` reads them as before (it only looks at ``params`` / ``params_ema``).
"""
import contextlib
import functools
import os
import time
import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only
from collections import OrderedDict
from os import path as osp
from torch.utils.data.dataloader import default_collate

from srplugins.inference import run_network
from srplugins.utils.atomic import atomic_torch_save
from srplugins.utils.health import (TrainingHealthError, collapse_reason, grads_finite, nonfinite_tensors,
                                    nonfinite_terms)

AMP_MODES = ('off', 'fp16', 'bf16')
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
NONFINITE_MODES = ('stop', 'skip')
DEFAULT_MAX_SKIPS = 5


def _plain(value):
    """Option structures as plain dicts / lists (``OrderedDict`` -> ``dict``), readable with ``weights_only=True``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_training_options(train_opt):
    """Validate the mixin's ``train`` options.

    Args:
        train_opt (dict | None): the option file's ``train`` block.

    Returns:
        dict: ``amp`` ('off' | 'fp16' | 'bf16'), ``channels_last`` (bool), ``compile`` (False or a mode string),
        ``grad_clip`` (float | None), ``accum_iter`` (int >= 1), ``nonfinite`` ('stop' | 'skip'), ``max_skips``.

    Raises:
        ValueError: naming the option and the accepted values.
    """
    train_opt = train_opt or {}
    amp = train_opt.get('amp', 'off')
    if amp is None or amp is False:  # YAML 1.1 reads a bare `off` as false
        amp = 'off'
    if not isinstance(amp, str) or amp.lower() not in AMP_MODES:
        raise ValueError(f'train.amp must be one of {", ".join(AMP_MODES)}, got {amp!r}.')
    amp = amp.lower()

    channels_last = train_opt.get('channels_last', False)
    if not isinstance(channels_last, bool):
        raise ValueError(f'train.channels_last must be true or false, got {channels_last!r}.')

    compile_opt = train_opt.get('compile', False)
    if compile_opt is None or compile_opt is False:
        compile_opt = False
    elif compile_opt is True:
        compile_opt = 'default'
    elif not isinstance(compile_opt, str) or compile_opt not in COMPILE_MODES:
        raise ValueError(f'train.compile must be false, true or a torch.compile mode ({", ".join(COMPILE_MODES)}), '
                         f'got {compile_opt!r}.')

    grad_clip = train_opt.get('grad_clip')
    if grad_clip is not None:
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip > 0:
            raise ValueError(
                f'train.grad_clip must be a positive max gradient norm (or ~ for none), got {grad_clip!r}.')
        grad_clip = float(grad_clip)

    accum_iter = train_opt.get('accum_iter', 1)
    if isinstance(accum_iter, bool) or not isinstance(accum_iter, int) or accum_iter < 1:
        raise ValueError(f'train.accum_iter must be an integer >= 1, got {accum_iter!r}.')

    nonfinite = train_opt.get('nonfinite', 'stop')
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(f'train.nonfinite must be one of {", ".join(NONFINITE_MODES)}, got {nonfinite!r}.')
    max_skips = train_opt.get('max_skips', DEFAULT_MAX_SKIPS)
    if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 0:
        raise ValueError(f'train.max_skips must be an integer >= 0, got {max_skips!r}.')
    return dict(
        amp=amp,
        channels_last=channels_last,
        compile=compile_opt,
        grad_clip=grad_clip,
        accum_iter=accum_iter,
        nonfinite=nonfinite,
        max_skips=max_skips)


def describe_training_options(options):
    """The one log line stating what is in effect, e.g. ``precision: bf16 autocast, channels_last: True, ...``."""
    precision = {
        'off': 'fp32',
        'bf16': 'bf16 autocast',
        'fp16': 'fp16 autocast + GradScaler (per optimizer)'
    }[options['amp']]
    compile_str = 'False' if not options['compile'] else (
        'True' if options['compile'] == 'default' else f'True (mode {options["compile"]})')
    return (f'precision: {precision}, channels_last: {options["channels_last"]}, compile: {compile_str}, '
            f'grad_clip: {options["grad_clip"]}, accum_iter: {options["accum_iter"]}, '
            f'nonfinite: {options["nonfinite"]}' +
            (f' (max_skips {options["max_skips"]})' if options['nonfinite'] == 'skip' else ''))


def _to_channels_last(module, args):
    """Forward pre-hook: 4-D tensor inputs in channels_last memory format."""
    return tuple(
        a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
        for a in args)


def self_ensemble_forward(forward, x):
    """x8 geometric self-ensemble (EDSR / A2N ``--self_ensemble``).

    Runs ``forward`` on the 8 dihedral transforms of ``x`` (identity, horizontal / vertical mirror, transpose and
    their combinations), maps every output back with the inverse transform and averages the 8 results.

    Args:
        forward (callable): (B, C, H, W) -> (B, C', sH, sW); it must accept transposed (W x H) inputs.
        x (Tensor): (B, C, H, W).

    Returns:
        Tensor: (B, C', sH, sW), the mean of the 8 back-transformed outputs.
    """
    total = None
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_w in (False, True):
                dims = [d for d, on in ((-2, flip_h), (-1, flip_w)) if on]
                t = x.transpose(-2, -1) if transpose else x
                t = torch.flip(t, dims) if dims else t
                out = forward(t)
                out = torch.flip(out, dims) if dims else out
                out = out.transpose(-2, -1) if transpose else out
                out = out.float()
                total = out if total is None else total + out
    return total / 8


class _StepControl:
    """Stands in for one optimizer during training: routes loss scaling, accumulation, clipping and health checks.

    Attributes other than ``zero_grad`` / ``step`` are the real optimizer's (``param_groups``, ``state_dict``...).
    """

    def __init__(self, model, name, optimizer, scaler):
        self._model = model
        self._name = name
        self.optimizer = optimizer
        self.scaler = scaler
        self._losses = []

    def __getattr__(self, item):
        return getattr(self.optimizer, item)

    @property
    def network_name(self):
        return 'net_' + self._name[len('optimizer_'):] if self._name.startswith('optimizer_') else self._name

    def params(self):
        return [p for group in self.optimizer.param_groups for p in group['params']]

    def zero_grad(self, set_to_none=True):
        model = self._model
        model._routed_optimizer = self
        if model._accumulation_starts():
            self.optimizer.zero_grad(set_to_none=set_to_none)

    def scale_loss(self, loss):
        """The tensor to back-propagate for ``loss``: divided by ``accum_iter``, scaled under fp16."""
        self._losses.append(loss.detach())
        accum = self._model._train_options['accum_iter']
        if accum > 1:
            loss = loss / accum
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        return loss

    def step(self, closure=None):
        model = self._model
        losses, self._losses = self._losses, []
        if model._step_failure is not None:  # an earlier optimizer of this iteration failed: no step at all
            self._drop_gradients()
            return None
        if losses and not bool(torch.isfinite(torch.stack([v.float().reshape(()) for v in losses])).all()):
            model._step_failure = ('loss', self)
            self._drop_gradients()
            return None
        if not model._accumulation_ends():
            return None
        params = [p for p in self.params() if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # overflow under fp16 is the scaler's business: it skips the step
        elif not grads_finite(params):
            model._step_failure = ('gradient', self)
            self._drop_gradients()
            return None
        clip = model._train_options['grad_clip']
        if clip is not None and params:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if self.scaler is not None:
            result = self.scaler.step(self.optimizer, *(() if closure is None else (closure, )))
            self.scaler.update()
            return result
        return self.optimizer.step(*(() if closure is None else (closure, )))

    def _drop_gradients(self):
        if self._model._train_options['nonfinite'] == 'skip':
            self.optimizer.zero_grad(set_to_none=True)


def _guard_step(fn):
    """Wrap an ``optimize_parameters`` so the outermost call runs under the mixin's step control."""

    @functools.wraps(fn)
    def optimize_parameters(self, current_iter, *args, **kwargs):
        if getattr(self, '_step_active', False) or getattr(self, '_train_options', None) is None:
            return fn(self, current_iter, *args, **kwargs)
        return self._controlled_step(fn, current_iter, *args, **kwargs)

    optimize_parameters._srplugins_guarded = True
    return optimize_parameters


@contextlib.contextmanager
def _routed_backward(model):
    """Route ``Tensor.backward()`` of scalar losses to the current :class:`_StepControl` while a step runs."""
    original = torch.Tensor.backward

    def backward(tensor, gradient=None, *args, **kwargs):
        control = model._routed_optimizer
        if control is not None and gradient is None and tensor.numel() == 1:
            tensor = control.scale_loss(tensor)
        return original(tensor, gradient, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


class TrainingOptionsMixin:
    """Adds the ``train.*`` / ``val.*`` options of the module docstring to a basicsr model.

    Place it directly before the basicsr base class: ``class M(OtherMixins, TrainingOptionsMixin, SRGANModel)``.
    Hooks: ``setup_optimizers`` (options parsed, networks converted, optimizers wrapped, log line),
    ``optimize_parameters`` (every definition in a subclass is wrapped too), ``save_network``,
    ``save_training_state``, ``resume_training``, ``test``, ``nondist_validation`` and ``dist_validation``.
    """

    _train_options = None
    _step_active = False
    _routed_optimizer = None
    _step_failure = None
    _health_skips = 0
    _current_iter = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get('optimize_parameters')
        if fn is not None and not getattr(fn, '_srplugins_guarded', False):
            cls.optimize_parameters = _guard_step(fn)

    # ------------------------------------------------------------------------------------------------------------ #
    #  set-up
    # ------------------------------------------------------------------------------------------------------------ #
    def setup_optimizers(self):
        options = parse_training_options(self.opt.get('train'))
        self._configure_networks(options)
        super().setup_optimizers()
        self._train_options = options
        self._health_skips = 0
        self._grad_scalers = OrderedDict()
        controls = []
        for name in sorted(vars(self)):
            optimizer = vars(self)[name]
            if name.startswith('optimizer') and isinstance(optimizer, torch.optim.Optimizer):
                scaler = torch.amp.GradScaler(self.device.type) if options['amp'] == 'fp16' else None
                if scaler is not None:
                    self._grad_scalers[name] = scaler
                control = _StepControl(self, name, optimizer, scaler)
                setattr(self, name, control)
                controls.append(control)
        self._step_controls = controls
        get_root_logger().info(f'{type(self).__name__} training options: {describe_training_options(options)}')

    def _configure_networks(self, options):
        nets = [getattr(self, name) for name in ('net_g', 'net_d', 'net_g_ema') if hasattr(self, name)]
        if options['channels_last']:
            for net in nets:
                net.to(memory_format=torch.channels_last)
                net.register_forward_pre_hook(_to_channels_last)
        if options['compile']:
            dynamo = getattr(torch, '_dynamo', None)
            supported = hasattr(torch, 'compile') and hasattr(torch.nn.Module, 'compile')
            if supported and dynamo is not None and hasattr(dynamo, 'is_dynamo_supported'):
                supported = dynamo.is_dynamo_supported()
            if not supported:
                raise ValueError(f'train.compile: torch.compile is not supported by this installation (torch '
                                 f'{torch.__version__}); set train.compile: false.')
            self.net_g.compile(mode=None if options['compile'] == 'default' else options['compile'])

    def _autocast(self):
        amp = self._train_options['amp']
        if amp == 'off':
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16 if amp == 'bf16' else torch.float16)

    # ------------------------------------------------------------------------------------------------------------ #
    #  the step
    # ------------------------------------------------------------------------------------------------------------ #
    def _accumulation_starts(self):
        return (self._current_iter - 1) % self._train_options['accum_iter'] == 0

    def _accumulation_ends(self):
        return self._current_iter % self._train_options['accum_iter'] == 0

    @_guard_step
    def optimize_parameters(self, current_iter, *args, **kwargs):
        return super().optimize_parameters(current_iter, *args, **kwargs)

    def _controlled_step(self, fn, current_iter, *args, **kwargs):
        self._step_active = True
        self._current_iter = int(current_iter)
        self._routed_optimizer = None
        self._step_failure = None
        try:
            with self._autocast(), _routed_backward(self):
                result = fn(self, current_iter, *args, **kwargs)
        finally:
            self._step_active = False
            self._routed_optimizer = None
        if self._step_failure is not None:
            self._handle_nonfinite(current_iter)
        return result

    def _handle_nonfinite(self, current_iter):
        kind, control = self._step_failure
        self._step_failure = None
        terms = nonfinite_terms(getattr(self, 'log_dict', None))
        if kind == 'loss':
            message = (f'non-finite loss at iter {current_iter}: ' +
                       (', '.join(terms) if terms else f'the loss of {control.network_name}'))
        else:
            message = f'non-finite gradient at iter {current_iter}: {control.network_name}'
            if terms:
                message += f' ({", ".join(terms)})'
        logger = get_root_logger()
        options = self._train_options
        if options['nonfinite'] == 'skip':
            self._health_skips += 1
            if self._health_skips <= options['max_skips']:
                logger.warning(f'{message}: iteration skipped ({self._health_skips} of train.max_skips='
                               f'{options["max_skips"]})')
                return
            message += (f'; {self._health_skips} non-finite iterations, more than train.max_skips='
                        f'{options["max_skips"]}')
        message += ' - training stopped; nothing saved for this iteration (lower the learning rate, or resume from ' \
                   'the last good state with --auto_resume)'
        logger.error(message)
        raise TrainingHealthError(message)

    # ------------------------------------------------------------------------------------------------------------ #
    #  saving and resuming
    # ------------------------------------------------------------------------------------------------------------ #
    def _network_options_for(self, net_label):
        key = 'network_' + net_label[len('net_'):] if net_label.startswith('net_') else None
        return _plain(self.opt[key]) if key and isinstance(self.opt.get(key), dict) else None

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """basicsr's ``save_network`` (file name ``<net_label>_<iter|latest>.pth``, 3 tries), written atomically,
        refusing non-finite tensors and recording ``network_opt`` and ``scale``.

        Raises:
            TrainingHealthError: a network to be saved holds NaN or inf (nothing is written).
        """
        label = 'latest' if current_iter == -1 else current_iter
        save_path = osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(param_keys):
            raise ValueError('save_network: the lengths of net and param_key differ.')
        save_dict = {}
        for net_, key_ in zip(nets, param_keys):
            state_dict = OrderedDict()
            for name, value in self.get_bare_model(net_).state_dict().items():
                name = name[7:] if name.startswith('module.') else name
                state_dict[name] = value.detach().cpu().contiguous()
            bad = nonfinite_tensors(state_dict)
            if bad:
                message = (f'refusing to save {osp.basename(save_path)}: network {net_label} ({key_}) holds non-finite '
                           f'values in {len(bad)} of {len(state_dict)} tensors (first: {bad[0]})')
                get_root_logger().error(message)
                raise TrainingHealthError(message)
            save_dict[key_] = state_dict
        network_opt = self._network_options_for(net_label)
        if network_opt is not None:
            save_dict['network_opt'] = network_opt
        if self.opt.get('scale') is not None:
            save_dict['scale'] = self.opt['scale']
        self._save_with_retries(save_dict, save_path, 'model')

    @staticmethod
    def _save_with_retries(obj, save_path, what):
        logger = get_root_logger()
        for remaining in (2, 1, 0):
            try:
                atomic_torch_save(obj, save_path)
                return
            except Exception as err:  # basicsr's semantics: warn, wait, try again (3 tries), then carry on
                logger.warning(f'Save {what} error: {err}, remaining retry times: {remaining}')
                if remaining:
                    time.sleep(1)
        logger.warning(f'Still cannot save {save_path}. Just ignore it.')

    @master_only
    def save_training_state(self, epoch, current_iter):
        """basicsr's training state (``<iter>.state``) written atomically, plus the fp16 GradScalers' states
        (``grad_scalers``: optimizer attribute -> state) and the guard's skip count (``health_skips``)."""
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers]
        }
        if getattr(self, '_grad_scalers', None):
            state['grad_scalers'] = {name: scaler.state_dict() for name, scaler in self._grad_scalers.items()}
        if self._train_options is not None:
            state['health_skips'] = self._health_skips
        os.makedirs(self.opt['path']['training_states'], exist_ok=True)
        save_path = osp.join(self.opt['path']['training_states'], f'{current_iter}.state')
        self._save_with_retries(state, save_path, 'training state')

    def resume_training(self, resume_state):
        """basicsr's resume, then the GradScalers' states and the skip count."""
        super().resume_training(resume_state)
        saved = resume_state.get('grad_scalers') or {}
        scalers = getattr(self, '_grad_scalers', None) or {}
        if scalers and not saved:
            get_root_logger().warning('train.amp: fp16: the training state holds no GradScaler state (saved without '
                                      'fp16); the scalers start afresh.')
        for name, scaler in scalers.items():
            if name in saved:
                scaler.load_state_dict(saved[name])
        self._health_skips = int(resume_state.get('health_skips', 0))

    # ------------------------------------------------------------------------------------------------------------ #
    #  validation
    # ------------------------------------------------------------------------------------------------------------ #
    def _val_options(self):
        val = self.opt.get('val') or {}
        tile = val.get('tile') or 0
        tile_pad = val.get('tile_pad', 32)
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
            raise ValueError(f'val.tile must be a tile size in input pixels (0 or ~ for none), got {tile!r}.')
        if isinstance(tile_pad, bool) or not isinstance(tile_pad, int) or tile_pad < 0:
            raise ValueError(f'val.tile_pad must be an integer >= 0, got {tile_pad!r}.')
        ensemble = val.get('self_ensemble', False)
        if not isinstance(ensemble, bool):
            raise ValueError(f'val.self_ensemble must be true or false, got {ensemble!r}.')
        return ensemble, tile, tile_pad

    def _size_multiple(self):
        try:
            from srplugins.checkpoints import size_multiple_of
            net_opt = dict(self.opt['network_g'])
            return int(size_multiple_of(net_opt.pop('type'), net_opt))
        except Exception:  # an architecture the checkpoint families do not know: no constraint
            return 1

    def network_forward(self, net, x, scale=None):
        """Evaluation forward with ``val.self_ensemble`` and ``val.tile`` / ``val.tile_pad``, in float32.

        Args:
            net (nn.Module): the network (a DDP / DataParallel wrapper is unwrapped, so ranks run independently).
            x (Tensor): (B, C, H, W) input.
            scale (float | None): output / input size ratio for tiling; default ``opt['scale']``.

        Returns:
            Tensor: (B, C', sH, sW) float32.
        """
        ensemble, tile, tile_pad = self._val_options()
        bare = self.get_bare_model(net)
        scale = self.opt.get('scale', 1) if scale is None else scale
        if tile:
            multiple = self._size_multiple()

            def forward(t):
                return torch.cat([
                    run_network(bare, t[i:i + 1], scale, tile=tile, tile_pad=tile_pad, size_multiple=multiple)
                    for i in range(t.size(0))
                ])
        else:
            forward = bare
        with torch.no_grad():
            return self_ensemble_forward(forward, x) if ensemble else forward(x).float()

    def test(self):
        ensemble, tile, _ = self._val_options()
        if not ensemble and not tile and not self.opt.get('dist', False):
            return super().test()  # under DDP the wrapper is bypassed: ranks validate independently
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        self.output = self.network_forward(net, self.lq)
        if was_training:
            net.train()

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._validate(dataloader, range(len(dataloader.dataset)), current_iter, tb_logger, save_img, reduce=False)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if (self.opt.get('val') or {}).get('distributed', False):
            world, rank = self.opt.get('world_size', 1), self.opt.get('rank', 0)
            indices = range(rank, len(dataloader.dataset), world)
            self._validate(dataloader, indices, current_iter, tb_logger, save_img, reduce=True)
        elif self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def _validate(self, dataloader, indices, current_iter, tb_logger, save_img, reduce):
        """basicsr's ``SRModel.nondist_validation`` over ``indices`` of the dataset, with collapse warnings and,
        with ``reduce``, metric sums and counts all-reduced over the ranks (every rank logs nothing but rank 0)."""
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        metrics_opt = self.opt['val'].get('metrics')
        with_metrics = metrics_opt is not None
        if with_metrics:
            self._initialize_best_metric_results(dataset_name)
        sums = OrderedDict((name, 0.0) for name in (metrics_opt or {}))
        count = 0
        logger = get_root_logger()
        was_train, self.is_train = self.is_train, False  # Real-ESRGAN's feed_data must not degrade val data
        try:
            for index in indices:
                val_data = default_collate([dataset[index]])
                img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
                self.feed_data(val_data)
                self.test()
                visuals = self.get_current_visuals()
                reason = collapse_reason(visuals['result'][0].clamp(0, 1))
                if reason:
                    logger.warning(f'Validation {dataset_name} at iter {current_iter}: output of {img_name} '
                                   f'collapsed ({reason}).')
                metric_data = {'img': tensor2img([visuals['result']])}
                if 'gt' in visuals:
                    metric_data['img2'] = tensor2img([visuals['gt']])
                    if hasattr(self, 'gt'):
                        del self.gt
                del self.lq
                del self.output
                if save_img:
                    self._save_validation_image(metric_data['img'], img_name, dataset_name, current_iter)
                if with_metrics:
                    for name, opt_ in metrics_opt.items():
                        sums[name] += float(calculate_metric(metric_data, opt_))
                count += 1
        finally:
            self.is_train = was_train
        if reduce and self.opt.get('dist', False):
            import torch.distributed as dist
            device = self.device if dist.get_backend() == 'nccl' else torch.device('cpu')
            packed = torch.tensor(list(sums.values()) + [float(count)], dtype=torch.float64, device=device)
            dist.all_reduce(packed)
            values = packed.cpu().tolist()
            sums = OrderedDict(zip(sums.keys(), values[:-1]))
            count = int(round(values[-1]))
        if with_metrics and count:
            self.metric_results = OrderedDict((name, value / count) for name, value in sums.items())
            for name, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, name, value, current_iter)
            if self.opt.get('rank', 0) == 0:
                self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _save_validation_image(self, img, img_name, dataset_name, current_iter):
        if self.opt['is_train']:
            path = osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}.png')
        else:
            suffix = self.opt['val'].get('suffix') or self.opt['name']
            path = osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}.png')
        imwrite(img, path)


__all__ = [
    'TrainingOptionsMixin', 'parse_training_options', 'describe_training_options', 'self_ensemble_forward',
    'TrainingHealthError'
]
