"""HR images degraded on the fly with the BSRGAN degradation model (training and deterministic validation pairs).

Paper: Zhang et al., "Designing a Practical Degradation Model for Deep Blind Image Super-Resolution", ICCV 2021,
section 3 (degradation) and section 5 (training on 72x72 LR / 288x288 HR patches). Official behaviour followed: KAIR
``data/dataset_blindsr.py::DatasetBlindSR``: random HR crop of ``H_size`` (KAIR json: 320), one of the 8 dihedral
augmentations, then ``degradation_bsrgan`` / ``degradation_bsrgan_plus`` returning an LQ patch of ``lq_patchsize``
and the aligned HR patch of ``lq_patchsize*scale``; validation degrades the whole image.

Deliberate differences:
    * Images smaller than the crop raise a ValueError naming the file (KAIR silently substitutes a flat patch of a
      random colour); ``skip_small: true`` instead logs a warning and draws another image.
    * All randomness of an item comes from one ``numpy.random.Generator`` seeded with (``torch.initial_seed()``,
      index, a per-process call counter): fresh per dataloader worker and per epoch, reproducible for a fixed
      ``manual_seed``. Validation items use (``val_seed``, index) only, so validation sets are identical across
      runs and epochs.
    * Images are read through basicsr's FileClient (disk / lmdb / meta_info) and decoded at their precision (8 / 16
      bit, float; :mod:`srplugins.data.image_io`) as RGB, because the degradation works in RGB (JPEG chroma, luma
      weights); outputs are RGB CHW tensors as basicsr expects. ``color: gray`` gives one-channel samples (KAIR is
      RGB only); the degradation then works on the grey plane (see ``srplugins.ops.bsrgan_degradation``).
    * Unreadable files (truncated, empty, not an image, non-finite pixels) raise a ValueError naming the file.
    * Files whose names contain 'face' are not special-cased (KAIR restricts them to identity / horizontal flip).
"""
import numpy as np
import os.path as osp
import torch
from basicsr.data.data_util import paths_from_lmdb
from basicsr.utils import FileClient, get_root_logger, img2tensor, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data

from srplugins.data.image_io import color_option, read_with_client
from srplugins.ops.bsrgan_degradation import degradation_bsrgan, degradation_bsrgan_plus

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.PNG', '.JPG', '.JPEG')
DEGRADATIONS = ('bsrgan', 'bsrgan_plus')
DEGRADE_ON = ('dataset', 'model')


def degrade_on_option(dataset_opt):
    """The ``degrade_on`` option of a dataset: 'dataset' (default) or 'model'; anything else raises ValueError."""
    value = dataset_opt.get('degrade_on', 'dataset')
    if value not in DEGRADE_ON:
        raise ValueError(f'datasets option degrade_on must be one of {DEGRADE_ON}, got {value!r}.')
    return value


def _positive_int(opt, key, default):
    value = opt.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f'datasets option {key!r} must be a positive integer, got {value!r}.')
    return value


def _probability(opt, key, default):
    value = opt.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f'datasets option {key!r} must be a probability in [0, 1], got {value!r}.')
    return float(value)


