"""Datasets producing BasicSR sample dicts, registered in DATASET_REGISTRY.

Every `*_dataset.py` module here is imported (by absolute name).
"""
from srplugins.utils.autoimport import import_suffixed_modules

_modules = import_suffixed_modules(__name__, __file__, '_dataset.py')
