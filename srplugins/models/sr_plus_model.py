"""Drop-in replacements for basicsr's ``SRModel`` and ``SRGANModel`` with srplugins' training options.

``SRPlusModel`` and ``SRGANPlusModel`` are basicsr's classes unchanged (losses, optimisation, EMA, validation) plus
:class:`srplugins.models.training_options.TrainingOptionsMixin`: ``train.amp`` (fp16 / bf16 autocast, fp16
GradScaler), ``train.channels_last``, ``train.compile``, ``train.grad_clip``, ``train.accum_iter``, the
training-health guard (``train.nonfinite`` / ``train.max_skips``), atomic saving with the network options recorded,
and ``val.self_ensemble`` / ``val.tile`` / ``val.tile_pad`` / ``val.distributed``. With none of these options set
they train exactly as basicsr's classes (same random draws, same weights).
"""
from basicsr.models.sr_model import SRModel
from basicsr.models.srgan_model import SRGANModel
from basicsr.utils.registry import MODEL_REGISTRY

from srplugins.models.training_options import TrainingOptionsMixin


@MODEL_REGISTRY.register()
class SRPlusModel(TrainingOptionsMixin, SRModel):
    """basicsr's ``SRModel`` (pixel / perceptual losses, EMA) with srplugins' training and validation options."""


@MODEL_REGISTRY.register()
class SRGANPlusModel(TrainingOptionsMixin, SRGANModel):
    """basicsr's ``SRGANModel`` (G step then D step, ``net_d_iters``, ``net_d_init_iters``) with srplugins' training
    and validation options; the generator and the discriminator get independent fp16 GradScalers."""
