"""DASR training logic: the down-sampling stage (DSN) and the domain-distance aware SR stage.

Paper: Wei et al., "Unsupervised Real-world Image Super Resolution via Domain-distance Aware Training", CVPR 2021
(arXiv 2004.01178). Sec. 3.1: a down-sampling network ``G_d`` maps clean HR images to the real-LR domain; content is
tied to the bicubic down-scale through low frequencies, realism is learnt by a discriminator that only sees high
frequencies. Sec. 3.2: the SR network is trained on the generated pairs with a loss weighted by the domain-distance
map, plus an adversarial loss on the high frequencies of SR(real LR) against unpaired HR images.

Official code followed: ShuhangGu/DASR ``codes/DSN/train.py`` + ``loss.py`` and ``codes/SRN/models/DASR_model.py``.
Deliberate differences (each fixes a bug of the official code, see docs/DASR.md):

* DSN: the discriminator is updated on detached fakes, then the generator's adversarial term is re-evaluated with the
  updated discriminator (the official loop back-propagates through a stale graph, a RuntimeError on torch >= 1.5).
  That extra forward normalises with batch statistics as usual but leaves the running statistics of the
  discriminator's BatchNorm layers untouched, so they are updated twice per iteration (real, fake), as officially.
* GAN terms use BCE-with-logits (``basicsr.losses.GANLoss('vanilla')``) instead of ``-log(sigmoid + 1e-8)``.
* The learning-rate decay of the DSN is per iteration (``LinearDecayLR``) instead of per epoch.
* DSN checkpoints additionally store every network hyper-parameter (``models/dsn_<iter>.pth``) so the generation
  step rebuilds exactly what was trained.
* The SR model is registered under a working name (the official JSONs name an unregistered model) and its
  frequency-separation filters do not depend on ``fs_kernel_size`` being set for wavelets.
* Both models log the discriminator outputs as mean probabilities ``out_d_real`` / ``out_d_fake`` (sigmoid of the
  logits; the official SRN logs raw ``D_t`` logits, the official DSN probabilities).
"""
import copy
import inspect
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from srplugins.models.training_options import TrainingOptionsMixin, _plain
from srplugins.ops.frequency import FILTER_TYPES, frequency_separation
from srplugins.utils.health import TrainingHealthError, nonfinite_tensors

DSN_BUNDLE_FORMAT = 'srplugins.DASR.dsn.v1'

# official DSN defaults (codes/DSN/train.py argparse): w_col 1, w_per 0.01, w_tex 0.005, Adam(1e-4, betas 0.5/0.999)
DSN_DEFAULT_PERCEPTUAL = {'type': 'LPIPSLoss', 'loss_weight': 0.01, 'net': 'alex', 'version': '0.1'}
DSN_DEFAULT_GAN = {'type': 'SigmoidLogGANLoss', 'eps': 1e-8, 'loss_weight': 0.005}
DSN_DEFAULT_OPTIM = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.5, 0.999]}
DDM_WEIGHTABLE = ('pixel', 'pixel_ll', 'perceptual')


class LinearDecay:
    """LR factor: 1 until ``start_iter``, then linear decay to 0 at ``total_iter`` (official DSN ``LambdaLR`` rule,
    expressed in iterations). A class (not a lambda) so that scheduler states stay plain data."""

    def __init__(self, start_iter, total_iter):
        if not (0 <= start_iter < total_iter):
            raise ValueError('LinearDecayLR needs 0 <= start_iter < total_iter, '
                             f'got start_iter={start_iter}, total_iter={total_iter}.')
        self.start_iter = int(start_iter)
        self.total_iter = int(total_iter)

    def __call__(self, step):
        if step < self.start_iter:
            return 1.0
        return max(0.0, 1.0 - (step - self.start_iter) / (self.total_iter - self.start_iter))


def _set_requires_grad(net, flag):
    for p in net.parameters():
        p.requires_grad = flag


def _running_stats(net):
    """Copies of the running-statistics buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) of every
    BatchNorm / tracking InstanceNorm layer of ``net``."""
    norm_base = getattr(nn.modules.batchnorm, '_NormBase', nn.modules.batchnorm._BatchNorm)
    saved = []
    for module in net.modules():
        if isinstance(module, norm_base):
            saved.append((module, {name: buf.detach().clone() for name, buf in module.named_buffers(recurse=False)}))
    return saved


