"""Paired LQ / GT images for the plain SR recipes: basicsr's ``PairedImageDataset`` at any bit depth, RGB or grey.

Drop-in for basicsr 1.4.2's ``PairedImageDataset`` (same option keys, same random crop / augmentation draws from
Python's ``random``, same sample dict) with these differences:

* ``color: rgb | gray`` (default ``rgb``): 3-channel RGB or 1-channel grey samples; ``color: y`` keeps basicsr's
  meaning (the BT.601 Y channel of ``bgr2ycbcr``, range [16/255, 235/255]).
* Files are decoded at their precision (16-bit PNG / TIFF / float TIFF, see :mod:`srplugins.data.image_io`), not
  through OpenCV's 8-bit colour path; non-finite pixels are rejected.
* Every bad input raises a ``ValueError`` / ``FileNotFoundError`` naming the file and the option: truncated, empty or
  undecodable images (basicsr: ``AttributeError: 'NoneType' object has no attribute 'astype'`` or an OpenCV
  assertion), an empty folder (basicsr: ``ZeroDivisionError`` in the sampler), a missing LQ partner, a GT / LQ pair
  whose sizes do not match ``scale`` (named as a pair), images smaller than the crop.
* Files without an image extension (``.txt``, ``.json``, ...) in the folders are ignored with one warning naming
  them (basicsr pairs them as images).
* The GT is mod-cropped to ``scale x`` the LQ size in every phase (basicsr does it outside training only), so a
  benchmark-style pair (GT side not divisible by the scale, LQ = floor(GT / scale)) also trains; larger mismatches
  are an error.
* ``meta_info_file`` lines may carry extra fields after the GT name (as basicsr's meta-info files); a missing file is
  a ``FileNotFoundError`` naming the option.
"""
import numpy as np
import os.path as osp
import random
import torch
from basicsr.data.data_util import paired_paths_from_lmdb
from basicsr.utils import FileClient, get_root_logger, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data
from torchvision.transforms.functional import normalize

from srplugins.data.image_io import IMAGE_EXTENSIONS, read_with_client

COLORS = ('rgb', 'gray', 'y')


def _image_files(folder, option):
    """Sorted names of the images in ``folder`` (not recursive, as basicsr); other files are ignored with a warning."""
    if not folder or not osp.isdir(folder):
        raise FileNotFoundError(f'datasets option {option}: folder {folder!r} does not exist (expected a folder of '
                                'images).')
    files = sorted(scandir(folder, recursive=False))
    images = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    ignored = [f for f in files if not f.lower().endswith(IMAGE_EXTENSIONS)]
    if ignored:
        shown = ', '.join(ignored[:5]) + (' ...' if len(ignored) > 5 else '')
        get_root_logger().warning(f'{option} {folder!r}: ignoring {len(ignored)} file(s) without an image extension '
                                  f'({", ".join(IMAGE_EXTENSIONS)}): {shown}')
    if not images:
        raise ValueError(f'datasets option {option}: no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder!r}.')
    return images


def _lq_name(gt_rel, filename_tmpl, exists):
    """LQ partner of a GT file: ``filename_tmpl.format(stem)`` with the GT's extension, else any image extension."""
    stem, ext = osp.splitext(gt_rel)
    base = osp.join(osp.dirname(stem), filename_tmpl.format(osp.basename(stem)))
    candidates = [base + ext] + [base + e for e in IMAGE_EXTENSIONS] + [base + e.upper() for e in IMAGE_EXTENSIONS]
    return next((c for c in candidates if exists(c)), None), base + ext


