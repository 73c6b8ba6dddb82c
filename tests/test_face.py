"""Face-aware enhancement with facexlib's FaceRestoreHelper, driven by given landmarks (no detector weights).

Tests that need facexlib (optional extra ``face``) skip without it; the offline lookup, the install hint and the
landmark adapter are tested either way.
"""
import cv2
import numpy as np
import pytest
import sys
import torch
from torch import nn

import srplugins  # noqa: F401
from srplugins.inference import Upscaler
from srplugins.inference import face as face_module
from srplugins.inference import read_image
from srplugins.inference.cli import process_paths
from srplugins.inference.face import (FaceEnhancer, LandmarkDetector, RetinaFaceDetector, build_face_helper,
                                      face_template)
from tests.conftest import needs_facexlib


def _similarity(scale, angle_deg, tx, ty):
    """2x3 similarity transform (template crop -> image)."""
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _apply(transform, points):
    return np.asarray(points, np.float64) @ transform[:, :2].T + transform[:, 2]


def _landmarks(transform, crop_size):
    """The FFHQ template of a ``crop_size`` crop placed in an image by ``transform``."""
    return _apply(transform, face_template(crop_size)).astype(np.float32)


def _smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _face_square(transform, crop_size, upscale, shape, grow=2):
    """Boolean mask of the aligned crop's square mapped into the output (grown by ``grow`` pixels)."""
    corners = np.array([[0, 0], [crop_size, 0], [crop_size, crop_size], [0, crop_size]], np.float64) - 0.5
    poly = (_apply(transform, corners) + 0.5) * upscale - 0.5
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)


class Constant(nn.Module):
    """A face model whose output is one colour (scale ``scale``)."""

    def __init__(self, scale, value=1.):
        super().__init__()
        self.scale, self.value = scale, value

    def forward(self, x):
        return torch.full_like(nn.functional.interpolate(x, scale_factor=self.scale), self.value)


