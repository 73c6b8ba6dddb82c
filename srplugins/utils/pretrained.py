"""One offline lookup for pretrained backbone files (VGG for perceptual losses, LPIPS backbones).

Nothing in srplugins downloads at run time. A backbone file is looked up, by the file name torchvision gives it, in:

1. the folder named by the environment variable ``SRPLUGINS_PRETRAINED_DIR``;
2. ``experiments/pretrained_models/`` under the current working directory (basicsr's own place for VGG19);
3. torch.hub's cache, ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints``), where
   torchvision itself stores downloads.

A missing file raises :class:`FileNotFoundError` naming the file, the places searched and where to put it.
"""
import os
import os.path as osp

ENV_VAR = 'SRPLUGINS_PRETRAINED_DIR'

# torchvision's ImageNet weight files (the names torchvision's downloader uses), by architecture name.
TORCHVISION_FILES = {
    'vgg11': 'vgg11-8a719046.pth',
    'vgg13': 'vgg13-19584684.pth',
    'vgg16': 'vgg16-397923af.pth',
    'vgg19': 'vgg19-dcbb9e9d.pth',
    'vgg11_bn': 'vgg11_bn-6002323d.pth',
    'vgg13_bn': 'vgg13_bn-abd245e5.pth',
    'vgg16_bn': 'vgg16_bn-6c64b313.pth',
    'vgg19_bn': 'vgg19_bn-c79401a0.pth',
    'alexnet': 'alexnet-owt-7be5be79.pth',
    'squeezenet1_1': 'squeezenet1_1-b8a52dc0.pth',
}
TORCHVISION_URL = 'https://download.pytorch.org/models/'


def torchvision_weight_filename(arch):
    """File name of torchvision's ImageNet weights for ``arch`` (e.g. ``'vgg19'`` -> ``'vgg19-dcbb9e9d.pth'``)."""
    if arch not in TORCHVISION_FILES:
        raise ValueError(f'No known pretrained file for backbone {arch!r}; known: {sorted(TORCHVISION_FILES)}')
    return TORCHVISION_FILES[arch]


def search_dirs():
    """The folders searched, in order."""
    import torch
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(os.environ[ENV_VAR])
    dirs.append(osp.abspath(osp.join('experiments', 'pretrained_models')))
    dirs.append(osp.join(torch.hub.get_dir(), 'checkpoints'))
    return dirs


def resolve_pretrained(filename, purpose='pretrained backbone'):
    """Absolute path of a pretrained file, found offline.

    Args:
        filename (str): File name, e.g. ``'vgg19-dcbb9e9d.pth'``.
        purpose (str): What the file is for (goes into the error message).

    Returns:
        str: The path of the first existing file.

    Raises:
        FileNotFoundError: Naming the file, the folders searched and where to put it.
    """
    dirs = search_dirs()
    for folder in dirs:
        path = osp.join(folder, filename)
        if osp.isfile(path):
            return osp.abspath(path)
    url = TORCHVISION_URL + filename if filename in TORCHVISION_FILES.values() else None
    where = '\n  '.join(dirs)
    raise FileNotFoundError(
        f'{purpose}: file {filename} not found (srplugins never downloads at run time). Searched:\n  {where}\n'
        f'Place {filename} in one of these folders, e.g. in the folder named by the environment variable {ENV_VAR}.' +
        (f' It is torchvision\'s file, published at {url}.' if url else ''))


def _load_state_dict(path):
    import torch
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']
    return state


def build_lpips(net='alex', version='0.1', spatial=False):
    """An ``lpips.LPIPS`` model with its ImageNet backbone loaded offline, in eval mode and frozen.

    The calibrated linear layers ship inside the lpips wheel; the backbone (torchvision's alexnet / vgg16 /
    squeezenet1_1 ImageNet weights) comes from :func:`resolve_pretrained`. The model expects RGB tensors in [-1, 1].

    Args:
        net (str): ``'alex'`` (default, the LPIPS paper's recommended metric), ``'vgg'`` or ``'squeeze'``.
        version (str): LPIPS linear-layer version. Default: ``'0.1'``.
        spatial (bool): Return a distance map instead of a scalar per image.

    Returns:
        lpips.LPIPS
    """
    import lpips
    import torchvision

    arch = {'alex': 'alexnet', 'vgg': 'vgg16', 'vgg16': 'vgg16', 'squeeze': 'squeezenet1_1'}.get(net)
    if arch is None:
        raise ValueError(f'LPIPS net must be one of alex, vgg, squeeze; got {net!r}')
    path = resolve_pretrained(torchvision_weight_filename(arch), f'LPIPS-{net} backbone ({arch} ImageNet weights)')
    backbone = getattr(torchvision.models, arch)(weights=None)
    backbone.load_state_dict(_load_state_dict(path))
    model = lpips.LPIPS(net=net, version=version, pretrained=True, pnet_rand=True, spatial=spatial, verbose=False)
    _copy_backbone(model.net, backbone.features)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    return model


def _copy_backbone(lpips_net, features):
    """Copy torchvision ``features`` layers into lpips' sliced backbone (``slice{k}.{layer index}``)."""
    import torch
    copied = 0
    for name, module in lpips_net.named_children():
        if not name.startswith('slice'):
            continue
        for idx, layer in module.named_children():
            source = features[int(idx)]
            if type(source) is not type(layer):
                raise RuntimeError(f'LPIPS backbone layer {name}.{idx} is {type(layer).__name__}, torchvision '
                                   f'features[{idx}] is {type(source).__name__}')
            with torch.no_grad():
                for p_dst, p_src in zip(layer.parameters(recurse=True), source.parameters(recurse=True)):
                    p_dst.copy_(p_src)
                    copied += 1
    if copied == 0:
        raise RuntimeError('No LPIPS backbone parameter was copied: unexpected lpips version.')
