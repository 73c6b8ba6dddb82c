"""Face-aware enhancement with facexlib: detect, align to the FFHQ template, super-resolve each face, paste it back.

The flow of GFPGAN's ``GFPGANer`` (which Real-ESRGAN's ``--face_enhance`` calls), run by facexlib's own
``FaceRestoreHelper``: RetinaFace finds five landmarks per face (``get_face_landmarks_5``, score > 0.97, eye distance
>= 5 pixels), ``align_warp_face`` warps each face onto the FFHQ five-point template (similarity transform,
``cv2.estimateAffinePartial2D`` with LMEDS), ``get_inverse_affine`` + ``paste_faces_to_input_image`` warp the
restored face back into the upscaled background and blend it with facexlib's eroded, blurred square mask (or, with
``use_parse``, its ParseNet face mask). What srplugins adds around the helper:

* **Offline weights.** ``FaceRestoreHelper.__init__`` builds its detector and its parsing network through facexlib's
  ``init_detection_model`` / ``init_parsing_model``, which download any missing file. Here the networks are loaded
  beforehand from files found by :func:`srplugins.utils.pretrained.resolve_pretrained` (``$SRPLUGINS_PRETRAINED_DIR``,
  ``experiments/pretrained_models/``, the torch hub cache; ``torch.load(weights_only=True)``), and the two loaders are
  replaced by ones returning these networks while the helper's constructor runs (:func:`build_face_helper`). A
  missing file is a :class:`FileNotFoundError` naming it; nothing is downloaded, and ParseNet's file is only needed
  with ``use_parse`` (passing ``model_rootpath`` alone would not do: the constructor builds ParseNet even without
  ``use_parse`` and would download it).
* **Any SR checkpoint as the face model.** GFPGAN restores a 512 x 512 crop into 512 x 512. Here the face model is an
  SR network of scale ``s`` (:class:`srplugins.inference.Upscaler`), so the helper aligns at
  ``face_size / s`` pixels and the model's output is ``face_size``. Before the paste the helper's affine matrices
  are re-expressed for the restored face (scaled by ``s``, pixel centres kept: ``r = s * c + (s - 1) / 2``) and its
  ``face_size`` set to the restored size, so facexlib's inverse affine and mask cover the whole restored face.
  facexlib's paste offset (``0.5 * upscale``) puts faces half an output pixel right of and below the pixel-centre
  position (``(upscale - 1) / 2``); the matrices compensate it (a smooth image restored by an interpolating face model
  then differs from its bilinear background by 0.4 gray levels on average around the nose instead of 3).
* **Depth and size.** facexlib picks the output depth from the maximum value (``> 256`` -> uint16, else uint8), which
  turns a dark 16-bit image into 8 bits; a constant 65535 fourth channel, which facexlib carries through as alpha,
  pins the depth, and the faces (8-bit model output) are scaled by 257. facexlib's background is
  ``int(h * upscale) x int(w * upscale)``; an upscaled image rounded the other way is padded / cropped to that size
  for the paste and keeps its own size.

Outside the pasted faces the result is the background unchanged, bit for bit. The helper is stateful:
:meth:`FaceEnhancer.enhance` must not be called from several threads at once. Needs facexlib >= 0.3.0 (0.2.5's
RetinaFace has no ``device`` argument and its helper measures the eye distance between the wrong coordinates).
"""
import contextlib
import numpy as np
import threading

__all__ = [
    'FFHQ_TEMPLATE_512', 'DETECTOR_FILES', 'PARSING_FILE', 'face_template', 'load_retinaface', 'load_parsenet',
    'RetinaFaceDetector', 'LandmarkDetector', 'build_face_helper', 'FaceEnhancer'
]

# FFHQ five-point template (left eye, right eye, nose, left / right mouth corner) of a 512 x 512 crop, as in
# facexlib's FaceRestoreHelper
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]],
                             dtype=np.float32)
