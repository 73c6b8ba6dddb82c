"""Face-aware enhancement driven by given landmarks (no detector weights): alignment, paste-back, CLI plumbing."""
import cv2
import numpy as np
import pytest
import sys
import torch
from torch import nn

import srplugins  # noqa: F401
from srplugins.utils.face import FaceEnhancer, RetinaFaceDetector, align_face, face_template, paste_faces
from srplugins.utils.inference import Upscaler, process_paths, read_image


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _landmarks_in_image(transform, face_size=512):
    """Template points placed in an image by a known similarity transform (template -> image)."""
    pts = face_template(face_size).astype(np.float64)
    return (pts @ transform[:, :2].T + transform[:, 2]).astype(np.float32)


def _smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_align_maps_landmarks_onto_template():
    img = _smooth_image(160, 200)
    landmarks = _landmarks_in_image(_similarity(0.2, 15, 60, 30))
    crop, matrix = align_face(img, landmarks, face_size=128)
    assert crop.shape == (128, 128, 3)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - face_template(128)).max() < 1e-2


def test_paste_back_places_the_face_where_it_was():
    img = _smooth_image(96, 120, seed=1)
    landmarks = _landmarks_in_image(_similarity(0.12, -10, 30, 20))
    crop, matrix = align_face(img, landmarks, face_size=64)
    background = cv2.resize(img, (240, 192), interpolation=cv2.INTER_LINEAR)

    # a face model that returns the crop upscaled x2: the pasted face must match the background around it
    restored = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_LINEAR)
    out = paste_faces(background, [restored], [matrix], upscale=2, face_scale=2)
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    region = (slice(nose[1] - 6, nose[1] + 6), slice(nose[0] - 6, nose[0] + 6))
    assert np.abs(out[region].astype(int) - background[region].astype(int)).mean() < 4

    # a white face lands on the nose, the far corner of the image is untouched
    white = np.full((128, 128, 3), 255, np.uint8)
    out = paste_faces(background, [white], [matrix], upscale=2, face_scale=2)
    assert (out[nose[1], nose[0]] == 255).all()
    assert np.array_equal(out[-10:, -10:], background[-10:, -10:])
    assert out.dtype == np.uint8


def test_process_paths_with_face_enhancer(tmp_path):
    img = _smooth_image(64, 64, seed=2)
    cv2.imwrite(str(tmp_path / 'portrait.png'), img)
    landmarks = _landmarks_in_image(_similarity(0.08, 0, 12, 8))
    background_net = Upscaler(nn.Upsample(scale_factor=2, mode='nearest'), 2, device='cpu')

    class White(nn.Module):

        def forward(self, x):
            return torch.ones_like(nn.functional.interpolate(x, scale_factor=4))

    faces = FaceEnhancer(Upscaler(White(), 4, device='cpu'), detector=lambda image: [landmarks], face_size=64)
    result = process_paths(
        background_net, [str(tmp_path / 'portrait.png')], str(tmp_path / 'out'), progress=False, face_enhancer=faces)
    out = read_image(result['written'][0])
    nose = np.round(landmarks[2] * 2 + 0.5).astype(int)
    assert out.shape == (128, 128, 3) and (out[nose[1], nose[0]] == 255).all()
    assert np.array_equal(out[-4:, -4:], np.repeat(np.repeat(img, 2, 0), 2, 1)[-4:, -4:])


def test_detector_needs_facexlib_or_weights(monkeypatch, pretrained_dir):
    try:
        import facexlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'srplugins\[face\]'):
            RetinaFaceDetector()
        return
    with pytest.raises(FileNotFoundError, match='detection_Resnet50_Final.pth'):
        RetinaFaceDetector()
    monkeypatch.setitem(sys.modules, 'facexlib.detection', None)
    with pytest.raises(ImportError, match=r'srplugins\[face\]'):
        RetinaFaceDetector()
