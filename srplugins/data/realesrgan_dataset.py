"""GT crops plus random blur / sinc kernels for Real-ESRGAN's on-the-fly degradation.

Paper: Wang et al., "Real-ESRGAN", ICCVW 2021 (arXiv 2107.10833), Sec. 3.1 (blur: isotropic / anisotropic Gaussian,
generalized Gaussian and plateau kernels of size 7..21, sinc filters with p=0.1) and Sec. 3.3 (the final sinc filter
with p=0.8). The LQ image is synthesised later on the model's device (``RealESRNetAnyDeviceModel`` /
``RealESRGANAnyDeviceModel``); this dataset only supplies the GT crop and the three kernels.

Official behaviour followed: xinntao/Real-ESRGAN ``RealESRGANDataset`` (basicsr's ``RealESRGANDataset_basicsr``):
BGR float32 read, flips / rotation with basicsr's ``augment``, reflect-101 pad then random crop to a square of
``crop_pad_size``, kernel1 / kernel2 from basicsr's ``random_mixed_kernels`` or ``circular_lowpass_kernel`` (the sinc,
cut-off U(pi/3, pi) below size 13, else U(pi/5, pi)), zero-padded to ``blur_kernel_size``; a final sinc kernel with
probability ``final_sinc_prob``, else a delta. Python ``random`` draws the kernel sizes and crop offsets, numpy's global
generator the rest (as upstream and basicsr's kernel functions), so basicsr's per-worker seeding applies.

Deliberate differences:
    * ``crop_pad_size`` is an option (upstream hard-codes 400) so small CPU runs can use small crops.
    * ``meta_info`` is optional for the disk backend: without it the GT folder is scanned recursively for images.
    * ``blur_kernel_size`` / ``blur_kernel_size2`` are honoured as the largest (and padded) kernel size; upstream reads
      them but always uses sizes 7..21 padded to 21, which is what the published value 21 gives here too.
    * Options are validated at construction and read failures raise an error naming the file after bounded retries
      (upstream can index past the end and then fail with an unbound variable).
    * Registered as ``RealESRGANGTDataset``; ``RealESRGANDataset`` belongs to the ``realesrgan`` package. The
      degradation settings are exposed as upstream's attributes (``blur_kernel_size``, ``kernel_list``,
      ``kernel_prob``, ``blur_sigma``, ``betag_range``, ``betap_range``, ``sinc_prob``, the same with suffix ``2``,
      ``final_sinc_prob``, ``kernel_range``, ``pulse_tensor``), and items are drawn from these attributes, so code
      written against upstream's dataset (reading or changing them) works on this one.
    * Images are decoded at their precision (8 / 16 bit, float; :mod:`srplugins.data.image_io`); ``color: gray``
      gives one-channel GT crops (upstream is RGB only). The models' degradation handles one channel (grey JPEG).
"""
import cv2
import math
import numpy as np
import os.path as osp
import random
import time
import torch
from basicsr.data.data_util import paths_from_lmdb
from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, get_root_logger, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data

from srplugins.data.image_io import color_option, read_with_client

KERNEL_TYPES = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.PNG', '.JPG', '.JPEG')
_FINAL_SINC_SIZE = 21  # the final sinc kernel is always padded to 21 x 21 (upstream)


def sample_blur_kernel(kernel_list, kernel_prob, sigma_range, betag_range, betap_range, sinc_prob, max_size):
    """Draw one first- or second-order blur kernel as Real-ESRGAN does.

    Args:
        kernel_list (list[str]): Kernel types among ``KERNEL_TYPES``.
        kernel_prob (list[float]): Probability of each type.
        sigma_range (list[float]): [min, max] Gaussian std (both axes drawn independently for anisotropic types).
        betag_range (list[float]): Shape range of generalized Gaussian kernels.
        betap_range (list[float]): Shape range of plateau kernels.
        sinc_prob (float): Probability of a sinc (circular low-pass) kernel instead.
        max_size (int): Largest odd kernel size; sizes are drawn from 7, 9, ..., max_size.

    Returns:
        np.ndarray: (max_size, max_size) float kernel summing to 1, zero-padded around the drawn size.
    """
    kernel_size = random.choice(range(7, max_size + 1, 2))
    if np.random.uniform() < sinc_prob:
        omega_c = np.random.uniform(np.pi / 3, np.pi) if kernel_size < 13 else np.random.uniform(np.pi / 5, np.pi)
        kernel = circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
    else:
        kernel = random_mixed_kernels(
            kernel_list,
            kernel_prob,
            kernel_size,
            sigma_range,
            sigma_range, [-math.pi, math.pi],
            betag_range,
            betap_range,
            noise_range=None)
    pad = (max_size - kernel_size) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad)))


