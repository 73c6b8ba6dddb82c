"""Real-ESRNet / Real-ESRGAN training that follows the model's device (CPU or CUDA).

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021
(arXiv 2107.10833): Sec. 3 (high-order degradation: blur incl. sinc, resize, Gaussian/Poisson noise, JPEG, applied
twice, then a final resize + sinc + JPEG in random order), Sec. 4 (two stages: Real-ESRNet with L1, then
Real-ESRGAN with L1 + perceptual + GAN against a U-Net SN discriminator; sharpened GT "Real-ESRGAN+").

Official behaviour followed: xinntao/Real-ESRGAN ``RealESRNetModel`` / ``RealESRGANModel`` as shipped in basicsr 1.4.2
(``RealESRNetModel_basicsr`` / ``RealESRGANModel_basicsr``). The degradation in ``feed_data``, the losses in
``optimize_parameters`` and the validation that skips the synthetic degradation are inherited unchanged from those
classes; they in turn use basicsr's ``filter2D``, ``random_add_gaussian_noise_pt``, ``random_add_poisson_noise_pt``,
``DiffJPEG``, ``USMSharp`` and ``paired_random_crop``. Nothing of the degradation is rewritten here.

Deliberate differences (the reason these classes exist):
    * basicsr's constructors call ``.cuda()`` on DiffJPEG and USMSharp and its training-pair queue allocates with
      ``.cuda()``, so they fail on a machine without a GPU. Here the constructor runs the grandparent constructor
      (``SRModel`` / ``SRGANModel``) and moves DiffJPEG and USMSharp to ``self.device``; the queue is allocated on
      the device and with the dtype of the incoming batch. DiffJPEG's output is made contiguous (see
      ``ContiguousDiffJPEG``), which basicsr's ``filter2D`` needs on CPU.
    * Options are validated when the model is built (degradation keys present, probabilities and ranges well
      formed, ``queue_size`` a multiple of the per-GPU batch, ``gt_size`` a multiple of ``scale``); mistakes raise a
      ``ValueError`` naming the option instead of a ``KeyError`` or ``AssertionError`` in the first iteration.
    * Registered as ``RealESRNetAnyDeviceModel`` / ``RealESRGANAnyDeviceModel``: the names ``RealESRNetModel`` and
      ``RealESRGANModel`` belong to the ``realesrgan`` package and the ``*_basicsr`` names to basicsr.

Note: basicsr's ``DiffJPEG`` keeps its quantisation tables as module-level parameters shared by every instance, so
moving one instance to a device moves them for all; use one device per process (as training does).
"""
import math
import numbers
import torch
from basicsr.models.realesrgan_model import RealESRGANModel
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.models.sr_model import SRModel
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils import DiffJPEG, USMSharp
from basicsr.utils.registry import MODEL_REGISTRY

from srplugins.models.training_options import TrainingOptionsMixin

# top-level option -> expected form, read by basicsr's feed_data for the second-order degradation
_PROBABILITY_TRIPLES = ('resize_prob', 'resize_prob2')  # [up, down, keep]
_PROBABILITIES = ('gaussian_noise_prob', 'gray_noise_prob', 'second_blur_prob', 'gaussian_noise_prob2',
                  'gray_noise_prob2')
