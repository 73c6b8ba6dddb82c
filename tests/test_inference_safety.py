"""srplugins-infer never destroys an input, checks paths before loading the model, handles animated GIFs, and
diagnoses corrupt checkpoints (truncated / not a checkpoint vs. a pickle needing --unsafe_load)."""
import cv2
import numpy as np
import os
import pytest
import torch
from basicsr.archs.rrdbnet_arch import RRDBNet

import srplugins  # noqa: F401
from srplugins import checkpoints
from srplugins.inference.cli import main


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=2, num_feat=4, num_block=1, num_grow_ch=4)
    path = str(tmp_path / 'tiny_x2.pth')
    torch.save({'params_ema': net.state_dict()}, path)
    return path


def _folder(tmp_path, names=('a.png', 'b.png')):
    folder = tmp_path / 'photos'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    return folder


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_folder_with_empty_suffix_is_refused_and_inputs_stay(tmp_path, capsys):
    folder = _folder(tmp_path)
    before = _bytes(folder)
    code = main(
        ['-i', str(folder), '-o',
         str(folder), '--suffix', '', '--model_path',
         _checkpoint(tmp_path), '--quiet'])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith('srplugins-infer: error:') and 'input folder' in err and '--suffix' in err
    assert _bytes(folder) == before
    # a single file written back into its own folder under its own name: refused too
    code = main(['-i', str(folder / 'a.png'), '-o', str(folder), '--suffix', '', '--model_path', 'missing.pth'])
    assert code == 2 and 'input' in capsys.readouterr().err
    assert _bytes(folder) == before


