"""DASR datasets: unpaired data for the down-sampling stage and generated pairs + real LR for the SR stage.

Paper: Wei et al., CVPR 2021 (arXiv 2004.01178), Sec. 3.1 / 3.2. Official code: ShuhangGu/DASR
``codes/DSN/data_loader.py`` (``Train_Deresnet_Dataset``) and
``codes/SRN/data/LRHR_wavelet_unpairEq_fake_w_dataset.py`` (``LRHR_wavelet_Equnpair_Dataset``).

Deliberate differences from the official loaders:

* Images of any mode (grayscale, palette, 16-bit, RGBA) are converted to RGB; dropping an alpha channel warns.
  Samples are scaled by their type (8 bit / 255, 16 bit / 65535), never by the values found in the image.
* Augmentation options are basicsr's (``use_hflip``, ``use_rot``) in both datasets. The official DSN options
  ``--flips --rotations`` (random h/v flips and rot90) give the same uniform draw over the 8 flips / rotations as
  ``use_hflip: true, use_rot: true``.
* The SR-stage files are paired by file stem with an explicit check, never by sorted order.
* The real-LR crop of the DSN stage is one random ``gt_size / scale`` crop (the official code takes a random
  ``gt_size`` crop and then a random ``gt_size / scale`` crop inside it).
* HR images are mod-cropped to the scale so the HR crop at ``scale x`` the LR position never leaves the image.
"""
import cv2
import numpy as np
import os
import os.path as osp
import random
import torch
from basicsr.utils import scandir
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srplugins.data.image_io import IMAGE_EXTENSIONS as IMG_EXTENSIONS
from srplugins.data.image_io import color_option, read_image


def list_images(folder, option):
    """Sorted image paths of ``folder``; ``option`` names the option for error messages."""
    if not folder or not osp.isdir(folder):
        raise FileNotFoundError(f'{option}: folder {folder!r} does not exist (expected a folder of images).')
    paths = sorted(osp.join(folder, p) for p in scandir(folder, recursive=False) if p.lower().endswith(IMG_EXTENSIONS))
    if not paths:
        raise FileNotFoundError(f'{option}: no images ({", ".join(IMG_EXTENSIONS)}) in {folder!r}.')
    return paths


def index_by_stem(paths, option):
    """``{stem: path}``; raises ValueError if two files share a stem (e.g. ``a.png`` and ``a.jpg``)."""
    table = {}
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        if stem in table:
            raise ValueError(f'{option}: two files share the stem {stem!r}: {table[stem]} and {path}.')
        table[stem] = path
    return table


def pair_by_stem(tables):
    """Pairs files of several folders by stem.

    Args:
        tables (dict[str, dict[str, str]]): ``{option name: {stem: path}}``.

    Returns:
        list[str]: Sorted common stems.

    Raises:
        ValueError: If the stem sets differ; the message lists (up to 5) stems missing from each folder.
    """
    names = list(tables)
    all_stems = set().union(*(set(t) for t in tables.values()))
    problems = []
    for name in names:
        missing = sorted(all_stems - set(tables[name]))
        if missing:
            shown = ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else '')
            problems.append(f'{name} lacks {len(missing)} stem(s): {shown}')
    if problems:
        raise ValueError('DASR files are paired by file stem, but the folders do not match: ' + '; '.join(problems) +
                         '. Regenerate them with scripts/dasr_generate_data.py.')
    return sorted(all_stems)


