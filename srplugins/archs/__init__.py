"""Architectures (nn.Module), registered in basicsr's ARCH_REGISTRY.

Every `*_arch.py` module here is imported (by absolute name).
"""
from srplugins.utils.autoimport import import_suffixed_modules

_modules = import_suffixed_modules(__name__, __file__, '_arch.py')
