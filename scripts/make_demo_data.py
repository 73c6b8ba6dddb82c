#!/usr/bin/env python
"""Checkout wrapper of ``srplugins-data demo`` (srplugins/tools/data.py): builds ``datasets/demo`` (``--gray16``:
``datasets/demo_gray16``) without installing.

Usage::

    python scripts/make_demo_data.py [--root datasets/demo] [--gray16] [--force]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from srplugins.tools.data import *  # noqa: E402,F401,F403
from srplugins.tools.data import main as data_main  # noqa: E402


def main(argv=None):
    return data_main(['demo'] + list(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
    sys.exit(main())
