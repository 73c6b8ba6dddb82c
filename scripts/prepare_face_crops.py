"""Prepare FFHQ-style aligned face crops from a folder of photos (training data for a face model).

The same detection and alignment as ``srplugins-infer --face_enhance`` (facexlib's ``FaceRestoreHelper``): every face
that facexlib's RetinaFace finds (score > ``--conf_threshold``; offline weights ``detection_Resnet50_Final.pth`` in
``$SRPLUGINS_PRETRAINED_DIR``, ``experiments/pretrained_models`` or the torch hub cache, never downloaded) is warped
by ``align_warp_face`` onto the FFHQ five-point template and written as ``<stem>_<k>.png`` (``k`` = 0 for the most
confident face)::

    python scripts/prepare_face_crops.py -i photos -o datasets/faces/HR --size 512 --min_eye_distance 40

Faces whose eye distance in the photo is below ``--min_eye_distance`` pixels are skipped: upsampling them to the crop
size would give blurry training targets. Grayscale photos are converted to BGR (as facexlib does), 16-bit ones to 8
bits; undecodable files are skipped with a warning.
"""
import argparse
import numpy as np
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from srplugins.tools._cli import HelpFormatter  # noqa: E402


def crop_faces(img, detector=None, size=512, min_eye_distance=0, helper=None):
    """Aligned ``size`` x ``size`` crops of every face of a BGR uint8 image, in the detector's order.

    Args:
        img (ndarray): (H, W, 3) BGR uint8.
        detector: What :func:`srplugins.inference.face.build_face_helper` accepts (a :class:`RetinaFaceDetector`, or a
            function ``image -> list of (5, 2) landmarks``); ignored when ``helper`` is given.
        size (int): Crop side. Default: 512.
        min_eye_distance (float): Skip faces whose eyes are closer (pixels in ``img``). Default: 0.
        helper (FaceRestoreHelper | None): A helper built once for many images (its face size is used).

    Returns:
        list[ndarray]: The crops.
    """
    if helper is None:
        from srplugins.inference.face import build_face_helper
        helper = build_face_helper(detector, face_size=size)
    helper.clean_all()
    helper.read_image(img)
    helper.get_face_landmarks_5(eye_dist_threshold=min_eye_distance if min_eye_distance > 0 else None)
    helper.align_warp_face()
    crops = list(helper.cropped_faces)
    helper.clean_all()
    return crops


def to_bgr8(img):
    """(H, W), (H, W, 1|3|4) uint8 / uint16 -> (H, W, 3) BGR uint8 (alpha dropped)."""
    import cv2
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257. + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=HelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='folder of photos (or one photo)')
    parser.add_argument('-o', '--output', required=True, help='folder for the aligned crops')
    parser.add_argument('--size', type=int, default=512, help='crop side')
    parser.add_argument('--min_eye_distance', type=float, default=0., help='skip smaller faces (pixels in the photo)')
    parser.add_argument('--device', default='cpu', help='torch device')
    parser.add_argument('--conf_threshold', type=float, default=0.97, help='minimum RetinaFace score (GFPGAN: 0.97)')
    args = parser.parse_args(argv)

    from srplugins.inference import read_image, write_image
    from srplugins.inference.cli import list_inputs
    from srplugins.inference.face import RetinaFaceDetector, build_face_helper
    try:
        detector = RetinaFaceDetector(device=args.device, conf_threshold=args.conf_threshold)
        helper = build_face_helper(detector, face_size=args.size, device=args.device)
    except (ImportError, FileNotFoundError, ValueError) as err:
        print(f'prepare_face_crops: error: {err}', file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    written = skipped = 0
    for path in list_inputs(args.input):
        img = read_image(path) if osp.isfile(path) else None
        if img is None:
            warnings.warn(f'Skipping {path!r}: not a decodable image.')
            skipped += 1
            continue
        img = to_bgr8(img)
        stem = osp.splitext(osp.basename(path))[0]
        for k, crop in enumerate(
                crop_faces(img, size=args.size, min_eye_distance=args.min_eye_distance, helper=helper)):
            write_image(osp.join(args.output, f'{stem}_{k}.png'), crop)
            written += 1
    print(f'wrote {written} face crop(s) to {args.output}; skipped {skipped} file(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