def test_paths_are_checked_before_the_model_is_loaded(tmp_path, capsys):
    folder = _folder(tmp_path)
    not_a_folder = tmp_path / 'file.txt'
    not_a_folder.write_text('x')
    # the model path does not exist: the path errors come first, so they must be the ones reported
    assert main(['-i', str(folder), '-o', str(not_a_folder), '--model_path', 'missing.pth']) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert main(['-i', str(tmp_path / 'nothing'), '-o', str(tmp_path / 'o'), '--model_path', 'missing.pth']) == 2
    assert '-i/--input' in capsys.readouterr().err
    assert main(['-i', str(folder), '-o', str(not_a_folder / 'sub'), '--model_path', 'missing.pth']) == 2
    assert 'not a folder' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_existing_outputs_need_overwrite_and_previous_outputs_are_skipped(tmp_path, capsys):
    folder = _folder(tmp_path)
    model = _checkpoint(tmp_path)
    assert main(['-i', str(folder), '-o', str(folder), '--model_path', model, '--quiet']) == 0
    assert sorted(p.name for p in folder.iterdir()) == ['a.png', 'a_out.png', 'b.png', 'b_out.png']
    first = _bytes(folder)
    capsys.readouterr()
    # second run into the same folder: a_out.png exists -> refused without --overwrite, nothing changes
    assert main(['-i', str(folder), '-o', str(folder), '--model_path', model, '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'exist' in err and '--overwrite' in err and 'a_out.png' in err
    assert _bytes(folder) == first
    # with --overwrite the outputs are replaced, and the previous outputs are not upscaled again (no a_out_out.png)
    assert main(['-i', str(folder), '-o', str(folder), '--model_path', model, '--quiet', '--overwrite']) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ['a.png', 'a_out.png', 'b.png', 'b_out.png']
    assert 'output of a previous run' in out
    assert cv2.imread(str(folder / 'a_out.png')).shape == (12, 10, 3)


def test_overwrite_never_replaces_an_input(tmp_path, capsys):
    folder = _folder(tmp_path)
    before = _bytes(folder)
    alias = tmp_path / 'alias'
    alias.symlink_to(folder, target_is_directory=True)  # the same folder under another name
    for argv in (['-i', str(folder), '-o', str(alias)], ['-i', str(folder / 'a.png'), '-o', str(alias)]):
        code = main(argv + ['--suffix', '', '--overwrite', '--model_path', _checkpoint(tmp_path), '--quiet'])
        assert code == 2 and 'srplugins-infer: error:' in capsys.readouterr().err
        assert _bytes(folder) == before


def test_animated_gif_frame_by_frame_or_refused(tmp_path, capsys):
    from PIL import Image, ImageSequence
    folder = tmp_path / 'gif'
    folder.mkdir()
    frames = [Image.fromarray(np.full((6, 5, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(str(folder / 'anim.gif'), save_all=True, append_images=frames[1:], duration=[50, 60, 70], loop=0)
    model = _checkpoint(tmp_path)
    assert main(['-i', str(folder), '-o', str(tmp_path / 'o'), '--model_path', model, '--quiet']) == 0
    with Image.open(str(tmp_path / 'o' / 'anim_out.gif')) as result:
        out_frames = [np.asarray(f.convert('RGB')) for f in ImageSequence.Iterator(result)]
    assert len(out_frames) == 3 and all(f.shape == (12, 10, 3) for f in out_frames)
    assert out_frames[0].mean() < out_frames[2].mean()  # the frames stay distinct and in order
    # an explicit still format cannot hold the animation: skipped with a reason, not silently one frame
    assert main(['-i', str(folder), '-o', str(tmp_path / 'p'), '--model_path', model, '--quiet', '--ext', 'png']) == 0
    assert 'animated image with 3 frames' in capsys.readouterr().out
    assert not (tmp_path / 'p' / 'anim_out.png').exists()


# ----------------------------------------------------------------------------------------------------------------- #
#  Corrupt checkpoints
# ----------------------------------------------------------------------------------------------------------------- #
def _corrupt_files(tmp_path):
    good = _checkpoint(tmp_path)
    data = open(good, 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    random_bytes = tmp_path / 'random.pth'
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    torch.save({'a': torch.zeros(2)}, str(tmp_path / 'legacy.pth'), _use_new_zipfile_serialization=False)
    legacy = open(str(tmp_path / 'legacy.pth'), 'rb').read()
    legacy_truncated = tmp_path / 'legacy_truncated.pth'
    legacy_truncated.write_bytes(legacy[:len(legacy) - 20])
    return [str(truncated), str(random_bytes), str(empty), str(legacy_truncated)]


def test_truncated_or_random_files_are_not_sent_to_unsafe_load(tmp_path, capsys):
    for path in _corrupt_files(tmp_path):
        with pytest.raises(ValueError) as err:
            checkpoints.load_file(path, option='--model_path')
        text = str(err.value)
        assert 'truncated or not a checkpoint' in text and path in text and '--model_path' in text, text
        assert 'unsafe' not in text
        img = tmp_path / 'a.png'
        cv2.imwrite(str(img), np.zeros((4, 4, 3), np.uint8))
        assert main(['-i', str(img), '-o', str(tmp_path / 'o'), '--model_path', path, '--quiet']) == 2
        err_text = capsys.readouterr().err
        assert 'truncated or not a checkpoint' in err_text and '--model_path' in err_text
        assert 'Traceback' not in err_text
        from srplugins.tools.convert import main as convert_main
        assert convert_main([path, str(tmp_path / 'c.pth')]) == 2
        assert 'truncated or not a checkpoint' in capsys.readouterr().err
        assert not (tmp_path / 'c.pth').exists()


def test_readable_pickle_with_objects_suggests_unsafe_load(tmp_path):
    net = RRDBNet(3, 3, scale=2, num_feat=4, num_block=1, num_grow_ch=4)
    path = str(tmp_path / 'with_numpy.pth')
    torch.save({'params': net.state_dict(), 'best_psnr': np.float64(30.0)}, path)
    with pytest.raises(ValueError, match='--unsafe_load') as err:
        checkpoints.load_file(path, option='--model_path')
    assert 'truncated' not in str(err.value) and path in str(err.value)
    assert checkpoints.read(path, unsafe_load=True).arch_type == 'RRDBNet'


def test_loaders_pass_weights_only_explicitly(monkeypatch, tmp_path):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only', 'absent'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    checkpoints.read(_checkpoint(tmp_path))
    assert calls == [True]
    assert os.path.getsize(str(tmp_path / 'tiny_x2.pth')) > 0
