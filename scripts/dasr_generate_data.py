#!/usr/bin/env python
"""Checkout wrapper of ``srplugins-dasr-generate`` (srplugins/tools/dasr_generate.py): the same command without
installing."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from srplugins.tools.dasr_generate import *  # noqa: E402,F401,F403
from srplugins.tools.dasr_generate import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
