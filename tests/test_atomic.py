"""srplugins.utils.atomic: a failed or killed write leaves the previous file intact."""
import os
import pytest
import subprocess
import sys

from srplugins.utils.atomic import atomic_torch_save, atomic_write, atomic_write_bytes


def test_atomic_write_replaces_file(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_text('old')
    with atomic_write(str(path), 'w') as f:
        f.write('new')
    assert path.read_text() == 'new'
    assert os.listdir(tmp_path) == ['a.txt']


def test_exception_keeps_previous_file_and_removes_temp(tmp_path):
    path = tmp_path / 'a.bin'
    atomic_write_bytes(str(path), b'previous')
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as f:
            f.write(b'half')
            raise RuntimeError('writer died')
    assert path.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['a.bin']


def test_killed_writer_leaves_previous_file_and_next_save_cleans_up(tmp_path):
    torch = pytest.importorskip('torch')
    path = tmp_path / 'net.pth'
    atomic_torch_save({'params': {'w': torch.ones(3)}}, str(path))
    # a process killed with SIGKILL while its temp file is half written
    code = ('import os, sys\nfrom srplugins.utils.atomic import atomic_write\n'
            f'with atomic_write({str(path)!r}) as f:\n    f.write(b"x" * 10)\n    f.flush()\n'
            '    os.kill(os.getpid(), 9)\n')
    proc = subprocess.run([sys.executable, '-c', code])
    assert proc.returncode != 0
    assert torch.load(str(path), weights_only=True)['params']['w'].tolist() == [1.0, 1.0, 1.0]
    assert len(os.listdir(tmp_path)) == 2  # the stray temp file
    atomic_torch_save({'params': {'w': torch.zeros(3)}}, str(path))
    assert os.listdir(tmp_path) == ['net.pth']
    assert torch.load(str(path), weights_only=True)['params']['w'].tolist() == [0.0, 0.0, 0.0]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        atomic_write_bytes(str(tmp_path / 'nope' / 'a.bin'), b'')
