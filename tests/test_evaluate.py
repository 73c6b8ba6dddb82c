"""srplugins-evaluate (srplugins/tools/evaluate.py): the report holds the right numbers for images with a known PSNR,
the figure is written, LPIPS is dropped (one warning) without its AlexNet file, and no method vanishes silently."""
import csv
import cv2
import math
import numpy as np
import pytest

from srplugins.tools import evaluate


def _script():
    return evaluate


def test_report_numbers_and_figure(tmp_path, alexnet_weights):
    pytest.importorskip('matplotlib')
    rng = np.random.default_rng(0)
    gt_dir, sr_dir, lr_dir, same_dir = (tmp_path / n for n in ('gt', 'sr', 'lr', 'same'))
    for d in (gt_dir, sr_dir, lr_dir, same_dir):
        d.mkdir()
    offsets = {'a': 5, 'b': 10}
    for stem, offset in offsets.items():
        # gray GT (B = G = R = v): Y = 16 + 219 v / 255, so an offset d in every channel shifts Y by 219 d / 255
        v = rng.integers(20, 200, (48, 40), dtype=np.uint8)
        gt = np.repeat(v[..., None], 3, axis=2)
        cv2.imwrite(str(gt_dir / f'{stem}.png'), gt)
        cv2.imwrite(str(sr_dir / f'{stem}_MyMethod.png'), gt + offset)  # basicsr's <stem>_<suffix>.png naming
        cv2.imwrite(str(same_dir / f'{stem}.png'), gt)
        cv2.imwrite(str(lr_dir / f'{stem}.png'), cv2.resize(gt, (10, 12), interpolation=cv2.INTER_AREA))

    out = tmp_path / 'report'
    code = _script().main([
        '--gt',
        str(gt_dir), '--lr',
        str(lr_dir), '--sr', f'Offset={sr_dir}', '--sr', f'Same={same_dir}', '--scale', '4', '--dataset', 'toy', '-o',
        str(out), '--name', 'toy', '--crop_size', '16'
    ])
    assert code == 0

    with open(out / 'toy.csv') as f:
        rows = list(csv.DictReader(f))
    by_key = {(r['method'], r['image']): r for r in rows}
    for stem, offset in offsets.items():
        expected = 20 * math.log10(255. / (219. * offset / 255.))
        assert float(by_key[('Offset', stem)]['psnr']) == pytest.approx(expected, abs=1e-4)
        assert float(by_key[('Same', stem)]['lpips']) == pytest.approx(0, abs=1e-6)
        assert float(by_key[('Same', stem)]['ssim']) == pytest.approx(1, abs=1e-9)
        assert ('Bicubic', stem) in by_key
    mean = (20 * math.log10(255. / (219. * 5 / 255.)) + 20 * math.log10(255. / (219. * 10 / 255.))) / 2
    assert float(by_key[('Offset', 'AVERAGE')]['psnr']) == pytest.approx(mean, abs=1e-4)
    assert float(by_key[('Same', 'AVERAGE')]['psnr']) == pytest.approx(float('inf')) or \
        float(by_key[('Same', 'AVERAGE')]['psnr']) > 100

    markdown = (out / 'toy.md').read_text()
    assert '| Offset | 2 | ' + f'{mean:.2f}' in markdown and '![comparison](toy_comparison.png)' in markdown
    figure = cv2.imread(str(out / 'toy_comparison.png'))
    assert figure is not None and figure.shape[0] > 100 and figure.shape[1] > 300


