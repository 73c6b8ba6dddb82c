"""Atomic file writes: a reader (or a resumed run) sees the old file or the complete new one, never a half-written one.

Every write goes to a temporary file in the destination's folder (same file system, so the final ``os.replace`` is
atomic on POSIX and Windows), is flushed and ``fsync``-ed, then renamed over the destination; the folder is fsync-ed
too where the platform allows it. A ``kill -9`` during a save therefore leaves the previous file intact and at most a
stray ``.<name>.tmp-*`` file, which is removed on the next save of the same name.

Use :func:`atomic_write` for any writer that takes a file object, :func:`atomic_torch_save` for ``torch.save`` and
:func:`atomic_write_bytes` for encoded images (``cv2.imencode(...)[1].tobytes()``).
"""
import contextlib
import glob
import os
import os.path as osp
import tempfile


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(path):
    folder, name = osp.split(osp.abspath(path))
    for stale in glob.glob(osp.join(glob.escape(folder), f'.{glob.escape(name)}.tmp-*')):
        with contextlib.suppress(OSError):
            os.remove(stale)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    Args:
        path (str): destination file. Its folder must exist.
        mode (str): ``'wb'`` (default) or ``'w'`` (text, UTF-8).

    Yields:
        file object: write to it; on an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = osp.abspath(path)
    folder, name = osp.split(path)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{path}: cannot write, the folder {folder} does not exist')
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.tmp-', dir=folder)
    try:
        with os.fdopen(fd, mode, **({'encoding': 'utf-8'} if mode == 'w' else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj, path, **kwargs):
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch
    with atomic_write(path) as f:
        torch.save(obj, f, **kwargs)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)
