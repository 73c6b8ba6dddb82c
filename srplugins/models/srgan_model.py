"""SRResNet / SRGAN training with HR in [-1, 1] and a tanh generator (Ledig et al. 2017, Section 3.2).

The paper scales LR to [0, 1] and HR to [-1, 1] and computes the MSE there. basicsr's ``SRModel`` and
``SRGANModel`` express everything else of the recipe as they are (G step then D step, k = 1, ``GANLoss`` vanilla),
and with an identity-output ``SRResNet`` on [0, 1] data an MSE with ``loss_weight: 4`` is exactly the paper's MSE
on [-1, 1]; the default recipes use that. What they cannot express is a generator whose output lives in [-1, 1]
(``SRResNet(output_range=[-1, 1])``, the tanh of the common PyTorch/TensorLayer ports): their validation calls
``tensor2img`` with min_max (0, 1) and the datasets give HR in [0, 1]. The two models below add only that:

* ``feed_data`` maps GT to [-1, 1] (LQ stays in [0, 1]), so pixel, perceptual (``range_norm: true``) and
  adversarial losses and the discriminator all see the paper's HR range;
* ``get_current_visuals`` maps result and GT back to [0, 1], so validation, metrics and saved images are unchanged.

Everything else (optimisation, EMA, saving, per-pixel or per-image discriminator logits) is inherited.
"""
from basicsr.models.sr_model import SRModel
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from srplugins.archs.srgan_arch import parse_output_range
from srplugins.models.training_options import TrainingOptionsMixin


class SignedRangeMixin:
    """Feeds GT in [-1, 1] to a [-1, 1] generator, reports results in [0, 1] and checks the dependent options."""

    def _check_signed_range_options(self, opt):
        if parse_output_range(opt['network_g'].get('output_range', (0, 1))) != (-1.0, 1.0):
            raise ValueError(f'model_type {opt["model_type"]} trains a generator with output in [-1, 1]: set '
                             f'network_g.output_range: [-1, 1] (or use {self._plain_model} for [0, 1] output)')
        percep = opt.get('train', {}).get('perceptual_opt')
        if percep and percep.get('use_input_norm', True) and not percep.get('range_norm', False):
            raise ValueError(f'model_type {opt["model_type"]} gives the perceptual loss images in [-1, 1]: set '
                             f'train.perceptual_opt.range_norm: true')

    def feed_data(self, data):
        super().feed_data(data)
        if 'gt' in data:
            self.gt = self.gt * 2 - 1

    def get_current_visuals(self):
        visuals = super().get_current_visuals()
        for key in ('result', 'gt'):
            if key in visuals:
                visuals[key] = (visuals[key] + 1) / 2
        return visuals


@MODEL_REGISTRY.register()
class SRResNetTanhModel(SignedRangeMixin, TrainingOptionsMixin, SRModel):
    """``SRModel`` for ``SRResNet(output_range=[-1, 1])``: MSE pre-training against HR in [-1, 1]."""

    _plain_model = 'SRModel'

    def __init__(self, opt):
        self._check_signed_range_options(opt)
        super().__init__(opt)


@MODEL_REGISTRY.register()
class SRGANTanhModel(SignedRangeMixin, TrainingOptionsMixin, SRGANModel):
    """``SRGANModel`` for ``SRResNet(output_range=[-1, 1])``: D judges HR and SR in [-1, 1], as in the paper."""

    _plain_model = 'SRGANModel'

    def __init__(self, opt):
        self._check_signed_range_options(opt)
        super().__init__(opt)