def load_ddm(path):
    """Loads a domain-distance map saved as ``.npy`` with shape ``(1, 1, h, w)``, ``(1, h, w)`` or ``(h, w)``."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f'dataroot_ddm: cannot read the domain-distance map {path} ({error}); regenerate it with '
                         'scripts/dasr_generate_data.py.') from error
    arr = np.squeeze(np.asarray(arr, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f'{path}: a domain-distance map must be 2-D after squeezing, got shape {arr.shape}.')
    if not np.isfinite(arr).all():
        raise ValueError(f'dataroot_ddm: the domain-distance map {path} holds non-finite values (NaN / inf).')
    return arr


def random_crop(img, size, rng=random):
    """Random ``size x size`` crop of an ``(H, W, C)`` array; returns ``(crop, top, left)``."""
    h, w = img.shape[:2]
    top, left = rng.randint(0, h - size), rng.randint(0, w - size)
    return img[top:top + size, left:left + size], top, left


def augment_arrays(arrays, hflip=False, vflip=False, transpose=False):
    """Applies the same flips / transpose to every ``(H, W, C)`` array (basicsr ``augment`` semantics)."""
    out = []
    for arr in arrays:
        if hflip:
            arr = arr[:, ::-1]
        if vflip:
            arr = arr[::-1]
        if transpose:
            arr = arr.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(arr))
    return out


def random_augment(arrays, use_hflip, use_rot, rng=random):
    """basicsr-style random augmentation: h-flip if ``use_hflip``; v-flip and transpose if ``use_rot``."""
    hflip = use_hflip and rng.random() < 0.5
    vflip = use_rot and rng.random() < 0.5
    transpose = use_rot and rng.random() < 0.5
    return augment_arrays(arrays, hflip, vflip, transpose)


AUGMENT_OPTIONS = ('use_hflip', 'use_rot')


def augment_options(opt, dataset, default):
    """``(use_hflip, use_rot)`` from ``opt`` (basicsr ``PairedImageDataset`` keys, ``default`` when absent).

    Raises:
        ValueError: For any other ``use_*flip*`` / ``use_*rot*`` key (e.g. the official ``use_flip``), which would
            otherwise be ignored silently.
    """
    unknown = [k for k in opt if k.startswith('use_') and ('flip' in k or 'rot' in k) and k not in AUGMENT_OPTIONS]
    if unknown:
        raise ValueError(f'{dataset}: unknown augmentation option(s) {unknown}; use use_hflip (random horizontal '
                         'flip) and use_rot (random vertical flip and transposition), as basicsr PairedImageDataset.')
    return bool(opt.get('use_hflip', default)), bool(opt.get('use_rot', default))


def to_tensor(arr):
    """``(H, W, C)`` float array -> ``(C, H, W)`` float tensor."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def _check_scale(scale):
    if scale not in (1, 2, 4):
        raise ValueError(f'scale must be 1, 2 or 4 for DASR, got {scale!r}.')