def test_option_file_mode_reads_basicsr_visualization_folders(tmp_path, monkeypatch):
    gt_dir = tmp_path / 'Set' / 'HR'
    vis = tmp_path / 'results' / 'exp_x2' / 'visualization' / 'Toy'
    gt_dir.mkdir(parents=True)
    vis.mkdir(parents=True)
    gt = np.full((16, 16, 3), 100, np.uint8)
    cv2.imwrite(str(gt_dir / 'img.png'), gt)
    cv2.imwrite(str(vis / 'img_exp_x2.png'), gt + 4)  # basicsr names test images <stem>_<experiment name>.png
    (tmp_path / 'test.yml').write_text('name: exp_x2\nscale: 2\ndatasets:\n  test_1:\n    name: Toy\n'
                                       f'    type: PairedImageDataset\n    dataroot_gt: {gt_dir}\n')
    monkeypatch.chdir(tmp_path)
    assert _script().main(['--opt', 'test.yml', '--metrics', 'psnr', '--no_figure', '-o', 'rep']) == 0
    with open(tmp_path / 'rep' / 'report.csv') as f:
        rows = {(r['dataset'], r['method'], r['image']): r for r in csv.DictReader(f)}
    expected = 20 * math.log10(255. / (219. * 4 / 255.))
    assert float(rows[('Toy', 'exp_x2', 'img')]['psnr']) == pytest.approx(expected, abs=1e-4)