# facexlib's release files (https://github.com/xinntao/facexlib/releases), by RetinaFace backbone
DETECTOR_FILES = {
    'resnet50': 'detection_Resnet50_Final.pth',
    'mobile0.25': 'detection_mobilenet0.25_Final.pth',
}
DETECTOR_FILE = DETECTOR_FILES['resnet50']
PARSING_FILE = 'parsing_parsenet.pth'
_RELEASES = 'https://github.com/xinntao/facexlib/releases/download'
_URLS = {
    DETECTOR_FILES['resnet50']: f'{_RELEASES}/v0.1.0/detection_Resnet50_Final.pth',
    DETECTOR_FILES['mobile0.25']: f'{_RELEASES}/v0.1.0/detection_mobilenet0.25_Final.pth',
    PARSING_FILE: f'{_RELEASES}/v0.2.2/parsing_parsenet.pth',
}
_INSTALL_HINT = 'Face enhancement needs facexlib: pip install "srplugins[face]" (or pip install facexlib).'
# facexlib's FaceRestoreHelper reads its two model loaders from its module namespace; replacing them is serialised
_HELPER_LOCK = threading.Lock()


def face_template(face_size=512):
    """The five template points of a ``face_size`` x ``face_size`` crop (facexlib's FFHQ template, scaled)."""
    return FFHQ_TEMPLATE_512 * (face_size / 512.)


def _resolve(filename, purpose):
    from srplugins.utils.pretrained import resolve_pretrained
    return resolve_pretrained(filename, f'{purpose} (facexlib release file, published at {_URLS[filename]})')


def _load_weights(model, path, what):
    """``torch.load(weights_only=True)``, ``module.`` prefix stripped (as facexlib does), strict load, eval mode."""
    from srplugins.checkpoints import load_file
    state = load_file(path, option=what)  # weights_only=True; truncated / foreign files diagnosed
    if isinstance(state, dict) and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f'{path} is not a {what} state dict: {err}') from err
    return model.eval()


def load_retinaface(network='resnet50', device='cpu'):
    """facexlib's RetinaFace with its release weights, found offline (``detection_Resnet50_Final.pth`` for
    ``'resnet50'``, ``detection_mobilenet0.25_Final.pth`` for ``'mobile0.25'``)."""
    import torch
    if network not in DETECTOR_FILES:
        raise ValueError(f'RetinaFace network must be one of {sorted(DETECTOR_FILES)}; got {network!r}')
    path = _resolve(DETECTOR_FILES[network], f'RetinaFace-{network} face detector')
    try:
        from facexlib.detection.retinaface import RetinaFace
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    device = torch.device(device)
    model = RetinaFace(network_name=network, half=False, device=device)
    return _load_weights(model, path, f'facexlib RetinaFace-{network}').to(device)


def load_parsenet(device='cpu'):
    """facexlib's ParseNet face parser (``parsing_parsenet.pth``, found offline), for ``use_parse`` blending."""
    import torch
    path = _resolve(PARSING_FILE, 'ParseNet face parser')
    try:
        from facexlib.parsing.parsenet import ParseNet
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    model = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    return _load_weights(model, path, 'facexlib ParseNet').to(torch.device(device))


class RetinaFaceDetector:
    """facexlib's RetinaFace with offline weights, usable as a FaceRestoreHelper's ``face_det``.

    Args:
        device (str | torch.device): Where the detector runs. Default: 'cpu'.
        conf_threshold (float | None): Minimum face score. None: the caller's (FaceRestoreHelper passes 0.97).
        network (str): ``'resnet50'`` (default, as GFPGAN) or ``'mobile0.25'``.
    """

    def __init__(self, device='cpu', conf_threshold=None, network='resnet50'):
        self.model = load_retinaface(network, device)
        self.conf_threshold = conf_threshold

    def detect_faces(self, img, conf_threshold=0.97):
        """(H, W, 3) BGR image -> (N, 15) float32 rows ``[x1, y1, x2, y2, score, 5 x (x, y)]``, best first."""
        import torch
        threshold = self.conf_threshold if self.conf_threshold is not None else conf_threshold
        with torch.no_grad():
            return self.model.detect_faces(img, threshold)

    def __call__(self, img):
        """(H, W, 3) BGR uint8 -> list of (5, 2) landmark arrays, best first."""
        return [np.asarray(row[5:15], dtype=np.float32).reshape(5, 2) for row in self.detect_faces(img)]