class Bilinear(nn.Module):
    """An interpolating face model (scale ``scale``): restores nothing, so the pasted face must match its place."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.scale, mode='bilinear', align_corners=False)


def _upscaler(net, scale):
    return Upscaler(net, scale, device='cpu')


# ------------------------------------------------------------------------------------------------------------- #
#  Without facexlib
# ------------------------------------------------------------------------------------------------------------- #
def test_face_template_is_ffhq_five_points_scaled():
    assert np.allclose(face_template(512)[0], [192.98138, 239.94708])
    assert np.allclose(face_template(128), face_template(512) / 4)


def test_landmark_detector_gives_facexlib_rows():
    points = np.array([[10, 12], [20, 12], [15, 16], [11, 20], [19, 21]], np.float32)
    rows = LandmarkDetector(lambda img: [points, points + 30]).detect_faces(np.zeros((64, 64, 3), np.uint8), 0.97)
    assert rows.shape == (2, 15) and rows.dtype == np.float32
    assert np.array_equal(rows[0, :4], [10, 12, 20, 21]) and rows[0, 4] == 1
    assert np.array_equal(rows[1, 5:].reshape(5, 2), points + 30)
    assert LandmarkDetector(lambda img: []).detect_faces(np.zeros((8, 8, 3), np.uint8)).shape == (0, 15)


def test_missing_detector_weights_name_the_file(offline):
    with pytest.raises(FileNotFoundError) as err:
        RetinaFaceDetector()
    message = str(err.value)
    assert 'detection_Resnet50_Final.pth' in message and str(offline) in message
    assert 'SRPLUGINS_PRETRAINED_DIR' in message and 'never downloads' in message
    assert 'releases/download/v0.1.0/detection_Resnet50_Final.pth' in message
    with pytest.raises(FileNotFoundError, match='detection_mobilenet0.25_Final.pth'):
        RetinaFaceDetector(network='mobile0.25')
    with pytest.raises(ValueError, match='resnet50'):
        RetinaFaceDetector(network='vgg')


def test_missing_parsing_weights_name_the_file(offline):
    with pytest.raises(FileNotFoundError, match='parsing_parsenet.pth'):
        FaceEnhancer(_upscaler(Bilinear(2), 2), lambda img: [], face_size=32, use_parse=True)


def test_without_facexlib_the_error_says_how_to_install(offline, monkeypatch):
    (offline / 'detection_Resnet50_Final.pth').write_bytes(b'')
    for name in ('facexlib', 'facexlib.detection', 'facexlib.detection.retinaface', 'facexlib.utils',
                 'facexlib.utils.face_restoration_helper'):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'srplugins\[face\]'):
        RetinaFaceDetector()
    with pytest.raises(ImportError, match=r'srplugins\[face\]'):
        build_face_helper(lambda img: [])
    with pytest.raises(ImportError, match=r'srplugins\[face\]'):
        FaceEnhancer(_upscaler(Bilinear(2), 2), lambda img: [], face_size=32)


# ------------------------------------------------------------------------------------------------------------- #
#  facexlib's helper with given landmarks
# ------------------------------------------------------------------------------------------------------------- #
@needs_facexlib
def test_helper_is_facexlibs_and_builds_no_model(offline):
    import facexlib.utils.face_restoration_helper as helper_module
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper
    loaders = helper_module.init_detection_model, helper_module.init_parsing_model
    helper = build_face_helper(lambda img: [], face_size=64)
    assert type(helper) is FaceRestoreHelper
    assert isinstance(helper.face_det, LandmarkDetector) and helper.face_parse is None and not helper.use_parse
    assert np.allclose(helper.face_template, face_template(64), atol=1e-4)
    assert (helper_module.init_detection_model, helper_module.init_parsing_model) == loaders  # restored


@needs_facexlib
def test_aligned_crop_puts_the_face_pattern_on_the_template(offline):
    crop_size = 64
    img = _smooth_image(160, 200) // 2 + 100  # 100..227
    transform = _similarity(1.3, 15, 70, 40)  # crop -> image
    landmarks = _landmarks(transform, crop_size)
    for x, y in landmarks:  # dark "eyes, nose, mouth corners"
        cv2.circle(img, (int(round(x)), int(round(y))), 3, (0, 0, 0), -1)

    helper = build_face_helper(lambda image: [landmarks], face_size=crop_size)
    helper.read_image(img)
    assert helper.get_face_landmarks_5() == 1
    helper.align_warp_face()
    crop = helper.cropped_faces[0]
    assert crop.shape == (crop_size, crop_size, 3)
    assert np.allclose(helper.affine_matrices[0], cv2.invertAffineTransform(transform), atol=1e-3)

    expected = cv2.warpAffine(img, transform, (crop_size, crop_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1
    for x, y in face_template(crop_size):
        assert crop[int(round(y)), int(round(x))].max() < 20  # the pattern sits on the template points
    assert crop.mean() > 100


@needs_facexlib
@pytest.mark.parametrize('face_scale', [1, 2])
def test_constant_face_is_pasted_only_inside_the_face(offline, face_scale):
    img = _smooth_image(96, 120, seed=1)
    crop_size = 32
    transform = _similarity(1.2, -10, 40, 25)
    landmarks = _landmarks(transform, crop_size)
    background, _ = _upscaler(nn.Upsample(scale_factor=2, mode='nearest'), 2).enhance(img)

    enhancer = FaceEnhancer(
        _upscaler(Constant(face_scale), face_scale), lambda image: [landmarks], face_size=crop_size * face_scale)
    assert enhancer.crop_size == crop_size
    out, count = enhancer.enhance(img, background, 2)
    assert count == 1 and out.shape == background.shape and out.dtype == np.uint8

    inside = _face_square(transform, crop_size, 2, out.shape)
    changed = (out != background).any(axis=2)
    assert changed.sum() > 0.5 * (crop_size * 1.2 * 2)**2  # most of the face square is replaced ...
    assert not changed[~inside].any()  # ... and nothing outside it
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    assert (out[nose[1] - 4:nose[1] + 4, nose[0] - 4:nose[0] + 4] == 255).all()

    # the helper is reusable: a second image with no face leaves the background as it is
    empty = FaceEnhancer(_upscaler(Constant(face_scale), face_scale), lambda image: [], face_size=64)
    same, none = empty.enhance(img, background, 2)
    assert same is background and none == 0
    assert np.array_equal(enhancer.enhance(img, background, 2)[0], out)


@needs_facexlib
@pytest.mark.parametrize('face_scale,upscale', [(2, 2), (4, 2), (2, 3)])
def test_interpolating_face_model_pastes_back_in_place(offline, face_scale, upscale):
    """An SR "face model" that only interpolates must reproduce the (bilinear) background around the nose: the
    alignment, the face-scale re-expression of facexlib's matrices and the paste offset are all in place."""
    img = _smooth_image(96, 120, seed=2)
    crop_size = 40
    transform = _similarity(0.8, -10, 40, 30)  # the crop magnifies the face: little is lost in the round trip
    landmarks = _landmarks(transform, crop_size)
    background, _ = _upscaler(Bilinear(upscale), upscale).enhance(img)
    enhancer = FaceEnhancer(
        _upscaler(Bilinear(face_scale), face_scale), lambda image: [landmarks], face_size=crop_size * face_scale)
    out, count = enhancer.enhance(img, background, upscale)
    nose = np.round((landmarks[2] + 0.5) * upscale - 0.5).astype(int)
    r = 4 * upscale
    region = (slice(nose[1] - r, nose[1] + r), slice(nose[0] - r, nose[0] + r))
    diff = np.abs(out[region].astype(int) - background[region].astype(int))
    assert count == 1 and diff.mean() < 1.0 and diff.max() <= 4
    # a one-pixel shift of the restored face would be visible
    shifted = FaceEnhancer(
        _upscaler(nn.Sequential(Bilinear(face_scale), _Roll(face_scale)), face_scale),
        lambda image: [landmarks],
        face_size=crop_size * face_scale).enhance(img, background, upscale)[0]
    assert np.abs(shifted[region].astype(int) - background[region].astype(int)).mean() > 3 * diff.mean() + 1


class _Roll(nn.Module):

    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return torch.roll(x, self.shift, dims=3)