@DATASET_REGISTRY.register()
class BSRGANDataset(data.Dataset):
    """HR images with BSRGAN degradation computed per item on the CPU (numpy / OpenCV).

    Args:
        opt (dict): Dataset options:
            dataroot_gt (str): HR folder (scanned recursively), or an ``.lmdb`` folder for the lmdb backend.
            meta_info (str, optional): Text file whose lines start with paths relative to ``dataroot_gt``.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            scale (int): 2, 3 or 4 (copied from the top-level ``scale`` by basicsr).
            lq_patchsize (int): LQ patch side. Default: 72 (paper / KAIR json). Outside training ``~`` (null) uses the
                largest square of each image (side min(H, W) // scale after mod crop).
            gt_size (int): Side of the random HR crop taken before degradation (KAIR ``H_size``); must be at least
                ``lq_patchsize*scale``; training only. Default: ``lq_patchsize*scale``.
            degradation_type (str): 'bsrgan' or 'bsrgan_plus'. Default: 'bsrgan'.
            shuffle_prob (float), use_sharp (bool): BSRGAN+ options. Default: 0.1, False (KAIR dataset defaults).
            use_hflip (bool), use_rot (bool): Dihedral augmentation (both: all 8 modes). Default: True, True.
            skip_small (bool): Skip images smaller than the crop with a warning instead of raising. Default: False.
            val_seed (int): Seed of the validation degradations. Default: 0.
            degrade_on (str): 'dataset' degrades each item here on the CPU (KAIR's way); 'model' (training only)
                yields the augmented HR crop alone and leaves the degradation to a model that runs it on its device
                (``BSRNetModel`` / ``BSRGANModel``, which read the options above from this dataset). Default: 'dataset'.
            phase (str): 'train' crops and augments; any other phase degrades the whole image deterministically.
            color (str): 'rgb' (default) or 'gray' (one channel; colour files are converted to Rec. 601 luma).

    Returns (per item):
        dict: ``lq`` (C, p, p) and ``gt`` (C, p*scale, p*scale) float32 tensors in [0, 1] (p = lq_patchsize; C = 3
        RGB, or 1 with ``color: gray``), ``lq_path`` and ``gt_path`` (the HR file). With ``degrade_on: model`` in
        training: ``gt`` (C, gt_size, gt_size) and the paths, no ``lq``.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client = None
        self.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        self.scale = opt.get('scale', 4)
        if self.scale not in (2, 3, 4):
            raise ValueError(f'datasets option scale must be 2, 3 or 4 for BSRGANDataset, got {self.scale!r}.')
        self.is_train = opt.get('phase', 'train') == 'train'
        if not self.is_train and 'lq_patchsize' in opt and opt['lq_patchsize'] is None:
            self.lq_patchsize = None  # evaluation on the largest centred-grid square of each image
        else:
            self.lq_patchsize = _positive_int(opt, 'lq_patchsize', 72)
        self.gt_size = _positive_int(opt, 'gt_size', (self.lq_patchsize or 1) * self.scale)
        if self.is_train and self.gt_size < self.lq_patchsize * self.scale:
            raise ValueError(f'datasets option gt_size ({self.gt_size}) must be >= lq_patchsize*scale '
                             f'({self.lq_patchsize * self.scale}).')
        self.degradation_type = opt.get('degradation_type', 'bsrgan')
        if self.degradation_type not in DEGRADATIONS:
            raise ValueError(f'datasets option degradation_type must be one of {DEGRADATIONS}, '
                             f'got {self.degradation_type!r}.')
        self.shuffle_prob = _probability(opt, 'shuffle_prob', 0.1)
        self.use_sharp = bool(opt.get('use_sharp', False))
        self.use_hflip = bool(opt.get('use_hflip', True))
        self.use_rot = bool(opt.get('use_rot', True))
        self.skip_small = bool(opt.get('skip_small', False))
        self.val_seed = opt.get('val_seed', 0)
        if not isinstance(self.val_seed, int) or self.val_seed < 0:
            raise ValueError(f'datasets option val_seed must be a non-negative integer, got {self.val_seed!r}.')
        self.degrade_on_model = self.is_train and degrade_on_option(opt) == 'model'
        self.color = color_option(opt, 'BSRGANDataset')
        self._calls = 0  # per-process item counter (a plain int stays picklable for spawned workers)

        gt_folder = opt.get('dataroot_gt')
        if not gt_folder:
            raise ValueError('datasets option dataroot_gt (HR image folder) is required for BSRGANDataset.')
        if self.io_backend_opt['type'] == 'lmdb':
            if not gt_folder.endswith('.lmdb'):
                raise ValueError(f'dataroot_gt must be an .lmdb folder for the lmdb backend, got {gt_folder!r}.')
            self.io_backend_opt['db_paths'] = [gt_folder]
            self.io_backend_opt['client_keys'] = ['gt']
            self.paths = paths_from_lmdb(gt_folder)
        elif opt.get('meta_info'):
            if not osp.isfile(opt['meta_info']):
                raise FileNotFoundError(f'meta_info file {opt["meta_info"]!r} does not exist.')
            with open(opt['meta_info']) as fin:
                self.paths = [osp.join(gt_folder, line.split()[0]) for line in fin if line.strip()]
        else:
            if not osp.isdir(gt_folder):
                raise FileNotFoundError(f'dataroot_gt folder {gt_folder!r} does not exist.')
            self.paths = sorted(
                osp.join(gt_folder, p) for p in scandir(gt_folder, suffix=IMAGE_SUFFIXES, recursive=True))
        if not self.paths:
            raise ValueError(f'No HR images found for dataroot_gt={gt_folder!r} (meta_info={opt.get("meta_info")!r}).')

    def __len__(self):
        return len(self.paths)

    def item_rng(self, index):
        """Generator of one item: (val_seed, index) for validation, else mixed with the worker seed and a counter."""
        if not self.is_train:
            return np.random.default_rng([self.val_seed, index])
        self._calls += 1
        return np.random.default_rng([torch.initial_seed() % (1 << 64), index, self._calls])

    def _read_rgb(self, path):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        return read_with_client(self.file_client, path, 'gt', self.color, option='dataroot_gt')

    def _too_small(self, img, need):
        h, w = img.shape[:2]
        return h - h % self.scale < need or w - w % self.scale < need

    def __getitem__(self, index):
        rng = self.item_rng(index)
        path = self.paths[index]
        img = self._read_rgb(path)
        need = self.gt_size if self.is_train else (self.lq_patchsize or 1) * self.scale
        for _ in range(len(self.paths)):
            if not self._too_small(img, need):
                break
            message = (f'HR image {path} is {img.shape[0]}x{img.shape[1]}, smaller than the required '
                       f'{need}x{need} (gt_size / lq_patchsize*scale)')
            if not self.skip_small:
                raise ValueError(message + '; remove it, lower gt_size / lq_patchsize, or set skip_small: true.')
            get_root_logger().warning(message + '; skipped (skip_small: true).')
            path = self.paths[int(rng.integers(len(self.paths)))]
            img = self._read_rgb(path)
        else:
            raise ValueError(f'No HR image in {self.opt.get("dataroot_gt")!r} is at least {need}x{need}.')

        if self.is_train:
            h, w = img.shape[:2]
            top, left = int(rng.integers(h - need + 1)), int(rng.integers(w - need + 1))
            img = img[top:top + need, left:left + need]
            if self.use_hflip and rng.random() < 0.5:
                img = img[:, ::-1]
            if self.use_rot:
                if rng.random() < 0.5:
                    img = img[::-1]
                if rng.random() < 0.5:
                    img = img.transpose(1, 0, 2)
            img = np.ascontiguousarray(img)
            if self.degrade_on_model:
                return {'gt': img2tensor(img, bgr2rgb=False, float32=True), 'lq_path': path, 'gt_path': path}

        lq_size = self.lq_patchsize or min(img.shape[0] // self.scale, img.shape[1] // self.scale)
        if self.degradation_type == 'bsrgan':
            lq, gt = degradation_bsrgan(img, self.scale, lq_size, rng)
        else:
            lq, gt = degradation_bsrgan_plus(img, self.scale, self.shuffle_prob, self.use_sharp, lq_size, rng)
        lq, gt = img2tensor([lq, gt], bgr2rgb=False, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': path, 'gt_path': path}
