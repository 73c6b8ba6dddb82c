"""Face-aware enhancement: align faces to the FFHQ template, super-resolve them with a face model, paste them back.

Follows the flow of GFPGAN's ``GFPGANer`` / facexlib's ``FaceRestoreHelper`` (detect five landmarks with RetinaFace,
warp each face onto the FFHQ five-point template with a similarity transform, restore the aligned crop, warp it back
with the inverse transform scaled to the upscaled background, blend with an eroded and blurred mask). Differences,
deliberate: alignment and paste-back are written here with OpenCV only, so they are testable with given landmarks and
need no detector weights; the aligned crop is taken at ``face_size / face_scale`` so that any SR checkpoint (scale
``face_scale``) can be the face model, and the coordinate mappings use pixel centres (``y = s * x + (s - 1) / 2``).
Only the detector comes from facexlib (optional extra ``face``); its weights ``detection_Resnet50_Final.pth`` are
looked up offline with :func:`srplugins.utils.pretrained.resolve_pretrained`.
"""
import cv2
import numpy as np
import os.path as osp

# FFHQ five-point template (left eye, right eye, nose, left mouth corner, right mouth corner) for 512 x 512 crops, as
# used by facexlib / GFPGAN
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]],
                             dtype=np.float32)
DETECTOR_FILE = 'detection_Resnet50_Final.pth'


def face_template(face_size=512):
    """The five template points for a ``face_size`` x ``face_size`` crop."""
    return FFHQ_TEMPLATE_512 * (face_size / 512.)


def align_face(img, landmarks, face_size=512, border_value=(135, 133, 132)):
    """Warp the face with the given five landmarks onto the FFHQ template.

    Args:
        img (ndarray): (H, W, C) image.
        landmarks (array-like): (5, 2) points (x, y): eyes, nose, mouth corners.
        face_size (int): Side of the aligned crop. Default: 512.
        border_value (tuple): Fill outside the image (facexlib's gray).

    Returns:
        tuple[ndarray, ndarray]: The (face_size, face_size, C) crop and the 2x3 affine matrix image -> crop.
    """
    points = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    matrix = cv2.estimateAffinePartial2D(points, face_template(face_size), method=cv2.LMEDS)[0]
    if matrix is None:
        raise ValueError(f'Could not fit a similarity transform to the landmarks {points.tolist()}.')
    crop = cv2.warpAffine(img, matrix, (face_size, face_size), borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return crop, matrix


def _homogeneous(matrix):
    return np.vstack([np.asarray(matrix, dtype=np.float64), [0., 0., 1.]])


def _scale_centres(s):
    """Pixel-centre mapping of a resize by ``s``: x -> s * x + (s - 1) / 2."""
    return np.array([[s, 0., (s - 1) / 2], [0., s, (s - 1) / 2], [0., 0., 1.]])


def paste_faces(background, faces, matrices, upscale, face_scale=1.):
    """Blend restored faces into the upscaled background.

    Args:
        background (ndarray): (H * upscale, W * upscale, C) upscaled image, uint8 / uint16 / float.
        faces (list[ndarray]): Restored faces, each ``face_scale`` times the aligned crop.
        matrices (list[ndarray]): 2x3 matrices from :func:`align_face` (input image -> aligned crop).
        upscale (float): Background scale relative to the input image.
        face_scale (float): Restored face size / aligned crop size. Default: 1.

    Returns:
        ndarray: Background with the faces, same dtype.
    """
    h, w = background.shape[:2]
    out = background.astype(np.float32)
    for face, matrix in zip(faces, matrices):
        # restored face -> aligned crop -> input image -> upscaled background
        to_bg = _scale_centres(upscale) @ np.linalg.inv(_homogeneous(matrix)) @ np.linalg.inv(
            _scale_centres(face_scale))
        warp = to_bg[:2]
        face_h, face_w = face.shape[:2]
        warped = cv2.warpAffine(face.astype(np.float32), warp, (w, h))
        mask = cv2.warpAffine(np.ones((face_h, face_w), np.float32), warp, (w, h), flags=cv2.INTER_NEAREST)
        # erode the border (interpolation fringe), then feather proportionally to the face size
        pixels = float(mask.sum())
        if pixels < 1:
            continue
        edge = max(int(np.sqrt(pixels) // 20), 1)
        mask = cv2.erode(mask, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
        blur = 2 * edge + 1
        mask = cv2.GaussianBlur(mask, (blur, blur), 0)
        if warped.ndim == 3:
            mask = mask[..., None]
        out = mask * warped + (1 - mask) * out
    if np.issubdtype(background.dtype, np.integer):
        info = np.iinfo(background.dtype)
        return np.clip(out + 0.5, info.min, info.max).astype(background.dtype)
    return out.astype(background.dtype)


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50) with offline weights; call it with a BGR uint8 image.

    Args:
        device (str): Where the detector runs. Default: 'cpu'.
        conf_threshold (float): Minimum face score. Default: 0.8.
    """

    def __init__(self, device='cpu', conf_threshold=0.8):
        try:
            from facexlib.detection import init_detection_model
        except ImportError as err:
            raise ImportError('Face enhancement needs facexlib: pip install "srplugins[face]" (or pip install '
                              'facexlib).') from err
        from srplugins.utils.pretrained import resolve_pretrained
        path = resolve_pretrained(DETECTOR_FILE, 'facexlib RetinaFace face detector (released by facexlib v0.1.0)')
        self.model = init_detection_model(
            'retinaface_resnet50', half=False, device=device, model_rootpath=osp.dirname(path))
        self.conf_threshold = conf_threshold

    def __call__(self, img):
        """(H, W, 3) BGR uint8 -> list of (5, 2) landmark arrays, most confident first."""
        import torch
        with torch.no_grad():
            dets = self.model.detect_faces(img, conf_threshold=self.conf_threshold)
        return [np.asarray(d[5:15], dtype=np.float32).reshape(5, 2) for d in dets]


class FaceEnhancer:
    """Super-resolve faces separately and paste them into an upscaled background.

    Args:
        face_upscaler (srplugins.utils.inference.Upscaler): The face model (any supported SR checkpoint).
        detector (callable): BGR uint8 image -> list of (5, 2) landmarks, e.g. :class:`RetinaFaceDetector`.
        face_size (int): Side of the restored face (the aligned crop is ``face_size / face_upscaler.scale``).
            Default: 512.
    """

    def __init__(self, face_upscaler, detector, face_size=512):
        self.face_upscaler = face_upscaler
        self.detector = detector
        self.face_size = face_size

    def enhance(self, img, background, upscale):
        """Faces of ``img`` (the input, (H, W, 3) BGR uint8) restored into ``background`` (``img`` upscaled by
        ``upscale``). Returns ``(image, number of faces)``."""
        landmarks = self.detector(img)
        if not landmarks:
            return background, 0
        face_scale = float(self.face_upscaler.scale)
        crop_size = max(int(round(self.face_size / face_scale)), 1)
        faces, matrices = [], []
        for points in landmarks:
            crop, matrix = align_face(img, points, crop_size)
            restored, _ = self.face_upscaler.enhance(crop)
            faces.append(restored)
            matrices.append(matrix)
        if background.dtype != faces[0].dtype:
            faces = [f.astype(np.float32) / np.iinfo(f.dtype).max * np.iinfo(background.dtype).max for f in faces]
        return paste_faces(background, faces, matrices, upscale, face_scale), len(faces)