def _restore_running_stats(saved):
    """Writes back what :func:`_running_stats` copied. Call it after ``backward``: the norm layers' autograd nodes
    keep the running buffers, so restoring them in place between forward and backward is an autograd error."""
    with torch.no_grad():
        for module, buffers in saved:
            for name, value in buffers.items():
                getattr(module, name).copy_(value)


def _optional_loss(train_opt, key, default):
    """Builds ``train_opt[key]``; absent key -> ``default``; key present but null -> no loss."""
    if key in train_opt:
        loss_opt = train_opt[key]
        return build_loss(copy.deepcopy(loss_opt)) if loss_opt else None
    return build_loss(copy.deepcopy(default)) if default else None


@MODEL_REGISTRY.register()
class DASRDownsamplerModel(TrainingOptionsMixin, SRGANModel):
    """Trains the DASR down-sampling network ``G_d`` and its frequency-separation discriminator ``D_y`` (Sec. 3.1).

    Networks: ``network_g`` = ``DASRDownsampler`` (HR -> LR, or bicubic LR -> LR when its ``scale`` is 1),
    ``network_d`` = ``DASRFSDiscriminator``. Data: ``DASRUnpairedDataset`` (``gt`` HR crop, ``lq_bicubic``,
    ``lq_real``).

    Generator loss (official ``GeneratorLoss``), all computed against the bicubic down-scale ``y^b``:
    ``col_opt`` (``LowFrequencyL1Loss``, default weight 1 with the discriminator's filter, valid filtering),
    ``perceptual_opt`` (``LPIPSLoss`` alex v0.1, default weight 0.01) and ``gan_opt`` (``SigmoidLogGANLoss``, the
    official ``-log(sigmoid(z) + 1e-8)``, on the discriminator logits of ``G_d(x)``, default weight 0.005; ``GANLoss``
    vanilla is BCE-with-logits without the epsilon, which trains differently once D is confident: docs/DASR.md). A
    missing key uses the official default; a key set to null switches the term off. Discriminator loss:
    ``L(D(y^r), real) + L(D(G_d(x)), fake)`` (no 1/2, as official).

    Options under ``train``: ``disc_freq`` / ``gen_freq`` (update every N iterations, default 1), ``optim_g`` /
    ``optim_d`` (default Adam lr 1e-4, betas 0.5/0.999) and ``scheduler`` (``LinearDecayLR`` with ``start_iter`` and
    ``total_iter``, or any basicsr scheduler).

    BatchNorm discriminators: the running statistics are updated by the two forwards of the discriminator step
    (real, then fake), as in the official loop; the generator step's forward through ``D`` uses batch statistics
    (train mode, gradients flow to ``G_d``) and then restores the running statistics. With ``disc_freq > 1`` they
    are updated only in the iterations that step ``D`` (the official loop runs both forwards every iteration).

    Validation / test: with basicsr's ``PairedImageDataset`` (``gt`` = HR, ``lq`` = paired real LR), ``G_d(HR)`` is
    compared with the real LR by the configured metrics. In this model's validation ``self.lq`` holds the network
    input (the HR image) and ``self.gt`` the reference real LR. A dataset with only ``lq`` (``SingleImageDataset``)
    is treated as HR input without reference.

    Checkpoints: besides basicsr's ``net_g_*.pth`` / ``net_d_*.pth``, ``models/dsn_<iter>.pth`` holds both state
    dicts plus ``network_g`` and ``network_d`` constructor options, the input for ``scripts/dasr_generate_data.py``.
    """

    # validation compares G(HR) with the real LR: the fitting baseline is the bicubic down-scale of HR
    bicubic_baseline_mode = 'downscale'

    def init_training_settings(self):
        train_opt = self.opt['train']
        logger = get_root_logger()
        if train_opt.get('ema_decay', 0) > 0:
            logger.warning('DASRDownsamplerModel does not use ema_decay; it is ignored.')
        self.ema_decay = 0

        self.net_d = build_network(self.opt['network_d'])
        self.net_d = self.model_to_device(self.net_d)
        self.print_network(self.net_d)
        load_path = self.opt['path'].get('pretrain_network_d', None)
        if load_path is not None:
            param_key = self.opt['path'].get('param_key_d', 'params')
            self.load_network(self.net_d, load_path, self.opt['path'].get('strict_load_d', True), param_key)
        self.net_g.train()
        self.net_d.train()

        bare_d = self.get_bare_model(self.net_d)
        d_filter = getattr(bare_d, 'filter_type', 'gau')
        default_col = {
            'type': 'LowFrequencyL1Loss',
            'loss_weight': 1.0,
            'filter_type': d_filter if d_filter in FILTER_TYPES else 'gau',
            'kernel_size': getattr(bare_d, 'kernel_size', 5),
            'padding': False
        }
        self.cri_gan = _optional_loss(train_opt, 'gan_opt', DSN_DEFAULT_GAN)
        if self.cri_gan is None:
            raise ValueError('DASRDownsamplerModel needs train.gan_opt (the adversarial term); got null.')
        self.cri_col = _optional_loss(train_opt, 'col_opt', default_col)
        self.cri_perceptual = _optional_loss(train_opt, 'perceptual_opt', DSN_DEFAULT_PERCEPTUAL)
        for name in ('cri_col', 'cri_perceptual', 'cri_gan'):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(self.device))

        self.disc_freq = int(train_opt.get('disc_freq', 1))
        self.gen_freq = int(train_opt.get('gen_freq', 1))
        if self.disc_freq < 1 or self.gen_freq < 1:
            raise ValueError(f'train.disc_freq and train.gen_freq must be >= 1, got {self.disc_freq}, {self.gen_freq}.')
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_optimizers(self):
        train_opt = self.opt['train']
        for key in ('optim_g', 'optim_d'):
            train_opt.setdefault(key, copy.deepcopy(DSN_DEFAULT_OPTIM))
        super().setup_optimizers()

    def setup_schedulers(self):
        sched_opt = copy.deepcopy(self.opt['train'].get('scheduler'))
        if sched_opt is None:
            return
        if sched_opt.get('type') == 'LinearDecayLR':
            for optimizer in self.optimizers:
                self.schedulers.append(
                    LambdaLR(optimizer, LinearDecay(sched_opt['start_iter'], sched_opt['total_iter'])))
        else:
            super().setup_schedulers()

    @property
    def _input_is_bicubic(self):
        return getattr(self.get_bare_model(self.net_g), 'scale', 4) == 1

    def feed_data(self, data):
        if 'lq_real' in data:  # training batch of DASRUnpairedDataset
            self.hr = data['gt'].to(self.device)
            self.lq_bicubic = data['lq_bicubic'].to(self.device)
            self.lq_real = data['lq_real'].to(self.device)
        elif 'gt' in data:  # paired validation: HR input, real LR reference
            self.lq = data['gt'].to(self.device)
            self.gt = data['lq'].to(self.device)
        else:  # HR images only
            self.lq = data['lq'].to(self.device)

    def optimize_parameters(self, current_iter):
        update_d = current_iter % self.disc_freq == 0
        update_g = current_iter % self.gen_freq == 0
        g_input = self.lq_bicubic if self._input_is_bicubic else self.hr
        with torch.set_grad_enabled(update_g):
            fake = self.net_g(g_input)
        self.output = fake
        loss_dict = OrderedDict()

        if update_d:
            _set_requires_grad(self.net_d, True)
            self.optimizer_d.zero_grad()
            real_pred = self.net_d(self.lq_real)
            l_d_real = self.cri_gan(real_pred, True, is_disc=True)
            l_d_real.backward()
            fake_pred = self.net_d(fake.detach())
            l_d_fake = self.cri_gan(fake_pred, False, is_disc=True)
            l_d_fake.backward()
            self.optimizer_d.step()
            loss_dict['l_d_real'] = l_d_real
            loss_dict['l_d_fake'] = l_d_fake
            loss_dict['out_d_real'] = torch.sigmoid(real_pred.detach()).mean()
            loss_dict['out_d_fake'] = torch.sigmoid(fake_pred.detach()).mean()

        if update_g:
            _set_requires_grad(self.net_d, False)
            self.optimizer_g.zero_grad()
            l_g_total = 0
            if self.cri_col is not None:
                l_g_col = self.cri_col(fake, self.lq_bicubic)
                l_g_total = l_g_total + l_g_col
                loss_dict['l_g_col'] = l_g_col
            if self.cri_perceptual is not None:
                l_g_percep = self.cri_perceptual(fake, self.lq_bicubic)
                if isinstance(l_g_percep, tuple):  # basicsr PerceptualLoss returns (percep, style)
                    l_g_percep = sum(v for v in l_g_percep if v is not None)
                l_g_total = l_g_total + l_g_percep
                loss_dict['l_g_percep'] = l_g_percep
            d_stats = _running_stats(self.net_d)
            l_g_gan = self.cri_gan(self.net_d(fake), True, is_disc=False)
            l_g_total = l_g_total + l_g_gan
            loss_dict['l_g_gan'] = l_g_gan
            l_g_total.backward()
            _restore_running_stats(d_stats)  # the D step's two forwards are the only statistics updates
            self.optimizer_g.step()
            _set_requires_grad(self.net_d, True)

        self.log_dict = self.reduce_loss_dict(loss_dict)

    def test(self):
        self.net_g.eval()
        with torch.no_grad():
            net_in = self.lq
            if self._input_is_bicubic:
                from basicsr.utils.matlab_functions import imresize
                scale = self.opt.get('scale', 4)
                net_in = torch.stack([imresize(img.cpu(), 1 / scale).clamp(0, 1) for img in self.lq]).to(self.device)
            self.output = self.network_forward(
                self.net_g, net_in, scale=1 if self._input_is_bicubic else 1 / self.opt.get('scale', 4))
        self.net_g.train()

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        self.save_dsn_bundle(current_iter)

    @master_only
    def save_dsn_bundle(self, current_iter):
        """Writes ``models/dsn_<iter>.pth``: both state dicts and the constructor options of both networks."""
        import os.path as osp
        bare_g, bare_d = self.get_bare_model(self.net_g), self.get_bare_model(self.net_d)
        net_g_opt = copy.deepcopy(dict(self.opt['network_g']))
        net_d_opt = bare_d.config() if hasattr(bare_d, 'config') else copy.deepcopy(dict(self.opt['network_d']))
        bundle = {
            'format': DSN_BUNDLE_FORMAT,
            'iter': current_iter,
            'scale': self.opt.get('scale', 4),
            'network_g': net_g_opt,
            'network_d': net_d_opt,
            'params_g': {
                k: v.cpu()
                for k, v in bare_g.state_dict().items()
            },
            'params_d': {
                k: v.cpu()
                for k, v in bare_d.state_dict().items()
            }
        }
        label = 'latest' if current_iter == -1 else current_iter
        for key in ('params_g', 'params_d'):
            bad = nonfinite_tensors(bundle[key])
            if bad:
                raise TrainingHealthError(f'refusing to save dsn_{label}.pth: {key} holds non-finite values in '
                                          f'{len(bad)} tensors (first: {bad[0]})')
        self._save_with_retries(_plain(bundle), osp.join(self.opt['path']['models'], f'dsn_{label}.pth'), 'model')