@needs_facexlib
def test_dark_16bit_background_stays_16bit(offline):
    img = _smooth_image(64, 80, seed=3)
    landmarks = _landmarks(_similarity(1.0, 5, 20, 12), 32)
    background = np.repeat(np.repeat(img, 2, 0), 2, 1).astype(np.uint16)  # max <= 255: facexlib would pick uint8
    enhancer = FaceEnhancer(_upscaler(Constant(2), 2), lambda image: [landmarks], face_size=64)
    out, _ = enhancer.enhance(img, background, 2)
    assert out.dtype == np.uint16
    inside = _face_square(_similarity(1.0, 5, 20, 12), 32, 2, out.shape)
    assert np.array_equal(out[~inside], background[~inside])
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    assert (out[nose[1], nose[0]] == 65535).all()


@needs_facexlib
def test_background_rounded_the_other_way_keeps_its_size(offline):
    img = _smooth_image(61, 75, seed=4)  # 61 * 1.5 = 91.5: facexlib's canvas has 91 rows, round() gives 92
    transform = _similarity(1.0, 0, 20, 14)
    landmarks = _landmarks(transform, 32)
    background = cv2.resize(img, (112, 92), interpolation=cv2.INTER_LINEAR)
    enhancer = FaceEnhancer(_upscaler(Constant(2), 2), lambda image: [landmarks], face_size=64)
    out, count = enhancer.enhance(img, background, 1.5)
    assert count == 1 and out.shape == background.shape
    inside = _face_square(transform, 32, 1.5, out.shape)
    assert np.array_equal(out[~inside], background[~inside])
    assert (out != background).any()


@needs_facexlib
def test_parse_mask_blending_stays_inside_the_face(offline):
    """``use_parse`` (GFPGAN's blending) with a stand-in parser that labels every pixel as skin."""
    seen = []

    class AllSkin(nn.Module):

        def forward(self, x):
            seen.append(tuple(x.shape))
            logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
            logits[:, 1] = 1
            return logits, x

    img = _smooth_image(96, 120, seed=5)
    transform = _similarity(1.2, 0, 40, 25)
    landmarks = _landmarks(transform, 32)
    background, _ = _upscaler(nn.Upsample(scale_factor=2, mode='nearest'), 2).enhance(img)
    enhancer = FaceEnhancer(_upscaler(Constant(2), 2), lambda image: [landmarks], face_size=64, face_parse=AllSkin())
    assert enhancer.helper.use_parse
    out, _ = enhancer.enhance(img, background, 2)
    assert seen == [(1, 3, 512, 512)]
    inside = _face_square(transform, 32, 2, out.shape)
    assert np.array_equal(out[~inside], background[~inside])
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    assert (out[nose[1], nose[0]] >= 250).all()


@needs_facexlib
def test_retinaface_weights_load_offline(offline):
    from facexlib.detection.retinaface import RetinaFace
    torch.manual_seed(0)
    net = RetinaFace(network_name='mobile0.25', half=False, device='cpu')
    state = {f'module.{k}': v for k, v in net.state_dict().items()}  # facexlib's files carry a DataParallel prefix
    torch.save(state, offline / 'detection_mobilenet0.25_Final.pth')
    detector = RetinaFaceDetector(network='mobile0.25', conf_threshold=0.99)
    for key, value in net.state_dict().items():
        assert torch.equal(detector.model.state_dict()[key], value)
    rows = detector.detect_faces(_smooth_image(64, 80), 0.5)
    assert rows.ndim == 2 and rows.shape[1] == 15
    assert all(points.shape == (5, 2) for points in detector(_smooth_image(64, 80)))
    helper = build_face_helper(detector, face_size=64)
    assert helper.face_det is detector

    torch.save({'conv.weight': torch.zeros(1)}, offline / 'detection_Resnet50_Final.pth')
    with pytest.raises(ValueError, match='detection_Resnet50_Final.pth is not a facexlib RetinaFace-resnet50'):
        RetinaFaceDetector()


@needs_facexlib
def test_process_paths_with_face_enhancer(tmp_path, offline):
    img = _smooth_image(64, 64, seed=6)
    cv2.imwrite(str(tmp_path / 'portrait.png'), img)
    transform = _similarity(1.0, 0, 14, 10)
    landmarks = _landmarks(transform, 32)
    background_net = _upscaler(nn.Upsample(scale_factor=2, mode='nearest'), 2)
    faces = FaceEnhancer(_upscaler(Constant(4), 4), lambda image: [landmarks], face_size=128)
    result = process_paths(
        background_net, [str(tmp_path / 'portrait.png')], str(tmp_path / 'out'), progress=False, face_enhancer=faces)
    out = read_image(result['written'][0])
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    assert out.shape == (128, 128, 3) and (out[nose[1], nose[0]] == 255).all()
    background = np.repeat(np.repeat(img, 2, 0), 2, 1)
    inside = _face_square(transform, 32, 2, out.shape)
    assert np.array_equal(out[~inside], background[~inside])


def test_module_exports():
    assert set(face_module.__all__) <= set(dir(face_module))
