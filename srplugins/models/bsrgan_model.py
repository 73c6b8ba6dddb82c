"""BSRNet / BSRGAN training with the BSRGAN degradation run on the model's device.

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 5: BSRNet is trained with L1 only, BSRGAN is initialised from it and trained with L1 + VGG19 perceptual +
PatchGAN adversarial losses; LQ patches (72x72 at x4) are made from HR patches on the fly by the degradation model.
Official behaviour followed: KAIR degrades each HR crop in its dataset workers (``DatasetBlindSR``); that is the
default here too (``BSRGANDataset`` with ``degrade_on: dataset``). With ``degrade_on: model`` the dataset yields HR
crops only and these models degrade the batch in ``feed_data`` with
:class:`srplugins.ops.bsrgan_degradation_torch.TorchBSRGANDegradation`, as Real-ESRGAN's models do with their
degradation: the same per-sample plans (op order, kernels, noise, JPEG qualities, crops) as the CPU path, executed
with tensor ops on the training device.

Everything else is inherited unchanged: ``BSRNetModel`` is basicsr's ``SRModel`` (pixel / perceptual losses, EMA,
validation, saving), ``BSRGANModel`` is basicsr's ``SRGANModel`` (G step then D step, ``net_d_iters``,
``net_d_init_iters``). Validation batches carry their own ``lq`` (``BSRGANDataset`` degrades validation images on the
CPU with a fixed seed per image) and are never degraded again.

Randomness: the plans of training batch ``n`` (counted from 0 over the whole run, resumes included) come from
``numpy.random.default_rng([manual_seed, rank, n])``, so a run is reproducible from its seed and a resumed run draws
the same degradations for the following iterations as an uninterrupted run would.
"""
import numpy as np
import torch
from basicsr.models.sr_model import SRModel
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from srplugins.data.bsrgan_dataset import degrade_on_option
from srplugins.models.training_options import TrainingOptionsMixin
from srplugins.ops.bsrgan_degradation_torch import TorchBSRGANDegradation


class _DeviceDegradationMixin:
    """Builds the torch degrader from the training dataset's options and applies it in ``feed_data``."""

    degrades_hr_batches = True  # read by srplugins' entry point to validate ``degrade_on: model``

    def _init_device_degradation(self, opt):
        self._degrade_calls = 0
        self.degrader = None
        train_opt = opt.get('datasets', {}).get('train') if opt.get('is_train', False) else None
        if not train_opt or degrade_on_option(train_opt) != 'model':
            return
        scale = opt['scale']
        lq_patchsize = train_opt.get('lq_patchsize', 72)
        gt_size = train_opt.get('gt_size', lq_patchsize * scale)
        if gt_size < lq_patchsize * scale:
            raise ValueError(f'datasets.train.gt_size ({gt_size}) must be >= lq_patchsize*scale '
                             f'({lq_patchsize * scale}) for the on-device BSRGAN degradation.')
        self.degrader = TorchBSRGANDegradation(scale, lq_patchsize, train_opt.get('degradation_type', 'bsrgan'),
                                               train_opt.get('shuffle_prob', 0.1),
                                               bool(train_opt.get('use_sharp', False)))
        self._degrade_seed = int(opt.get('manual_seed') or 0)
        self._degrade_rank = int(opt.get('rank', 0))

    @torch.no_grad()
    def feed_data(self, data):
        """Degrade an HR-only training batch on the device, then feed it as basicsr's models do.

        Args:
            data (dict): ``gt`` (B, 3, H, W) RGB in [0, 1] without ``lq`` (training, ``degrade_on: model``), or a
                paired batch with ``lq`` (validation, or ``degrade_on: dataset``) that is passed through unchanged.
                After degradation ``lq`` is (B, 3, p, p) and ``gt`` (B, 3, p*scale, p*scale), p = ``lq_patchsize``.
        """
        if 'lq' not in data:
            if self.degrader is None:
                raise ValueError(f'{type(self).__name__} got a batch without lq: set degrade_on: model in '
                                 'datasets.train (BSRGANDataset) to degrade HR batches on the device, or give paired '
                                 'data.')
            rng = np.random.default_rng([self._degrade_seed, self._degrade_rank, self._degrade_calls])
            self._degrade_calls += 1
            lq, gt = self.degrader(data['gt'].to(self.device, non_blocking=True), rng)
            data = dict(data, lq=lq, gt=gt)
        super().feed_data(data)

    def resume_training(self, resume_state):
        """basicsr's resume plus the degradation counter, so the following batches draw as in an uninterrupted run."""
        super().resume_training(resume_state)
        self._degrade_calls = int(resume_state.get('iter', 0))


@MODEL_REGISTRY.register()
class BSRNetModel(_DeviceDegradationMixin, TrainingOptionsMixin, SRModel):
    """BSRNet (PSNR-oriented stage, L1 only): basicsr's ``SRModel`` with optional on-device BSRGAN degradation.

    Args:
        opt (dict): SRModel options. With ``datasets.train.degrade_on: model`` the degradation options are read from
            ``datasets.train`` (``lq_patchsize``, ``gt_size``, ``degradation_type``, ``shuffle_prob``, ``use_sharp``,
            see ``BSRGANDataset``) and the top-level ``scale``.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self._init_device_degradation(opt)


@MODEL_REGISTRY.register()
class BSRGANModel(_DeviceDegradationMixin, TrainingOptionsMixin, SRGANModel):
    """BSRGAN (L1 + perceptual + GAN): basicsr's ``SRGANModel`` with optional on-device BSRGAN degradation.

    Args:
        opt (dict): SRGANModel options (``network_d``, ``gan_opt``, ...) plus the degradation options read from
            ``datasets.train`` as in ``BSRNetModel``.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self._init_device_degradation(opt)
