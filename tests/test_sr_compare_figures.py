"""scripts/sr_compare_figures.py: per-image SR results, side-by-side figures and metrics for human rating."""
import csv
import cv2
import numpy as np
import os.path as osp
import pytest
import sys
import torch
import yaml
from basicsr.archs import build_network

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO_ROOT, 'scripts'))
import sr_compare_figures  # noqa: E402

NET_G = {'type': 'SRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 4, 'num_block': 1, 'upscale': 4}


def write_model(tmp_path, output_range):
    torch.manual_seed(0)
    net_opt = dict(NET_G, output_range=output_range)
    net = build_network(net_opt)
    weights = tmp_path / 'net_g.pth'
    torch.save({'params': net.state_dict()}, weights)
    opt = tmp_path / 'opt.yml'
    opt.write_text(yaml.safe_dump({'scale': 4, 'network_g': net_opt, 'path': {'pretrain_network_g': str(weights)}}))
    return str(opt), net.eval()


@pytest.mark.parametrize('output_range', [[0, 1], [-1, 1]])
def test_compare_figures_with_hr(demo_data, tmp_path, output_range):
    opt, net = write_model(tmp_path, output_range)
    lr_dir = osp.join(demo_data, 'val', 'LR_bicubic', 'X4')
    out = tmp_path / 'out'
    assert sr_compare_figures.main([
        '--opt', opt, '-i', lr_dir, '--gt',
        osp.join(demo_data, 'val', 'HR'), '-o',
        str(out), '--name', 'SRResNet', '--device', 'cpu'
    ]) == 0
    lr = cv2.imread(osp.join(lr_dir, 'chelsea.png'))
    sr = cv2.imread(str(out / 'chelsea_SRResNet.png'))
    with torch.no_grad():
        ref = net(torch.from_numpy(lr[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255.)[0]
    if output_range == [-1, 1]:
        ref = (ref + 1) / 2
    ref = (ref.clamp(0, 1).permute(1, 2, 0).numpy()[..., ::-1] * 255.).round()
    assert sr.shape == (4 * lr.shape[0], 4 * lr.shape[1], 3)
    assert np.abs(sr.astype(np.float64) - ref).max() <= 1
    fig = cv2.imread(str(out / 'chelsea_compare.png'))
    assert fig.shape == (sr.shape[0] + sr_compare_figures.CAPTION_H, 3 * sr.shape[1] + 2 * sr_compare_figures.GAP, 3)
    assert np.array_equal(fig[sr_compare_figures.CAPTION_H:, sr.shape[1] + sr_compare_figures.GAP:][:, :sr.shape[1]],
                          sr)
    with open(out / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['image'], r['method']) for r in rows] == [('chelsea', 'Bicubic'), ('chelsea', 'SRResNet'),
                                                         ('coffee', 'Bicubic'), ('coffee', 'SRResNet'),
                                                         ('MEAN', 'Bicubic'), ('MEAN', 'SRResNet')]
    from basicsr.metrics import calculate_psnr
    hr = cv2.imread(osp.join(demo_data, 'val', 'HR', 'chelsea.png'))
    assert float(rows[1]['psnr']) == pytest.approx(calculate_psnr(sr, hr, 4, test_y_channel=True), abs=1e-3)
    assert (out / 'metrics.md').is_file()


def test_compare_figures_without_hr_and_errors(demo_data, tmp_path, capsys):
    opt, _ = write_model(tmp_path, [0, 1])
    lr_dir = osp.join(demo_data, 'val', 'LR_bicubic', 'X4')
    out = tmp_path / 'out'
    sr_compare_figures.main(['--opt', opt, '-i', lr_dir, '-o', str(out), '--device', 'cpu'])
    lr = cv2.imread(osp.join(lr_dir, 'coffee.png'))
    fig = cv2.imread(str(out / 'coffee_compare.png'))
    assert fig.shape[1] == 2 * 4 * lr.shape[1] + sr_compare_figures.GAP
    assert not (out / 'metrics.csv').exists()
    assert sr_compare_figures.match_hr('babyx4.png', ['baby.png', 'bird.png'], 4) == 'baby.png'
    assert sr_compare_figures.main(['--opt', opt, '-i', lr_dir, '--gt', str(tmp_path / 'nope'), '-o', str(out)]) == 2
    assert '--gt' in capsys.readouterr().err


def test_compare_figures_refuses_checkpoint_named_for_another_scale(demo_data, tmp_path, capsys):
    # the option says x4; a file named _x2 would load silently if its shapes fit, so it is refused (exit 2, message)
    opt, net = write_model(tmp_path, [0, 1])
    wrong = tmp_path / 'SRResNet_x2.pth'
    torch.save({'params': net.state_dict()}, wrong)
    lr_dir = osp.join(demo_data, 'val', 'LR_bicubic', 'X4')
    code = sr_compare_figures.main(
        ['--opt', opt, '--model_path',
         str(wrong), '-i', lr_dir, '-o',
         str(tmp_path / 'o'), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert code == 2 and '--model_path' in err and 'x2' in err and opt in err
    assert not (tmp_path / 'o').exists()