def test_option_file_mode_honours_filename_tmpl_for_the_bicubic_column(tmp_path, monkeypatch):
    # EDSR benchmark layout: LR files are <stem>x2.png (filename_tmpl '{}x2'), as basicsr's PairedImageDataset reads
    gt_dir, lr_dir = tmp_path / 'Set' / 'HR', tmp_path / 'Set' / 'LR_bicubic' / 'X2'
    vis = tmp_path / 'results' / 'exp_x2' / 'visualization' / 'Toy'
    for d in (gt_dir, lr_dir, vis):
        d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for stem in ('baby', 'bird'):
        gt = np.repeat(rng.integers(60, 200, (16, 12, 1), dtype=np.uint8), 3, axis=2)
        cv2.imwrite(str(gt_dir / f'{stem}.png'), gt)
        cv2.imwrite(str(lr_dir / f'{stem}x2.png'), cv2.resize(gt, (6, 8), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(vis / f'{stem}_exp_x2.png'), gt + 3)
    (tmp_path / 'test.yml').write_text(
        'name: exp_x2\nscale: 2\ndatasets:\n  test_1:\n    name: Toy\n    type: PairedImageDataset\n'
        f"    dataroot_gt: {gt_dir}\n    dataroot_lq: {lr_dir}\n    filename_tmpl: '{{}}x2'\n")
    monkeypatch.chdir(tmp_path)
    assert _script().main(['--opt', 'test.yml', '--metrics', 'psnr', '--no_figure', '-o', 'rep']) == 0
    with open(tmp_path / 'rep' / 'report.csv') as f:
        rows = {(r['method'], r['image']): r for r in csv.DictReader(f)}
    assert {('Bicubic', 'baby'), ('Bicubic', 'bird'), ('Bicubic', 'AVERAGE'), ('exp_x2', 'AVERAGE')} <= set(rows)
    script = _script()
    lr = cv2.imread(str(lr_dir / 'babyx2.png'))
    gt = cv2.imread(str(gt_dir / 'baby.png'))
    expected = script.compute_metrics(script.bicubic_upscale(lr, 2, gt.shape[:2]), gt, 2, ('psnr', ))['psnr']
    assert float(rows[('Bicubic', 'baby')]['psnr']) == pytest.approx(expected, abs=1e-5)
    assert '| Bicubic | 2 |' in (tmp_path / 'rep' / 'report.md').read_text()

    # the same with folders: --lr_filename_tmpl; a template without "{}" is an error naming it
    assert script.main([
        '--gt',
        str(gt_dir), '--lr',
        str(lr_dir), '--lr_filename_tmpl', '{}x2', '--scale', '2', '--metrics', 'psnr', '--no_figure', '-o', 'rep2'
    ]) == 0
    with open(tmp_path / 'rep2' / 'report.csv') as f:
        assert ('Bicubic', 'bird') in {(r['method'], r['image']) for r in csv.DictReader(f)}
    with pytest.raises(ValueError, match='x2'):
        script.evaluate_dataset('d', str(gt_dir), [], 2, lr_dir=str(lr_dir), lr_tmpl='x2')
    assert script.main(['--gt', str(gt_dir), '--lr', str(lr_dir), '--lr_filename_tmpl', 'x2', '--scale', '2']) == 2


def _toy_folders(tmp_path, sr_names):
    """GT a.png / b.png (grey, so PSNR is known) and an SR folder holding ``gt + 6`` under ``sr_names[stem]``."""
    gt_dir, sr_dir = tmp_path / 'gt', tmp_path / 'sr'
    gt_dir.mkdir()
    sr_dir.mkdir()
    rng = np.random.default_rng(3)
    for stem in ('a', 'b'):
        gt = np.repeat(rng.integers(20, 200, (24, 20, 1), dtype=np.uint8), 3, axis=2)
        cv2.imwrite(str(gt_dir / f'{stem}.png'), gt)
        if stem in sr_names:
            cv2.imwrite(str(sr_dir / sr_names[stem]), gt + 6)
    return gt_dir, sr_dir


def test_without_alexnet_lpips_is_skipped_with_one_warning_and_the_report_written(tmp_path, offline, capsys):
    gt_dir, sr_dir = _toy_folders(tmp_path, {'a': 'a.png', 'b': 'b.png'})
    code = evaluate.main(['--gt', str(gt_dir), '--sr', f'M={sr_dir}', '--scale', '2', '--no_figure', '-o', 'rep'])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count('WARNING') == 1 and 'LPIPS skipped' in err and 'alexnet-owt-7be5be79.pth' in err
    with open(tmp_path / 'rep' / 'report.csv') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['dataset', 'method', 'image', 'psnr', 'ssim']
    expected = 20 * math.log10(255. / (219. * 6 / 255.))
    assert float(rows[0]['psnr']) == pytest.approx(expected, abs=1e-4)
    # asking for LPIPS explicitly without the file stays an error (exit 2, the file named), nothing written
    code = evaluate.main(['--gt', str(gt_dir), '--sr', f'M={sr_dir}', '--scale', '2', '--metrics', 'lpips', '-o', 'r2'])
    assert code == 2 and 'alexnet-owt-7be5be79.pth' in capsys.readouterr().err
    assert not (tmp_path / 'r2').exists()


def test_sr_names_of_infer_and_save_lr_are_matched(tmp_path, offline):
    # srplugins-infer writes <stem>_out.png, --save-lr / EDSR write <stem>x<scale>.png
    gt_dir, sr_dir = _toy_folders(tmp_path, {'a': 'a_out.png', 'b': 'bx2.png'})
    assert evaluate.main(
        ['--gt',
         str(gt_dir), '--sr', f'M={sr_dir}', '--scale', '2', '--metrics', 'psnr', '--no_figure', '-o', 'rep']) == 0
    with open(tmp_path / 'rep' / 'report.csv') as f:
        images = {(r['method'], r['image']) for r in csv.DictReader(f)}
    assert images == {('M', 'a'), ('M', 'b'), ('M', 'AVERAGE')}


def test_a_method_matching_no_gt_stem_is_an_error_naming_its_files(tmp_path, offline, capsys):
    gt_dir, sr_dir = _toy_folders(tmp_path, {'a': 'img001.png', 'b': 'img002.png'})
    ok_dir = tmp_path / 'ok'
    ok_dir.mkdir()
    for stem in ('a', 'b'):
        cv2.imwrite(str(ok_dir / f'{stem}.png'), cv2.imread(str(gt_dir / f'{stem}.png')))
    code = evaluate.main([
        '--gt',
        str(gt_dir), '--sr', f'Good={ok_dir}', '--sr', f'Bad={sr_dir}', '--scale', '2', '--metrics', 'psnr',
        '--no_figure', '-o', 'rep'
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert 'Bad' in err and 'img001.png' in err and 'img002.png' in err
    assert not (tmp_path / 'rep').exists()
