"""Prepare FFHQ-style aligned face crops from a folder of photos (training data for a face model).

Every face found by facexlib's RetinaFace (offline weights ``detection_Resnet50_Final.pth`` in
``$SRPLUGINS_PRETRAINED_DIR``, ``experiments/pretrained_models`` or the torch hub cache) is warped onto the FFHQ
five-point template and written as ``<stem>_<k>.png`` (``k`` = 0 for the most confident face)::

    python scripts/prepare_face_crops.py -i photos -o datasets/faces/HR --size 512 --min_eye_distance 40

Faces whose eye distance in the photo is below ``--min_eye_distance`` pixels are skipped: upsampling them to the crop
size would give blurry training targets. Undecodable files are skipped with a warning.
"""
import argparse
import numpy as np
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def crop_faces(img, detector, size=512, min_eye_distance=0):
    """Aligned crops of every face of a BGR uint8 image, most confident first."""
    from srplugins.utils.face import align_face
    crops = []
    for points in detector(img):
        if np.linalg.norm(points[1] - points[0]) < min_eye_distance:
            continue
        crops.append(align_face(img, points, size)[0])
    return crops


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='folder of photos (or one photo)')
    parser.add_argument('-o', '--output', required=True, help='folder for the aligned crops')
    parser.add_argument('--size', type=int, default=512, help='crop side')
    parser.add_argument('--min_eye_distance', type=float, default=0., help='skip smaller faces (pixels in the photo)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--conf_threshold', type=float, default=0.8)
    args = parser.parse_args(argv)

    from srplugins.utils.face import RetinaFaceDetector
    from srplugins.utils.inference import list_inputs, read_image, write_image
    try:
        detector = RetinaFaceDetector(device=args.device, conf_threshold=args.conf_threshold)
    except (ImportError, FileNotFoundError) as err:
        print(f'prepare_face_crops: error: {err}', file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    written = skipped = 0
    for path in list_inputs(args.input):
        img = read_image(path) if osp.isfile(path) else None
        if img is None or img.ndim != 3:
            warnings.warn(f'Skipping {path!r}: not a decodable colour image.')
            skipped += 1
            continue
        img = img[..., :3]
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) / 257. + 0.5).astype(np.uint8)
        stem = osp.splitext(osp.basename(path))[0]
        for k, crop in enumerate(crop_faces(img, detector, args.size, args.min_eye_distance)):
            write_image(osp.join(args.output, f'{stem}_{k}.png'), crop)
            written += 1
    print(f'wrote {written} face crop(s) to {args.output}; skipped {skipped} file(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
