"""Training models, registered in MODEL_REGISTRY.

Every `*_model.py` module here is imported (by absolute name).
"""
from srplugins.utils.autoimport import import_suffixed_modules

_modules = import_suffixed_modules(__name__, __file__, '_model.py')