_RANGES = ('resize_range', 'noise_range', 'poisson_scale_range', 'jpeg_range', 'resize_range2', 'noise_range2',
           'poisson_scale_range2', 'jpeg_range2')


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_degradation_options(opt, bool_keys=(), synthesis_bool_keys=()):
    """Validate the top-level options that drive Real-ESRGAN's on-the-fly degradation.

    Args:
        opt (dict): The whole option dict (degradation keys live at the top level, as in Real-ESRGAN's YAMLs).
        bool_keys (tuple[str]): Switches that must be present and boolean in any case (Real-ESRGAN: ``l1_gt_usm``,
            ``percep_gt_usm``, ``gan_gt_usm``). Default: ().
        synthesis_bool_keys (tuple[str]): Switches needed only when the LQ is synthesised (Real-ESRNet: ``gt_usm``).
            Default: ().

    Raises:
        ValueError: Naming the first missing or malformed option and the expected form.
    """
    for key in bool_keys:
        if not isinstance(opt.get(key), bool):
            raise ValueError(f'Option {key!r} must be true or false, got {opt.get(key)!r}.')
    if not opt.get('high_order_degradation', True):
        return  # paired data (e.g. RealESRGANPairedDataset_basicsr): no synthesis, only lq/gt are read
    for key in synthesis_bool_keys:
        if not isinstance(opt.get(key), bool):
            raise ValueError(f'Option {key!r} must be true or false, got {opt.get(key)!r}.')
    for key in _PROBABILITY_TRIPLES:
        value = opt.get(key)
        if (not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) and v >= 0 for v in value)
                or sum(value) <= 0):
            raise ValueError(f'Option {key!r} must be three non-negative weights [up, down, keep], got {value!r}.')
    for key in _PROBABILITIES:
        value = opt.get(key)
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f'Option {key!r} must be a probability in [0, 1], got {value!r}.')
    for key in _RANGES:
        value = opt.get(key)
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value)
                or value[0] > value[1] or value[0] < 0):
            raise ValueError(f'Option {key!r} must be a range [low, high] with 0 <= low <= high, got {value!r}.')
    for key in ('resize_range', 'resize_range2'):
        if not opt[key][0] <= 1 <= opt[key][1] or opt[key][0] <= 0:
            raise ValueError(f'Option {key!r} must be [down_min, up_max] with 0 < down_min <= 1 <= up_max, '
                             f'got {opt[key]!r}.')
    for key in ('jpeg_range', 'jpeg_range2'):
        if not 1 <= opt[key][0] <= opt[key][1] <= 100:
            raise ValueError(f'Option {key!r} must be JPEG qualities [low, high] within [1, 100], got {opt[key]!r}.')
    scale = opt.get('scale')
    gt_size = opt.get('gt_size')
    if not isinstance(gt_size, int) or isinstance(gt_size, bool) or gt_size <= 0 or gt_size % scale:
        raise ValueError(f'Option gt_size (top level) must be a positive multiple of scale={scale}, got {gt_size!r}.')
    queue_size = opt.get('queue_size', 180)
    if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size <= 0:
        raise ValueError(f'Option queue_size must be a positive integer, got {queue_size!r}.')
    train_set = opt.get('datasets', {}).get('train', {})
    crop = train_set.get('crop_pad_size')
    if isinstance(crop, int):
        need = max(min_gt_side(opt, kernel2_size=train_set.get('blur_kernel_size2', 21)), gt_size)
        if crop < need:
            raise ValueError(f'datasets.train.crop_pad_size={crop} is too small for the degradation settings: it must '
                             f'be at least {need} (gt_size, USM and blur padding after resize_range[0]='
                             f'{opt["resize_range"][0]}).')
    batch = train_set.get('batch_size_per_gpu')
    if isinstance(batch, int) and batch > 0 and queue_size % batch:
        raise ValueError(f'Option queue_size={queue_size} must be a multiple of '
                         f'datasets.train.batch_size_per_gpu={batch} (the training-pair pool swaps whole batches).')


