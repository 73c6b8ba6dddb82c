"""Metrics with basicsr's signature, registered in METRIC_REGISTRY.

Every `*_metric.py` module here is imported (by absolute name).
"""
from srplugins.utils.autoimport import import_suffixed_modules

_modules = import_suffixed_modules(__name__, __file__, '_metric.py')
