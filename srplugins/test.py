"""Evaluate with BasicSR's own pipeline (``basicsr.test.test_pipeline``), srplugins' registries and stack fixes loaded.

Usage (from the folder that holds your ``datasets/``; ``experiments/``, ``results/`` and ``tb_logger/`` are written
to the current directory)::

    python srplugins/test.py -opt options/....yml [--launcher pytorch] [--auto_resume] [--debug] [--force_yml k=v ...]
        [--strict_options]
    python -m torch.distributed.launch --nproc_per_node=N srplugins/test.py -opt ... --launcher pytorch
    torchrun --nproc_per_node=N srplugins/test.py -opt ... --launcher pytorch
    srplugins-test -opt ...          (console script of an installed srplugins)
"""
import os.path as osp
import sys

if __name__ in ('__main__', '__mp_main__'):
    # Run as a script: import the package from the repository root, and keep this folder off sys.path (its
    # test.py would shadow the standard library's `test` package and its modules would be importable twice).
    _here = osp.dirname(osp.abspath(__file__))
    sys.path[:] = [p for p in sys.path if osp.abspath(p or '.') != _here]
    sys.path.insert(0, osp.dirname(_here))

import srplugins  # noqa: E402,F401  (stack fixes + registration, at top level so spawned workers get them too)
from srplugins.utils.entry import run_test  # noqa: E402


def main(argv=None):
    run_test(argv)


if __name__ == '__main__':
    main()