def sample_final_sinc_kernel(final_sinc_prob):
    """Final sinc kernel (Real-ESRGAN Sec. 3.3): with ``final_sinc_prob`` a sinc of size 7..21, else a delta.

    Returns:
        np.ndarray: (21, 21) float32 kernel.
    """
    if np.random.uniform() < final_sinc_prob:
        kernel_size = random.choice(range(7, _FINAL_SINC_SIZE + 1, 2))
        omega_c = np.random.uniform(np.pi / 3, np.pi)
        return circular_lowpass_kernel(omega_c, kernel_size, pad_to=_FINAL_SINC_SIZE).astype(np.float32)
    pulse = np.zeros((_FINAL_SINC_SIZE, _FINAL_SINC_SIZE), dtype=np.float32)
    pulse[_FINAL_SINC_SIZE // 2, _FINAL_SINC_SIZE // 2] = 1
    return pulse


def _check_range(opt, key, low_min=0):
    value = opt.get(key)
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value)
            or not low_min <= value[0] <= value[1]):
        raise ValueError(f'datasets option {key!r} must be [low, high] with {low_min} <= low <= high, got {value!r}.')


def _check_kernel_options(opt, suffix):
    kernel_list, kernel_prob = opt.get('kernel_list' + suffix), opt.get('kernel_prob' + suffix)
    if not isinstance(kernel_list, (list, tuple)) or not kernel_list or any(k not in KERNEL_TYPES for k in kernel_list):
        raise ValueError(f'datasets option kernel_list{suffix} must be a non-empty list of {list(KERNEL_TYPES)}, '
                         f'got {kernel_list!r}.')
    if (not isinstance(kernel_prob, (list, tuple)) or len(kernel_prob) != len(kernel_list)
            or any(p < 0 for p in kernel_prob) or sum(kernel_prob) <= 0):
        raise ValueError(f'datasets option kernel_prob{suffix} must hold one non-negative weight per entry of '
                         f'kernel_list{suffix} ({len(kernel_list)}), got {kernel_prob!r}.')
    size = opt.get('blur_kernel_size' + suffix, 21)
    if not isinstance(size, int) or size < 7 or size % 2 == 0:
        raise ValueError(f'datasets option blur_kernel_size{suffix} must be an odd integer >= 7, got {size!r}.')
    _check_range(opt, 'blur_sigma' + suffix, low_min=1e-6)
    _check_range(opt, 'betag_range' + suffix, low_min=1e-6)
    _check_range(opt, 'betap_range' + suffix, low_min=1e-6)
    prob = opt.get('sinc_prob' + suffix)
    if not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise ValueError(f'datasets option sinc_prob{suffix} must be a probability in [0, 1], got {prob!r}.')


