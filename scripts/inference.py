"""Super-resolve an image or a folder with any supported checkpoint or a BasicSR option file.

Same as the console script ``srplugins-infer`` (see ``python scripts/inference.py -h`` and docs/Tools.md)::

    python scripts/inference.py -i inputs -o results --model_path experiments/pretrained_models/BSRGAN.pth --tile 256
    python scripts/inference.py -i photo.png --model_path aan_x3.pt -s 3.5      # A2N: scale from the file name
    python scripts/inference.py -i inputs --opt options/test/A2N/test_A2N_x4.yml --device cpu
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from srplugins.inference.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
