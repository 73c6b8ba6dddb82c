"""Moved to :mod:`srplugins.inference.face`; re-exported for code written against srplugins <= 0.3."""
from srplugins.inference.face import (FaceEnhancer, LandmarkDetector, RetinaFaceDetector, build_face_helper,
                                      face_template, load_parsenet, load_retinaface)

__all__ = [
    'FaceEnhancer', 'LandmarkDetector', 'RetinaFaceDetector', 'build_face_helper', 'face_template', 'load_parsenet',
    'load_retinaface'
]