def paired_paths(lq_folder, gt_folder, filename_tmpl, meta_info_file=None):
    """Pairs GT files with their LQ partners (basicsr's folder / meta-info modes, with named errors).

    Returns:
        list[dict]: ``{'lq_path': ..., 'gt_path': ...}`` sorted by GT path.
    """
    if not lq_folder or not osp.isdir(lq_folder):
        raise FileNotFoundError(f'datasets option dataroot_lq: folder {lq_folder!r} does not exist (expected a folder '
                                'of images).')
    if meta_info_file:
        if not osp.isfile(meta_info_file):
            raise FileNotFoundError(f'datasets option meta_info_file: {meta_info_file!r} does not exist.')
        with open(meta_info_file, encoding='utf-8') as fin:
            gt_files = [line.split()[0] for line in fin if line.strip()]
        if not gt_files:
            raise ValueError(f'datasets option meta_info_file: {meta_info_file!r} lists no images.')
        missing = [f for f in gt_files if not osp.isfile(osp.join(gt_folder, f))]
        if missing:
            raise FileNotFoundError(f'meta_info_file {meta_info_file!r} lists {len(missing)} file(s) missing from '
                                    f'dataroot_gt {gt_folder!r}, e.g. {missing[0]!r}.')
        exists = lambda name: osp.isfile(osp.join(lq_folder, name))  # noqa: E731 (meta-info paths may have folders)
    else:
        gt_files = _image_files(gt_folder, 'dataroot_gt')
        exists = set(_image_files(lq_folder, 'dataroot_lq')).__contains__
    paths, unmatched = [], []
    for gt_rel in gt_files:
        lq_rel, expected = _lq_name(gt_rel, filename_tmpl, exists)
        if lq_rel is None:
            unmatched.append(f'{gt_rel} (expected {expected})')
            continue
        paths.append({'lq_path': osp.join(lq_folder, lq_rel), 'gt_path': osp.join(gt_folder, gt_rel)})
    if unmatched:
        shown = '; '.join(unmatched[:5]) + (' ...' if len(unmatched) > 5 else '')
        raise ValueError(f'{len(unmatched)} GT image(s) of dataroot_gt {gt_folder!r} have no LQ partner in dataroot_lq '
                         f'{lq_folder!r} (filename_tmpl {filename_tmpl!r}): {shown}.')
    return paths


def _augment(imgs, hflip, rotation):
    """basicsr ``augment`` on (H, W, C) arrays of any channel count (same ``random`` draws: hflip, vflip, rot90)."""
    hflip = hflip and random.random() < 0.5
    vflip = rotation and random.random() < 0.5
    rot90 = rotation and random.random() < 0.5
    out = []
    for img in imgs:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if rot90:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out


def _to_tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