class LandmarkDetector:
    """Adapts a function ``image -> list of (5, 2) landmarks`` to facexlib's ``detect_faces`` interface.

    Rows get score 1 and the landmarks' bounding box; the helper only uses the landmarks (and the box for
    ``only_center_face``).
    """

    def __init__(self, fn):
        self.fn = fn

    def detect_faces(self, img, conf_threshold=0.97):
        rows = []
        for points in self.fn(img):
            points = np.asarray(points, dtype=np.float32).reshape(5, 2)
            box = np.concatenate([points.min(0), points.max(0)])
            rows.append(np.concatenate([box, [1.], points.reshape(-1)]))
        return np.asarray(rows, dtype=np.float32).reshape(-1, 15)


def _as_detector(detector):
    if hasattr(detector, 'detect_faces'):
        return detector
    if callable(detector):
        return LandmarkDetector(detector)
    raise TypeError(f'detector must have detect_faces(img, conf_threshold) or be a function image -> landmarks; got '
                    f'{type(detector).__name__}')


@contextlib.contextmanager
def _given_models(module, face_det, face_parse):
    saved = module.init_detection_model, module.init_parsing_model
    module.init_detection_model = lambda *args, **kwargs: face_det
    module.init_parsing_model = lambda *args, **kwargs: face_parse
    try:
        yield
    finally:
        module.init_detection_model, module.init_parsing_model = saved


def build_face_helper(detector, face_size=512, upscale_factor=1, face_parse=None, device='cpu'):
    """facexlib's ``FaceRestoreHelper`` around the given networks; it builds and downloads nothing itself.

    Args:
        detector: Object with ``detect_faces(img, conf_threshold)`` (e.g. :class:`RetinaFaceDetector`) or a function
            ``image -> list of (5, 2) landmarks`` (wrapped in :class:`LandmarkDetector`).
        face_size (int): Side of the aligned crops. Default: 512.
        upscale_factor (float): Output / input scale for the paste. Default: 1.
        face_parse (nn.Module | None): Face parser for ``use_parse`` blending (e.g. :func:`load_parsenet`); None:
            facexlib's square mask.
        device (str | torch.device): The helper's device (the parser's input goes there). Default: 'cpu'.

    Returns:
        facexlib.utils.face_restoration_helper.FaceRestoreHelper
    """
    import torch
    try:
        import facexlib.utils.face_restoration_helper as helper_module
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    face_det = _as_detector(detector)
    with _HELPER_LOCK, _given_models(helper_module, face_det, face_parse):
        return helper_module.FaceRestoreHelper(
            upscale_factor,
            face_size=face_size,
            det_model='retinaface_resnet50',
            use_parse=face_parse is not None,
            device=torch.device(device))


def _restored_affine(matrix, sx, sy, upscale):
    """Input image -> aligned crop, re-expressed as input image -> restored face (crop scaled by sx, sy), for
    facexlib's paste into the input upscaled by ``upscale``.

    Pixel centres: a restored pixel r covers crop position (r - (s - 1) / 2) / s, an output pixel y input position
    (y - (upscale - 1) / 2) / upscale. facexlib's paste adds ``0.5 * upscale`` (for upscale > 1) where the centre
    mapping adds ``(upscale - 1) / 2``; the difference (half an output pixel) is taken out here, in input pixels.
    """
    out = np.array(matrix, dtype=np.float64)
    out[0] *= sx
    out[1] *= sy
    out[0, 2] += (sx - 1) / 2
    out[1, 2] += (sy - 1) / 2
    facexlib_offset = 0.5 * upscale if upscale > 1 else 0.
    shift = (facexlib_offset - (upscale - 1) / 2) / upscale
    out[:, 2] += out[:, :2] @ np.array([shift, shift])
    return out


def _fit(img, height, width):
    """``img`` cropped / edge-padded at the bottom and right to ``height`` x ``width``."""
    img = img[:height, :width]
    pad_h, pad_w = height - img.shape[0], width - img.shape[1]
    if pad_h or pad_w:
        img = np.pad(img, ((0, pad_h), (0, pad_w)) + ((0, 0), ) * (img.ndim - 2), mode='edge')
    return img


