"""SRGAN VGG content loss: MSE between VGG19 feature maps (Ledig et al. 2017, Section 2.2.1, Eq. 5).

l_VGG/i.j is the squared Euclidean distance between phi_i,j(I_HR) and phi_i,j(G(I_LR)), where phi_i,j is the
feature map after the j-th convolution *and its ReLU* before the i-th max-pool of a pretrained VGG19: VGG22 is
``relu2_2``, VGG54 is ``relu5_4`` (``conv5_4``, before the ReLU, is the ESRGAN choice, not SRGAN's).

basicsr's ``PerceptualLoss`` already extracts these features (``VGGFeatureExtractor``, torchvision VGG19, ImageNet
normalisation of [0, 1] input, offline weight lookup through srplugins' compat patch), but its ``criterion='l2'``
raises AttributeError (``torch.nn.L2loss``) and ``'fro'`` is a plain, unsquared norm. ``VGGContentLoss`` reuses it
with an element-wise mean squared error, as the public PyTorch ports do (the paper normalises by W_ij * H_ij only).

Feature scale. The paper rescales the feature maps by 1/12.75, i.e. multiplies the loss by (1/12.75)^2 ~= 0.00615
(``PAPER_LOSS_WEIGHT``), to bring it to the scale of the pixel MSE. That constant belongs to the authors' VGG input
convention (0-255 Caffe-style inputs). torchvision's VGG sees (x - mean) / std on [0, 1] images, an input about
255 * 0.226 = 57.6 times smaller, so the same intent corresponds to ``perceptual_weight`` ~= (57.6 / 12.75)^2 ~= 20.4
(``TORCHVISION_EQUIVALENT_WEIGHT``, a derivation from the input scaling, not a measurement on the Caffe model).
With 0.00615 and torchvision features the VGG54 term is ~5000x smaller than the pixel MSE on Set5 bicubic inputs.
"""
import torch
from basicsr.archs.vgg_arch import NAMES
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr.utils.registry import LOSS_REGISTRY

from srplugins.losses.dasr_loss import gray_to_rgb

PAPER_LOSS_WEIGHT = (1 / 12.75)**2
TORCHVISION_EQUIVALENT_WEIGHT = 20.4


@LOSS_REGISTRY.register()
class VGGContentLoss(PerceptualLoss):
    """MSE on VGG feature maps (SRGAN's VGG22 / VGG54 content loss); a drop-in ``perceptual_opt`` for basicsr models.

    forward(x, gt) takes (B, 3, H, W) images ([0, 1], or [-1, 1] with ``range_norm=True``; (B, 1, H, W) grey images
    are replicated to three channels for the RGB VGG) and returns
    ``(loss, style_loss)`` like ``PerceptualLoss``: loss = perceptual_weight * sum_k layer_weights[k] *
    mean((phi_k(x) - phi_k(gt))^2); style_loss is None unless ``style_weight > 0`` (then MSE of Gram matrices).

    Args:
        layer_weights (dict): VGG layer name -> weight. Default: {'relu5_4': 1.0} (VGG54); use {'relu2_2': 1.0} for
            VGG22.
        vgg_type (str): 'vgg19' (the paper) or another torchvision VGG. Default: 'vgg19'.
        use_input_norm (bool): ImageNet mean/std normalisation of [0, 1] input. Default: True.
        range_norm (bool): Map [-1, 1] inputs to [0, 1] first (tanh generators). Default: False.
        perceptual_weight (float): Loss weight; see the module docstring for the paper's 1/12.75 rescaling
            (``PAPER_LOSS_WEIGHT``) and its torchvision equivalent (``TORCHVISION_EQUIVALENT_WEIGHT``). Default: 1.0.
        style_weight (float): Weight of the optional Gram-matrix term. Default: 0.
    """

    def __init__(self,
                 layer_weights=None,
                 vgg_type='vgg19',
                 use_input_norm=True,
                 range_norm=False,
                 perceptual_weight=1.0,
                 style_weight=0.):
        if layer_weights is None:
            layer_weights = {'relu5_4': 1.0}
        names = NAMES.get(vgg_type.replace('_bn', ''))
        if names is None:
            raise ValueError(f'perceptual_opt.vgg_type must be one of {sorted(NAMES)} (optionally with _bn), '
                             f'got {vgg_type!r}')
        unknown = [k for k in layer_weights if k not in names]
        if not layer_weights or unknown:
            raise ValueError(f'perceptual_opt.layer_weights must map {vgg_type} layer names (e.g. relu5_4 for VGG54, '
                             f'relu2_2 for VGG22) to weights; unknown: {unknown or "empty dict"}')
        super().__init__(
            layer_weights,
            vgg_type=vgg_type,
            use_input_norm=use_input_norm,
            range_norm=range_norm,
            perceptual_weight=perceptual_weight,
            style_weight=style_weight,
            criterion='l1')
        self.criterion_type = 'l2'
        self.criterion = torch.nn.MSELoss()

    def forward(self, x, gt):
        return super().forward(gray_to_rgb(x), gray_to_rgb(gt))
