"""Train with basicsr's training loop (exactly resumable, :mod:`srplugins.utils.trainer`) and srplugins' registries.

Usage (from the folder that holds your ``datasets/``; ``experiments/``, ``results/`` and ``tb_logger/`` are written
to the current directory)::

    python srplugins/train.py -opt options/....yml [--launcher pytorch] [--auto_resume] [--debug] [--force_yml k=v ...]
        [--strict_options]
    python -m torch.distributed.launch --nproc_per_node=N srplugins/train.py -opt ... --launcher pytorch
    torchrun --nproc_per_node=N srplugins/train.py -opt ... --launcher pytorch
    srplugins-train -opt ...          (console script of an installed srplugins)

``--force_yml a:b=v`` sets an option, ``a:b=~`` removes it; ``--strict_options`` turns unknown option keys into errors.
Multi-node (each node runs)::

    torchrun --nnodes 2 --node_rank <0|1> --nproc_per_node <gpus> --master_addr <node 0 address> --master_port 29500 \\
        srplugins/train.py -opt ... --launcher pytorch
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
from srplugins.utils.entry import run_train  # noqa: E402


def main(argv=None):
    run_train(argv)


if __name__ == '__main__':
    main()