class FaceEnhancer:
    """Super-resolve faces with their own model and paste them into an upscaled background (facexlib's helper).

    Args:
        face_upscaler (srplugins.inference.Upscaler): The face model (any supported SR checkpoint, scale s).
        detector: :class:`RetinaFaceDetector`, any object with ``detect_faces(img, conf_threshold)`` returning
            facexlib's (N, 15) rows, or a function ``image -> list of (5, 2) landmarks``.
        face_size (int): Side of a restored face; faces are aligned at ``face_size / s``. Default: 512.
        use_parse (bool): Blend with facexlib's ParseNet face mask (``parsing_parsenet.pth`` found offline) instead of
            the square mask, as GFPGAN does. Default: False.
        face_parse (nn.Module | None): A parser to use instead of loading ParseNet (implies ``use_parse``).
        only_center_face (bool): Restore only the face nearest the image centre. Default: False.
        eye_dist_threshold (float | None): Skip faces whose eyes are closer (pixels in the input). Default: 5
            (GFPGAN's).
    """

    def __init__(self,
                 face_upscaler,
                 detector,
                 face_size=512,
                 use_parse=False,
                 face_parse=None,
                 only_center_face=False,
                 eye_dist_threshold=5):
        self.face_upscaler = face_upscaler
        self.face_size = face_size
        self.crop_size = max(int(round(face_size / float(face_upscaler.scale))), 1)
        device = getattr(face_upscaler, 'device', 'cpu')
        if face_parse is None and use_parse:
            face_parse = load_parsenet(device)
        self.helper = build_face_helper(detector, self.crop_size, face_parse=face_parse, device=device)
        self.only_center_face = only_center_face
        self.eye_dist_threshold = eye_dist_threshold

    def enhance(self, img, background, upscale):
        """Restore the faces of ``img`` into ``background``.

        Args:
            img (ndarray): The input, (H, W, 3) BGR uint8.
            background (ndarray): ``img`` upscaled by ``upscale``, (H', W', 3) BGR uint8 or uint16.
            upscale (float): Background / input scale.

        Returns:
            tuple[ndarray, int]: The background with the faces (same shape and dtype), and the number of faces.
        """
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'Face detection needs a (H, W, 3) uint8 BGR image; got {img.dtype} {img.shape}')
        if background.dtype not in (np.uint8, np.uint16) or background.ndim != 3 or background.shape[2] != 3:
            raise ValueError(
                f'The background must be (H, W, 3) uint8 or uint16; got {background.dtype} {background.shape}')
        helper = self.helper
        helper.clean_all()
        helper.face_size = (self.crop_size, self.crop_size)  # the face model's input (set back after each paste)
        helper.read_image(img)
        helper.set_upscale_factor(upscale)
        count = helper.get_face_landmarks_5(
            only_center_face=self.only_center_face, eye_dist_threshold=self.eye_dist_threshold)
        if not count:
            return background, 0
        helper.align_warp_face()

        wide = background.dtype == np.uint16
        for crop in helper.cropped_faces:
            restored, _ = self.face_upscaler.enhance(crop)
            helper.add_restored_face(restored.astype(np.float32) * 257. if wide else restored)
        face_h, face_w = helper.restored_faces[0].shape[:2]
        sx, sy = face_w / self.crop_size, face_h / self.crop_size
        helper.affine_matrices = [_restored_affine(m, sx, sy, upscale) for m in helper.affine_matrices]
        helper.face_size = (face_w, face_h)
        helper.get_inverse_affine()

        h, w = img.shape[:2]
        canvas = _fit(background, int(h * upscale), int(w * upscale))
        if wide:
            pin = np.full(canvas.shape[:2] + (1, ), 65535., np.float32)
            canvas = np.concatenate([canvas.astype(np.float32), pin], axis=2)
        pasted = helper.paste_faces_to_input_image(upsample_img=canvas)[..., :3]
        helper.face_size = (self.crop_size, self.crop_size)
        out = background.copy()
        rows, cols = min(out.shape[0], pasted.shape[0]), min(out.shape[1], pasted.shape[1])
        out[:rows, :cols] = pasted[:rows, :cols]
        return out, count
