"""scripts/prepare_face_crops.py with a stand-in detector giving known landmarks (no detector weights)."""
import cv2
import numpy as np
import pytest

from srplugins.inference import face as face_module
from srplugins.inference.face import LandmarkDetector, face_template
from tests.conftest import load_script, needs_facexlib


def _script():
    return load_script('prepare_face_crops')


def _faces(crop_size=64):
    """Two faces placed by similarity transforms (crop -> image): a large one and one with 8-pixel eye distance."""
    transforms = []
    for scale, angle, tx, ty in ((1.5, 12, 20, 15), (0.25, -5, 120, 90)):
        a = np.deg2rad(angle)
        transforms.append(
            np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]]))
    landmarks = [(face_template(crop_size) @ t[:, :2].T + t[:, 2]).astype(np.float32) for t in transforms]
    return transforms, landmarks


def _photo(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


@needs_facexlib
def test_crop_faces_size_count_and_position():
    script = _script()
    transforms, landmarks = _faces(48)
    img = _photo()
    crops = script.crop_faces(img, lambda image: landmarks, size=48)
    assert len(crops) == 2 and all(c.shape == (48, 48, 3) and c.dtype == np.uint8 for c in crops)
    expected = cv2.warpAffine(img, transforms[0], (48, 48), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(crops[0].astype(int) - expected.astype(int)).max() <= 1

    eye_distance = np.linalg.norm(landmarks[1][1] - landmarks[1][0])
    assert len(script.crop_faces(img, lambda image: landmarks, size=48, min_eye_distance=eye_distance + 1)) == 1
    assert script.crop_faces(img, lambda image: [], size=48) == []


@needs_facexlib
def test_main_writes_one_crop_per_face(tmp_path, offline, monkeypatch):
    _, landmarks = _faces(96)

    class FakeRetinaFace(LandmarkDetector):

        def __init__(self, device='cpu', conf_threshold=None):
            super().__init__(lambda image: landmarks)

    monkeypatch.setattr(face_module, 'RetinaFaceDetector', FakeRetinaFace)
    photos = tmp_path / 'photos'
    photos.mkdir()
    cv2.imwrite(str(photos / 'a.png'), _photo(seed=1))
    cv2.imwrite(str(photos / 'b.png'), cv2.cvtColor(_photo(seed=2), cv2.COLOR_BGR2GRAY))  # grayscale is converted
    cv2.imwrite(str(photos / 'c.png'), (_photo(seed=3).astype(np.uint16) * 257))  # 16-bit
    (photos / 'notes.txt').write_text('not an image')
    out = tmp_path / 'crops'
    with pytest.warns(UserWarning, match='notes.txt'):
        assert _script().main(['-i', str(photos), '-o', str(out), '--size', '96']) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ['a_0.png', 'a_1.png', 'b_0.png', 'b_1.png', 'c_0.png', 'c_1.png']
    for name in names:
        crop = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8


def test_main_without_detector_weights_names_the_file(tmp_path, offline, capsys):
    assert _script().main(['-i', str(tmp_path), '-o', str(tmp_path / 'crops')]) == 2
    assert 'detection_Resnet50_Final.pth' in capsys.readouterr().err