@MODEL_REGISTRY.register()
class DASRModel(TrainingOptionsMixin, SRGANModel):
    """Domain-distance aware SR training (DASR Sec. 3.2; official ``DASR_Model``).

    Every batch of ``DASRPairedDataset`` holds ``B`` generated pairs (``lq``, ``gt``, ``ddm``) and ``B`` unpaired
    real-domain samples (``lq_real``, ``gt_unpair``). One generator pass runs over ``[lq; lq_real]`` (``2B`` images).

    Generator loss:

    * supervised, on the generated pairs: ``pixel_opt`` (``DomainDistanceWeightedL1Loss``; the domain-distance map is
      bilinearly up-sampled to HR size, align_corners False), ``pixel_ll_opt`` (``LowFrequencyL1Loss`` on the low
      band of the frequency separation; ``filter_type`` / ``kernel_size`` / ``padding`` default to ``fs``) and
      ``perceptual_opt`` (``LPIPSLoss``, or basicsr ``PerceptualLoss`` for the RealSR recipe);
    * unsupervised: ``gan_opt`` (``GANLoss`` vanilla, official ``gan_H_target``) on ``D_t(high(SR(lq_real)))``.

    ``ddm_weighted`` (list, default ``['pixel']`` as official) says which supervised terms the domain-distance map
    weights: any of ``pixel``, ``pixel_ll``, ``perceptual``.

    Discriminator ``D_t`` (``network_d``, e.g. ``DASRPatchDiscriminator``) after the G step:
    ``(BCE(D_t(high(gt_unpair)), 1) + BCE(D_t(high(SR(lq_real)).detach()), 0)) / 2``.

    Frequency separation (``train.fs``): ``type`` ``wavelet`` (default; high = 9-channel Haar bands, low = 0.5 LL),
    ``gau`` or ``avg_pool`` (``kernel_size`` default 9, high = 0.5 + 0.5 (x - low)); ``norm`` (default true).

    ``D_t`` input channels (``network_d.num_in_ch``) must match the frequency separation: ``3 C`` for wavelet (9 for
    RGB), ``C`` for gau / avg_pool, with ``C`` = ``network_g.num_out_ch``; anything else is a ValueError.

    G is updated when ``current_iter % net_d_iters == 0`` and ``current_iter > net_d_init_iters`` (basicsr
    semantics; official ``G_update_inter``); D every iteration. The generator step's forward through ``D_t`` runs
    in train mode and is not excluded from running statistics, as in the official ``DASR_Model`` and basicsr's
    ``SRGANModel`` (the official ``D_t`` uses InstanceNorm without running statistics, so this only matters for a
    BatchNorm ``network_d``). Logged ``out_d_real`` / ``out_d_fake`` are mean probabilities (sigmoid of the logits),
    as in ``DASRDownsamplerModel``. Validation is basicsr's SR validation on paired real LR / HR data.
    """

    def init_training_settings(self):
        train_opt = self.opt['train']
        fs_opt = dict(train_opt.get('fs') or {})
        self.fs_type = fs_opt.get('type', 'wavelet')
        if self.fs_type not in FILTER_TYPES:
            raise ValueError(f'train.fs.type must be one of {FILTER_TYPES}, got {self.fs_type!r}.')
        self.fs_kernel_size = int(fs_opt.get('kernel_size', 9))
        self.fs_norm = bool(fs_opt.get('norm', True))
        self.ddm_weighted = list(train_opt.get('ddm_weighted', ['pixel']))
        unknown = [t for t in self.ddm_weighted if t not in DDM_WEIGHTABLE]
        if unknown:
            raise ValueError(f'train.ddm_weighted entries must be in {DDM_WEIGHTABLE}, got {unknown}.')

        ll_opt = train_opt.get('pixel_ll_opt')
        if ll_opt and ll_opt.get('type') == 'LowFrequencyL1Loss':
            ll_opt.setdefault('filter_type', self.fs_type)
            ll_opt.setdefault('kernel_size', self.fs_kernel_size)
            ll_opt.setdefault('padding', True)
            ll_opt.setdefault('count_include_pad', True)

        super().init_training_settings()  # EMA, net_d, pixel / perceptual / gan losses, optimizers, schedulers
        self._check_discriminator_channels()
        self.cri_pix_ll = build_loss(copy.deepcopy(ll_opt)).to(self.device) if ll_opt else None
        if getattr(self, 'cri_gan', None) is None:
            raise ValueError('DASRModel needs train.gan_opt (the adversarial term on real LR).')
        if 'perceptual' in self.ddm_weighted and self.cri_perceptual is not None \
                and 'weight' not in inspect.signature(self.cri_perceptual.forward).parameters:
            raise ValueError('train.ddm_weighted contains "perceptual", but the perceptual_opt loss takes no weight; '
                             'use LPIPSLoss.')

    def _check_discriminator_channels(self):
        image_ch = int(self.opt['network_g'].get('num_out_ch', 3))
        expected = 3 * image_ch if self.fs_type == 'wavelet' else image_ch
        first_conv = next((m for m in self.get_bare_model(self.net_d).modules() if isinstance(m, nn.Conv2d)), None)
        if first_conv is not None and first_conv.in_channels != expected:
            detail = ('the 3 Haar detail bands of each channel, concatenated'
                      if self.fs_type == 'wavelet' else 'one high-pass channel per image channel')
            raise ValueError(f'network_d.num_in_ch must be {expected} for train.fs.type {self.fs_type!r} with '
                             f'{image_ch}-channel images ({detail}), got {first_conv.in_channels}.')

    def high(self, x):
        """High-frequency part used by ``D_t`` (``(B, 9, H/2, W/2)`` for wavelet)."""
        return frequency_separation(x, self.fs_type, self.fs_kernel_size, self.fs_norm)[1]

    def feed_data(self, data):
        if 'lq_real' in data:
            self.lq = data['lq'].to(self.device)
            self.gt = data['gt'].to(self.device)
            self.lq_real = data['lq_real'].to(self.device)
            self.gt_unpair = data['gt_unpair'].to(self.device)
            self.ddm = data['ddm'].to(self.device)
        else:
            super().feed_data(data)

    def optimize_parameters(self, current_iter):
        update_g = current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters
        num_pair = self.lq.size(0)
        with torch.set_grad_enabled(update_g):
            sr = self.net_g(torch.cat([self.lq, self.lq_real], dim=0))
            sr_pair, sr_real = sr[:num_pair], sr[num_pair:]
            high_sr_real = self.high(sr_real)
        self.output = sr_pair
        loss_dict = OrderedDict()

        if update_g:
            _set_requires_grad(self.net_d, False)
            self.optimizer_g.zero_grad()
            weight = F.interpolate(self.ddm, size=self.gt.shape[-2:], mode='bilinear', align_corners=False)
            l_g_total = 0
            if self.cri_pix is not None:
                l_g_pix = self.cri_pix(sr_pair, self.gt, weight=weight if 'pixel' in self.ddm_weighted else None)
                l_g_total = l_g_total + l_g_pix
                loss_dict['l_g_pix'] = l_g_pix
            if self.cri_pix_ll is not None:
                kwargs = {'weight': weight} if 'pixel_ll' in self.ddm_weighted else {}
                l_g_ll = self.cri_pix_ll(sr_pair, self.gt, **kwargs)
                l_g_total = l_g_total + l_g_ll
                loss_dict['l_g_pix_ll'] = l_g_ll
            if self.cri_perceptual is not None:
                kwargs = {'weight': weight} if 'perceptual' in self.ddm_weighted else {}
                l_g_percep = self.cri_perceptual(sr_pair, self.gt, **kwargs)
                if isinstance(l_g_percep, tuple):
                    l_g_percep = sum(v for v in l_g_percep if v is not None)
                l_g_total = l_g_total + l_g_percep
                loss_dict['l_g_percep'] = l_g_percep
            l_g_gan = self.cri_gan(self.net_d(high_sr_real), True, is_disc=False)
            l_g_total = l_g_total + l_g_gan
            loss_dict['l_g_gan'] = l_g_gan
            l_g_total.backward()
            self.optimizer_g.step()

        _set_requires_grad(self.net_d, True)
        self.optimizer_d.zero_grad()
        real_pred = self.net_d(self.high(self.gt_unpair))
        l_d_real = self.cri_gan(real_pred, True, is_disc=True) * 0.5
        l_d_real.backward()
        fake_pred = self.net_d(high_sr_real.detach())
        l_d_fake = self.cri_gan(fake_pred, False, is_disc=True) * 0.5
        l_d_fake.backward()
        self.optimizer_d.step()
        loss_dict['l_d_real'] = l_d_real
        loss_dict['l_d_fake'] = l_d_fake
        loss_dict['out_d_real'] = torch.sigmoid(real_pred.detach()).mean()  # probabilities, as the DSN stage
        loss_dict['out_d_fake'] = torch.sigmoid(fake_pred.detach()).mean()

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