def min_gt_side(opt, kernel2_size=21, sinc_size=21, usm_radius=51):
    """Smallest GT side (before the ``gt_size`` crop) the degradation can run on.

    ``filter2D`` and ``USMSharp`` reflect-pad by half the kernel size, which needs every padded side to exceed the pad:
    the GT side for USM sharpening (51 taps), the side after the first resize (down to ``resize_range[0]``) for the
    second blur, and the LQ side ``gt_side // scale`` for the final sinc filter (21 taps).

    Args:
        opt (dict): Option dict with ``scale``, ``resize_range`` and ``second_blur_prob``.
        kernel2_size (int): Side of the second blur kernel. Default: 21.
        sinc_size (int): Side of the final sinc kernel. Default: 21.
        usm_radius (int): USM kernel side. Default: 51.

    Returns:
        int: The minimum side length in GT pixels.
    """
    need = usm_radius // 2 + 1
    need = max(need, opt['scale'] * (sinc_size // 2 + 1))
    if opt['second_blur_prob'] > 0:
        need = max(need, math.ceil((kernel2_size // 2 + 1) / opt['resize_range'][0] - 1e-9))
    return need


class ContiguousDiffJPEG(DiffJPEG):
    """basicsr's DiffJPEG with a contiguous (B, C, H, W) output.

    DiffJPEG returns a permuted, channels-last-strided tensor. On CPU, ``F.pad(mode='reflect')`` keeps that layout and
    basicsr's ``filter2D`` then fails in ``.view`` ("view size is not compatible with input tensor's size and
    stride") at the second blur. Same values, only the memory layout differs.
    """

    def forward(self, x, quality):
        if x.size(1) == 1:  # grey: R = G = B codes only the Y plane (zero chroma); the decoded channels are equal
            return super().forward(x.expand(-1, 3, -1, -1), quality).mean(dim=1, keepdim=True).contiguous()
        return super().forward(x, quality).contiguous()


class _AnyDeviceDegradationMixin:
    """Device-following pieces shared by both models: DiffJPEG / USMSharp placement and the training-pair pool."""

    def _init_degradation_tools(self, opt):
        self.jpeger = ContiguousDiffJPEG(differentiable=False).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)
        self.queue_size = opt.get('queue_size', 180)

    @torch.no_grad()
    def feed_data(self, data):
        """Check the GT batch is large enough for the degradation, then synthesise the LQ (basicsr's feed_data)."""
        if self.is_train and self.opt.get('high_order_degradation', True) and 'kernel2' in data:
            h, w = data['gt'].shape[-2:]
            need = max(
                min_gt_side(self.opt, kernel2_size=data['kernel2'].shape[-1], sinc_size=data['sinc_kernel'].shape[-1]),
                self.opt['gt_size'])
            if min(h, w) < need:
                raise ValueError(f'GT batch of {h}x{w} is too small for the degradation settings: sides must be at '
                                 f'least {need} (gt_size={self.opt["gt_size"]}, resize_range={self.opt["resize_range"]}'
                                 f'); raise the dataset crop (crop_pad_size) or lower resize_range[0].')
        if data['gt'].size(1) == 1 and self.is_train:
            # basicsr's grey Poisson noise expands its noise to 3 channels; on one channel grey noise and colour
            # noise are the same distribution, so draw colour noise
            saved = {key: self.opt.get(key) for key in ('gray_noise_prob', 'gray_noise_prob2')}
            self.opt.update({key: 0 for key in saved})
            try:
                super().feed_data(data)
            finally:
                self.opt.update(saved)
            return
        super().feed_data(data)

    @torch.no_grad()
    def _dequeue_and_enqueue(self):
        """Training-pair pool (Real-ESRGAN): mixes degradations drawn for different batches into one batch.

        Some degradation choices (resize direction and mode, noise type, final order) are drawn once per batch.
        The pool of ``queue_size`` pairs is filled first (batches pass through unchanged); once full, it is shuffled
        and the first ``b`` stored pairs are swapped with the incoming batch. Shapes: lq (b, c, h, w),
        gt (b, c, h * scale, w * scale); the pool lives on the batch's device with the batch's dtype.
        """
        b = self.lq.size(0)
        if not hasattr(self, 'queue_lr'):
            if self.queue_size % b:
                raise ValueError(f'Option queue_size={self.queue_size} must be a multiple of the per-GPU batch '
                                 f'size {b}.')
            self.queue_lr = self.lq.new_zeros((self.queue_size, *self.lq.shape[1:]))
            self.queue_gt = self.gt.new_zeros((self.queue_size, *self.gt.shape[1:]))
            self.queue_ptr = 0
        if self.queue_ptr == self.queue_size:
            order = torch.randperm(self.queue_size, device=self.queue_lr.device)
            self.queue_lr = self.queue_lr[order]
            self.queue_gt = self.queue_gt[order]
            lq_out = self.queue_lr[:b].clone()
            gt_out = self.queue_gt[:b].clone()
            self.queue_lr[:b] = self.lq
            self.queue_gt[:b] = self.gt
            self.lq, self.gt = lq_out, gt_out
        else:
            self.queue_lr[self.queue_ptr:self.queue_ptr + b] = self.lq
            self.queue_gt[self.queue_ptr:self.queue_ptr + b] = self.gt
            self.queue_ptr += b


@MODEL_REGISTRY.register()
class RealESRNetAnyDeviceModel(_AnyDeviceDegradationMixin, TrainingOptionsMixin, RealESRNetModel):
    """Real-ESRNet (stage 1: L1 only) with on-the-fly second-order degradation on the model's device.

    Inherits basicsr's ``RealESRNetModel`` (``feed_data`` degradation, validation without degradation) and
    ``SRModel`` (L1 / perceptual losses, EMA, saving).

    Args:
        opt (dict): Full option dict. Besides SRModel's keys it reads, at the top level: ``gt_usm`` (bool, sharpen
            the GT before degradation and use it as the L1 target), ``high_order_degradation`` (bool, default True;
            False means paired lq/gt data), the degradation keys ``resize_prob``, ``resize_range``,
            ``gaussian_noise_prob``, ``noise_range``, ``poisson_scale_range``, ``gray_noise_prob``, ``jpeg_range``,
            ``second_blur_prob`` and their ``*2`` counterparts, ``gt_size`` (GT crop after degradation) and
            ``queue_size`` (training-pair pool, default 180). The dataset must yield ``gt`` (B, 3, H, W) RGB in
            [0, 1] and ``kernel1`` / ``kernel2`` / ``sinc_kernel`` (B, k, k), e.g. ``RealESRGANGTDataset``.
    """

    def __init__(self, opt):
        if opt.get('is_train', False):
            check_degradation_options(opt, synthesis_bool_keys=('gt_usm', ))
        SRModel.__init__(self, opt)  # RealESRNetModel.__init__ would call .cuda()
        self._init_degradation_tools(opt)


@MODEL_REGISTRY.register()
class RealESRGANAnyDeviceModel(_AnyDeviceDegradationMixin, TrainingOptionsMixin, RealESRGANModel):
    """Real-ESRGAN (stage 2: L1 + perceptual + GAN) with on-the-fly second-order degradation on the model's device.

    Inherits basicsr's ``RealESRGANModel`` (``feed_data`` degradation, ``optimize_parameters`` with separate real and
    fake discriminator passes, validation without degradation, optional ``ldl_opt``) and ``SRGANModel`` (network_d,
    GAN loss, optimizers, EMA, saving). Use it with ``network_d: {type: UNetSNDiscriminator}`` as published.

    Args:
        opt (dict): As ``RealESRNetAnyDeviceModel`` but with ``l1_gt_usm``, ``percep_gt_usm``, ``gan_gt_usm`` (bools:
            which losses compare against the USM-sharpened GT; published: True, True, False) instead of ``gt_usm``.
            The LQ is always synthesised from the sharpened GT, as upstream.
    """

    def __init__(self, opt):
        if opt.get('is_train', False):
            check_degradation_options(opt, bool_keys=('l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm'))
        SRGANModel.__init__(self, opt)  # RealESRGANModel.__init__ would call .cuda()
        self._init_degradation_tools(opt)
