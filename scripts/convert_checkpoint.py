"""Convert a checkpoint to a BasicSR file; the same as the console command ``srplugins-convert`` (see its ``-h``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from srplugins.tools.convert import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