@DATASET_REGISTRY.register()
class DASRUnpairedDataset(data.Dataset):
    """Unpaired data for the DASR down-sampling stage (paper Sec. 3.1; official ``Train_Deresnet_Dataset``).

    Item ``i``: real LR image ``i`` of the source domain (random ``gt_size / scale`` crop) and a random clean HR
    image of the target domain (random ``gt_size`` crop) with its MATLAB-bicubic down-scale
    (``basicsr.utils.matlab_functions.imresize`` with antialiasing, clamped to [0, 1], not quantised).
    The length is the number of source images.

    Options (``opt``):
        dataroot_lq (str): Folder of real-world LR images (source domain, e.g. AIM2019 ``TrainingSource``).
        dataroot_gt (str): Folder of clean HR images (target domain, e.g. DIV2K train HR).
        scale (int): 2 or 4 (official ``--upscale_factor``). Default: 4.
        gt_size (int): HR crop size (official ``--crop_size`` 256); must be divisible by ``scale``.
        use_hflip (bool): Random horizontal flip (basicsr semantics). Default: false (official ``--flips`` off).
        use_rot (bool): Random vertical flip and transposition (basicsr semantics). Default: false (official
            ``--rotations`` off). Both true = the official ``--flips --rotations``: a uniform draw over the 8
            flips / rotations. The real LR and the HR image are augmented independently (they are unpaired).
        color (str): ``rgb`` (default) or ``gray`` (1-channel samples; colour files are converted to Rec. 601 luma).

    Returns:
        dict: ``gt`` ``(C, gt_size, gt_size)``, ``lq_bicubic`` ``(C, gt_size/scale, gt_size/scale)``, ``lq_real``
        ``(C, gt_size/scale, gt_size/scale)``, ``gt_path``, ``lq_path``. All float32 in [0, 1] at the files'
        precision; C = 3 (RGB) or 1 (``color: gray``).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        _check_scale(self.scale)
        self.gt_size = opt.get('gt_size', 256)
        if not isinstance(self.gt_size, int) or self.gt_size % self.scale:
            raise ValueError(f'gt_size must be an integer divisible by scale={self.scale}, got {self.gt_size!r}.')
        self.lq_size = self.gt_size // self.scale
        self.use_hflip, self.use_rot = augment_options(opt, 'DASRUnpairedDataset', default=False)
        self.color = color_option(opt, 'DASRUnpairedDataset')
        self.lq_paths = list_images(opt.get('dataroot_lq'), 'dataroot_lq')
        self.gt_paths = list_images(opt.get('dataroot_gt'), 'dataroot_gt')

    def _augment(self, img):
        return random_augment([img], self.use_hflip, self.use_rot)[0]

    def _crop(self, img, size, path, option):
        if img.shape[0] < size or img.shape[1] < size:
            raise ValueError(f'{option}: image {path} is {img.shape[1]}x{img.shape[0]}, smaller than the '
                             f'{size}x{size} crop (lower gt_size).')
        return random_crop(img, size)[0]

    def __getitem__(self, index):
        lq_path = self.lq_paths[index]
        gt_path = self.gt_paths[random.randint(0, len(self.gt_paths) - 1)]
        lq_real = self._crop(
            self._augment(read_image(lq_path, self.color, 'dataroot_lq')), self.lq_size, lq_path, 'dataroot_lq')
        img_gt = self._crop(
            self._augment(read_image(gt_path, self.color, 'dataroot_gt')), self.gt_size, gt_path, 'dataroot_gt')
        lq_bicubic = np.clip(imresize(img_gt, 1 / self.scale), 0, 1) if self.scale > 1 else img_gt
        return {
            'gt': to_tensor(img_gt),
            'lq_bicubic': to_tensor(lq_bicubic),
            'lq_real': to_tensor(lq_real),
            'gt_path': gt_path,
            'lq_path': lq_path
        }

    def __len__(self):
        return len(self.lq_paths)


@DATASET_REGISTRY.register()
class DASRPairedDataset(data.Dataset):
    """Training data of the DASR SR stage (paper Sec. 3.2; official ``LRHR_wavelet_Equnpair_Dataset``).

    Item ``i``: generated LR ``i`` (from ``scripts/dasr_generate_data.py``), the HR image with the same stem, the
    domain-distance map with the same stem (resized to the LR size with bilinear interpolation when its size
    differs, e.g. wavelet maps at LR/2), cropped together at the same position; plus an independent random crop of
    a random real LR image and of a random (unpaired) HR image. All five crops get the same random flips /
    transposition. Length = number of generated LR images.

    Options (``opt``):
        dataroot_gt (str): Clean HR folder (the target domain the generated LRs were made from).
        dataroot_lq (str): Generated LR folder (``<out>/lq``).
        dataroot_ddm (str | None): Domain-distance map folder (``<out>/ddm``, ``<stem>.npy``). ``None`` gives
            all-ones maps (the "no domain-distance weighting" ablation).
        dataroot_lq_real (str): Real-world LR folder (source domain).
        dataroot_gt_unpair (str, optional): Folder for the unpaired HR crops. Default: ``dataroot_gt``.
        scale (int): Default: 4.
        gt_size (int): HR crop size (official ``HR_size`` 128).
        use_hflip / use_rot (bool): basicsr augmentation (official SRN ``use_flip`` / ``use_rot``, same semantics);
            default true. Other flip / rotation keys are a ValueError.
        color (str): ``rgb`` (default) or ``gray`` (1-channel samples; colour files are converted to Rec. 601 luma).

    Returns:
        dict: ``lq`` ``(C, s, s)``, ``gt`` ``(C, gt_size, gt_size)``, ``ddm`` ``(1, s, s)``, ``lq_real``
        ``(C, s, s)``, ``gt_unpair`` ``(C, gt_size, gt_size)`` with ``s = gt_size / scale`` and C = 3 (RGB) or 1
        (``color: gray``), and ``lq_path``, ``gt_path``, ``lq_real_path``.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.scale = opt.get('scale', 4)
        _check_scale(self.scale)
        self.gt_size = opt.get('gt_size', 128)
        if not isinstance(self.gt_size, int) or self.gt_size % self.scale:
            raise ValueError(f'gt_size must be an integer divisible by scale={self.scale}, got {self.gt_size!r}.')
        self.lq_size = self.gt_size // self.scale
        self.use_hflip, self.use_rot = augment_options(opt, 'DASRPairedDataset', default=True)
        self.color = color_option(opt, 'DASRPairedDataset')

        tables = {
            'dataroot_lq': index_by_stem(list_images(opt.get('dataroot_lq'), 'dataroot_lq'), 'dataroot_lq'),
            'dataroot_gt': index_by_stem(list_images(opt.get('dataroot_gt'), 'dataroot_gt'), 'dataroot_gt')
        }
        ddm_root = opt.get('dataroot_ddm')
        if ddm_root is not None:
            if not osp.isdir(ddm_root):
                raise FileNotFoundError(f'dataroot_ddm: folder {ddm_root!r} does not exist (expected <stem>.npy).')
            tables['dataroot_ddm'] = {
                osp.splitext(name)[0]: osp.join(ddm_root, name)
                for name in sorted(os.listdir(ddm_root)) if name.endswith('.npy')
            }
        # every generated LR needs its HR and map; extra HR images are fine (they still serve as unpaired HR)
        lq_stems = set(tables['dataroot_lq'])
        restricted = {
            k: ({
                s: p
                for s, p in v.items() if s in lq_stems
            } if k != 'dataroot_lq' else v)
            for k, v in tables.items()
        }
        self.stems = pair_by_stem(restricted)
        self.lq_paths = [tables['dataroot_lq'][s] for s in self.stems]
        self.gt_paths = [tables['dataroot_gt'][s] for s in self.stems]
        self.ddm_paths = [tables['dataroot_ddm'][s] for s in self.stems] if ddm_root is not None else None
        self.lq_real_paths = list_images(opt.get('dataroot_lq_real'), 'dataroot_lq_real')
        unpair_root = opt.get('dataroot_gt_unpair') or opt.get('dataroot_gt')
        self.gt_unpair_paths = list_images(unpair_root, 'dataroot_gt_unpair')

    def _checked_crop(self, img, size, path, option):
        if img.shape[0] < size or img.shape[1] < size:
            raise ValueError(f'{option}: image {path} is {img.shape[1]}x{img.shape[0]}, smaller than the '
                             f'{size}x{size} crop (lower gt_size).')
        return random_crop(img, size)

    def __getitem__(self, index):
        scale, lq_size, gt_size = self.scale, self.lq_size, self.gt_size
        lq_path, gt_path = self.lq_paths[index], self.gt_paths[index]
        img_lq = read_image(lq_path, self.color, 'dataroot_lq')
        img_gt = read_image(gt_path, self.color, 'dataroot_gt')
        h, w = img_lq.shape[:2]
        hr_h, hr_w = img_gt.shape[0] - img_gt.shape[0] % scale, img_gt.shape[1] - img_gt.shape[1] % scale
        if (hr_h, hr_w) != (h * scale, w * scale):
            raise ValueError(f'{gt_path} mod-cropped to {hr_w}x{hr_h} is not {scale}x the generated LR {lq_path} '
                             f'({w}x{h}); regenerate the LR images from these HR images.')
        if self.ddm_paths is not None:
            ddm = load_ddm(self.ddm_paths[index])
            if ddm.shape != (h, w):
                ddm = cv2.resize(ddm, (w, h), interpolation=cv2.INTER_LINEAR)
        else:
            ddm = np.ones((h, w), dtype=np.float32)
        ddm = ddm[..., None]

        img_lq, top, left = self._checked_crop(img_lq, lq_size, lq_path, 'dataroot_lq')
        ddm = ddm[top:top + lq_size, left:left + lq_size]
        img_gt = img_gt[top * scale:top * scale + gt_size, left * scale:left * scale + gt_size]

        lq_real_path = self.lq_real_paths[random.randint(0, len(self.lq_real_paths) - 1)]
        img_lq_real = self._checked_crop(
            read_image(lq_real_path, self.color, 'dataroot_lq_real'), lq_size, lq_real_path, 'dataroot_lq_real')[0]
        unpair_path = self.gt_unpair_paths[random.randint(0, len(self.gt_unpair_paths) - 1)]
        img_gt_unpair = self._checked_crop(
            read_image(unpair_path, self.color, 'dataroot_gt_unpair'), gt_size, unpair_path, 'dataroot_gt_unpair')[0]

        img_lq, img_gt, ddm, img_lq_real, img_gt_unpair = random_augment(
            [img_lq, img_gt, ddm, img_lq_real, img_gt_unpair], self.use_hflip, self.use_rot)
        return {
            'lq': to_tensor(img_lq),
            'gt': to_tensor(img_gt),
            'ddm': to_tensor(ddm),
            'lq_real': to_tensor(img_lq_real),
            'gt_unpair': to_tensor(img_gt_unpair),
            'lq_path': lq_path,
            'gt_path': gt_path,
            'lq_real_path': lq_real_path
        }

    def __len__(self):
        return len(self.stems)