@DATASET_REGISTRY.register()
class SRPairedImageDataset(data.Dataset):
    """Paired LQ / GT images (plain SR training and validation), any bit depth, RGB or grey.

    Args:
        opt (dict): basicsr ``PairedImageDataset`` options:
            dataroot_gt, dataroot_lq (str): GT / LQ folders (not scanned recursively, as basicsr), or ``.lmdb``
                folders.
            meta_info_file (str, optional): Lines starting with GT paths relative to ``dataroot_gt``.
            io_backend (dict): ``{type: disk}`` (default) or ``{type: lmdb}``.
            filename_tmpl (str): LQ name template applied to the GT stem. Default: ``'{}'``.
            gt_size (int): GT crop side (training); must be divisible by ``scale``.
            use_hflip (bool), use_rot (bool): basicsr augmentation (training). Default: False.
            scale (int): Copied from the top-level ``scale`` by basicsr.
            phase (str): ``'train'`` crops and augments.
            mean, std (list[float], optional): ``torchvision`` normalisation of both images.
            color (str): ``rgb`` (default), ``gray`` (one channel, Rec. 601 luma of colour files) or ``y`` (basicsr's
                Y channel).

    Returns (per item):
        dict: ``lq`` (C, h, w) and ``gt`` (C, h*scale, w*scale) float32 in [0, 1] (C = 3 for rgb, 1 for gray / y),
        ``lq_path``, ``gt_path``.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client = None
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.color = opt.get('color', 'rgb')
        if self.color not in COLORS:
            raise ValueError(f'SRPairedImageDataset: datasets option color must be one of {COLORS}, got '
                             f'{self.color!r}.')
        self.mean, self.std = opt.get('mean'), opt.get('std')
        self.scale = opt.get('scale', 1)
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f'SRPairedImageDataset: scale must be a positive integer, got {self.scale!r}.')
        self.is_train = opt.get('phase', 'train') == 'train'
        if self.is_train:
            gt_size = opt.get('gt_size')
            if isinstance(gt_size, bool) or not isinstance(gt_size, int) or gt_size <= 0 or gt_size % self.scale:
                raise ValueError(f'SRPairedImageDataset: datasets option gt_size must be a positive integer divisible '
                                 f'by scale={self.scale} for training, got {gt_size!r}.')
        self.gt_folder, self.lq_folder = opt.get('dataroot_gt'), opt.get('dataroot_lq')
        for key in ('dataroot_gt', 'dataroot_lq'):
            if not opt.get(key):
                raise ValueError(f'SRPairedImageDataset: datasets option {key} is required.')
        self.filename_tmpl = opt.get('filename_tmpl', '{}')
        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [self.lq_folder, self.gt_folder]
            self.io_backend_opt['client_keys'] = ['lq', 'gt']
            self.paths = paired_paths_from_lmdb([self.lq_folder, self.gt_folder], ['lq', 'gt'])
        elif self.io_backend_opt['type'] == 'disk':
            self.paths = paired_paths(self.lq_folder, self.gt_folder, self.filename_tmpl, opt.get('meta_info_file'))
        else:
            raise ValueError(f'SRPairedImageDataset: io_backend type must be disk or lmdb, got '
                             f'{self.io_backend_opt["type"]!r}.')
        if not self.paths:
            raise ValueError(f'SRPairedImageDataset: no image pairs in dataroot_gt={self.gt_folder!r}, '
                             f'dataroot_lq={self.lq_folder!r}.')

    def _read(self, path, key):
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        color = 'rgb' if self.color == 'y' else self.color
        img = read_with_client(self.file_client, path, key, color, option=f'dataroot_{key}')
        if self.color == 'y':  # basicsr's bgr2ycbcr(y_only=True) on float input
            img = (img[..., 0:1] * 65.481 + img[..., 1:2] * 128.553 + img[..., 2:3] * 24.966 + 16.0) / 255.
        return img

    def __getitem__(self, index):
        scale = self.scale
        gt_path, lq_path = self.paths[index]['gt_path'], self.paths[index]['lq_path']
        img_gt = self._read(gt_path, 'gt')
        img_lq = self._read(lq_path, 'lq')
        (h_lq, w_lq), (h_gt, w_gt) = img_lq.shape[:2], img_gt.shape[:2]
        if not (h_lq * scale <= h_gt < (h_lq + 1) * scale and w_lq * scale <= w_gt < (w_lq + 1) * scale):
            raise ValueError(f'Scale mismatch: GT {gt_path} is {w_gt}x{h_gt} but LQ {lq_path} is {w_lq}x{h_lq}; with '
                             f'scale={scale} the GT must be {w_lq * scale}x{h_lq * scale} (up to {scale - 1} extra '
                             'pixels). Check scale, dataroot_lq and dataroot_gt.')
        img_gt = img_gt[:h_lq * scale, :w_lq * scale]
        if self.is_train:
            gt_size = self.opt['gt_size']
            lq_size = gt_size // scale
            if h_lq < lq_size or w_lq < lq_size:
                raise ValueError(f'LQ {lq_path} is {w_lq}x{h_lq}, smaller than the {lq_size}x{lq_size} crop '
                                 f'(gt_size={gt_size} / scale={scale}); remove the pair or lower gt_size.')
            top, left = random.randint(0, h_lq - lq_size), random.randint(0, w_lq - lq_size)  # basicsr's draw order
            img_lq = img_lq[top:top + lq_size, left:left + lq_size]
            img_gt = img_gt[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
            img_gt, img_lq = _augment([img_gt, img_lq], self.opt.get('use_hflip', False),
                                      self.opt.get('use_rot', False))
        img_gt, img_lq = _to_tensor(img_gt), _to_tensor(img_lq)
        if self.mean is not None or self.std is not None:
            normalize(img_lq, self.mean, self.std, inplace=True)
            normalize(img_gt, self.mean, self.std, inplace=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}

    def __len__(self):
        return len(self.paths)
