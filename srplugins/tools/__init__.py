"""The console commands of the wheel (``srplugins-evaluate``, ``srplugins-data``, ``srplugins-recipes``, ...).

Each module has a ``main(argv=None)`` returning an exit code; heavy modules (torch, basicsr, matplotlib) are imported
inside the functions that need them so that ``-h`` answers quickly. ``scripts/*.py`` are thin wrappers for users of
a checkout.
"""