@DATASET_REGISTRY.register()
class RealESRGANGTDataset(data.Dataset):
    """GT images and degradation kernels for Real-ESRNet / Real-ESRGAN training (Real-ESRGAN Sec. 3).

    Args:
        opt (dict): Dataset options:
            dataroot_gt (str): GT folder, or an ``.lmdb`` folder for the lmdb backend.
            meta_info (str, optional): Text file whose lines start with image paths relative to ``dataroot_gt``.
                Without it (disk backend) the folder is scanned recursively for images.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            use_hflip (bool), use_rot (bool): Augmentations. Default: True, False.
            crop_pad_size (int): Side of the square GT crop; smaller images are reflect-padded first. Must be at
                least the model's ``gt_size``. Default: 400 (upstream).
            blur_kernel_size, kernel_list, kernel_prob, blur_sigma, betag_range, betap_range, sinc_prob: first blur.
            blur_kernel_size2, kernel_list2, kernel_prob2, blur_sigma2, betag_range2, betap_range2, sinc_prob2:
                second blur.
            final_sinc_prob (float): Probability of the final sinc filter.
            color (str): ``rgb`` (default) or ``gray`` (one channel; colour files are converted to Rec. 601 luma).

    Attributes (upstream ``RealESRGANDataset``'s names and values): ``blur_kernel_size``, ``kernel_list``,
    ``kernel_prob``, ``blur_sigma``, ``betag_range``, ``betap_range``, ``sinc_prob`` and the same with suffix ``2``,
    ``final_sinc_prob``, ``kernel_range`` (first-blur kernel sizes, 7..blur_kernel_size; ``kernel_range2`` for the
    second blur), ``pulse_tensor`` (the (21, 21) delta used when no final sinc is drawn), ``gt_folder``, ``paths``,
    ``io_backend_opt``, ``file_client``.

    Returns (per item):
        dict: ``gt`` (C, crop_pad_size, crop_pad_size) float32 in [0, 1] (C = 3 RGB, 1 with ``color: gray``);
        ``kernel1`` (k1, k1), ``kernel2`` (k2, k2) with k = blur_kernel_size(2); ``sinc_kernel`` (21, 21);
        ``gt_path`` (str).
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client = None
        self.io_backend_opt = dict(opt['io_backend'])
        self.gt_folder = opt['dataroot_gt']
        self.crop_pad_size = opt.get('crop_pad_size', 400)
        if not isinstance(self.crop_pad_size, int) or self.crop_pad_size <= 0:
            raise ValueError(f'datasets option crop_pad_size must be a positive integer, got {self.crop_pad_size!r}.')
        for suffix in ('', '2'):
            _check_kernel_options(opt, suffix)
        final_sinc_prob = opt.get('final_sinc_prob')
        if not isinstance(final_sinc_prob, (int, float)) or not 0 <= final_sinc_prob <= 1:
            raise ValueError(f'datasets option final_sinc_prob must be a probability in [0, 1], '
                             f'got {final_sinc_prob!r}.')
        self.color = color_option(opt, 'RealESRGANGTDataset')

        # degradation settings under upstream RealESRGANDataset's attribute names
        for suffix in ('', '2'):
            setattr(self, 'blur_kernel_size' + suffix, opt.get('blur_kernel_size' + suffix, 21))
            for key in ('kernel_list', 'kernel_prob', 'blur_sigma', 'betag_range', 'betap_range', 'sinc_prob'):
                setattr(self, key + suffix, opt[key + suffix])
        self.final_sinc_prob = opt['final_sinc_prob']
        self.kernel_range = [2 * v + 1 for v in range(3, self.blur_kernel_size // 2 + 1)]  # 7..21 for size 21
        self.kernel_range2 = [2 * v + 1 for v in range(3, self.blur_kernel_size2 // 2 + 1)]
        self.pulse_tensor = torch.zeros(_FINAL_SINC_SIZE, _FINAL_SINC_SIZE).float()  # no blur: a delta
        self.pulse_tensor[_FINAL_SINC_SIZE // 2, _FINAL_SINC_SIZE // 2] = 1

        if self.io_backend_opt['type'] == 'lmdb':
            if not self.gt_folder.endswith('.lmdb'):
                raise ValueError(f'dataroot_gt must be an .lmdb folder for the lmdb backend, got {self.gt_folder!r}.')
            self.io_backend_opt['db_paths'] = [self.gt_folder]
            self.io_backend_opt['client_keys'] = ['gt']
            self.paths = paths_from_lmdb(self.gt_folder)
        elif opt.get('meta_info'):
            if not osp.isfile(opt['meta_info']):
                raise FileNotFoundError(f'meta_info file {opt["meta_info"]!r} does not exist.')
            with open(opt['meta_info']) as fin:
                self.paths = [osp.join(self.gt_folder, line.split()[0]) for line in fin if line.strip()]
        else:
            if not osp.isdir(self.gt_folder):
                raise FileNotFoundError(f'dataroot_gt folder {self.gt_folder!r} does not exist.')
            self.paths = sorted(
                osp.join(self.gt_folder, p)
                for p in scandir(self.gt_folder, suffix=IMAGE_SUFFIXES, recursive=True, full_path=False))
        if not self.paths:
            raise ValueError(f'No GT images found for dataroot_gt={self.gt_folder!r} '
                             f'(meta_info={opt.get("meta_info")!r}).')

    def _read_gt(self, index):
        """Read the GT image (HWC, RGB or grey, float32 in [0, 1]); on read errors retry other images, then raise.

        Raises:
            ValueError: Naming the files, when three reads failed (truncated / empty / non-image / non-finite).
        """
        logger = get_root_logger()
        errors = []
        for attempt in range(3):
            gt_path = self.paths[index]
            try:
                img = read_with_client(self.file_client, gt_path, 'gt', self.color, option='dataroot_gt')
            except ValueError as error:
                errors.append(str(error))
                logger.warning(f'Cannot read GT image {gt_path} ({error}); trying another one.')
                index = random.randrange(len(self.paths))
                time.sleep(0.1 * attempt)
                continue
            return img, gt_path
        raise ValueError('Cannot read GT images after 3 attempts: ' + '; '.join(errors))

    def __getitem__(self, index):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        img_gt, gt_path = self._read_gt(index)
        img_gt = augment(img_gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', False))

        size = self.crop_pad_size
        h, w = img_gt.shape[:2]
        if h < size or w < size:
            img_gt = cv2.copyMakeBorder(img_gt, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REFLECT_101)
        h, w = img_gt.shape[:2]
        if h > size or w > size:
            top, left = random.randint(0, h - size), random.randint(0, w - size)
            img_gt = img_gt[top:top + size, left:left + size, ...]

        kernel1 = sample_blur_kernel(self.kernel_list, self.kernel_prob, self.blur_sigma, self.betag_range,
                                     self.betap_range, self.sinc_prob, self.blur_kernel_size)
        kernel2 = sample_blur_kernel(self.kernel_list2, self.kernel_prob2, self.blur_sigma2, self.betag_range2,
                                     self.betap_range2, self.sinc_prob2, self.blur_kernel_size2)
        sinc_kernel = sample_final_sinc_kernel(self.final_sinc_prob)

        if img_gt.ndim == 2:  # cv2.copyMakeBorder drops a single channel
            img_gt = img_gt[..., None]
        return {
            'gt': torch.from_numpy(np.ascontiguousarray(img_gt.transpose(2, 0, 1))).float(),
            'kernel1': torch.from_numpy(kernel1.astype(np.float32)),
            'kernel2': torch.from_numpy(kernel2.astype(np.float32)),
            'sinc_kernel': torch.from_numpy(sinc_kernel),
            'gt_path': gt_path
        }

    def __len__(self):
        return len(self.paths)
