"""srplugins-preview (srplugins/tools/preview.py): the sheet and its JSON are written, the recorded parameters are the
ones the pipeline drew (checked against an independent draw from the same seed / against forced options), samples are
reproducible per seed, and the DSN rows equal the network's output."""
import cv2
import json
import numpy as np
import pytest
import torch
import yaml

import srplugins  # noqa: F401
from srplugins.ops import bsrgan_degradation as bd
from srplugins.tools import preview


@pytest.fixture
def photo(tmp_path):
    from skimage import data
    path = tmp_path / 'photo.png'
    cv2.imwrite(str(path), data.astronaut()[100:220, 150:290, ::-1])  # 140 x 120
    return str(path)


def test_bsrgan_sheet_and_recorded_parameters(tmp_path, photo):
    pytest.importorskip('matplotlib')
    assert preview.main(
        ['bsrgan', '-i', photo, '-n', '3', '-o',
         str(tmp_path / 'sheet.png'), '--size', '96', '--seed', '10']) == 0
    sheet = cv2.imread(str(tmp_path / 'sheet.png'))
    assert sheet is not None and sheet.shape[0] > sheet.shape[1]  # three rows
    params = json.loads((tmp_path / 'sheet.json').read_text())
    assert [p['seed'] for p in params] == [10, 11, 12]
    hq, _ = preview.square_crop(preview.read_rgb(photo), 96, 4)
    for p in params:
        # an independent draw of the plan from the same seed has the same op order and JPEG qualities
        plan = bd.sample_bsrgan_plan(np.random.default_rng(p['seed']), 4, hq.shape, 24)
        assert p['op_order'] == [int(o) for o in plan['order']]
        assert [s['quality'] for s in p['steps'] if s['op'] == 'jpeg'] == \
            [q['quality'] for n, q in plan['steps'] if n == 'jpeg']
        assert p['steps'][-1]['op'] == 'jpeg'
    lq_a, hq_a, _ = preview.sample_bsrgan(hq, 11, 4)
    lq_b, _, _ = preview.sample_bsrgan(hq, 11, 4)
    lq_c, _, _ = preview.sample_bsrgan(hq, 12, 4)
    assert lq_a.shape == (24, 24, 3) and hq_a.shape == (96, 96, 3)
    np.testing.assert_array_equal(lq_a, lq_b)
    assert not np.array_equal(lq_a, lq_c)


def test_realesrgan_records_forced_options(tmp_path, photo):
    opt = preview.realesrgan_options()
    # force every choice: always down in the first order, keep in the second, Gaussian noise 0, JPEG 90
    forced = dict(
        resize_prob=[0, 1, 0],
        resize_range=[0.5, 0.5],
        resize_prob2=[0, 0, 1],
        gaussian_noise_prob=1,
        gaussian_noise_prob2=1,
        noise_range=[0, 0],
        noise_range2=[0, 0],
        jpeg_range=[90, 90],
        jpeg_range2=[90, 90],
        second_blur_prob=0,
        final_sinc_prob=0,
        gray_noise_prob=0,
        gray_noise_prob2=0)
    full = {
        'datasets': {
            'train': {
                k: v
                for k, v in opt.items() if k.startswith(('kernel', 'sinc', 'blur', 'beta')) or k == 'final_sinc_prob'
            }
        }
    }
    full.update({k: v for k, v in opt.items() if k not in full['datasets']['train']})
    full.update(forced)
    full['datasets']['train']['final_sinc_prob'] = 0
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(full))
    hq, _ = preview.square_crop(preview.read_rgb(photo), 96, 4)
    lq, _, params = preview.sample_realesrgan(hq, 3, 4, preview.realesrgan_options(str(tmp_path / 'opt.yml')))
    ops = [s['op'] for s in params['steps']]
    assert ops == ['blur', 'resize', 'gaussian_noise', 'jpeg', 'resize', 'gaussian_noise', 'resize', 'sinc', 'jpeg'] \
        or ops == ['blur', 'resize', 'gaussian_noise', 'jpeg', 'resize', 'gaussian_noise', 'jpeg', 'resize', 'sinc']
    factor = params['steps'][1]['factor']  # 'down' draws U(resize_range[0], 1), as basicsr does
    assert 0.5 <= factor <= 1 and params['steps'][1]['size_wh'] == [int(96 * factor)] * 2
    assert params['steps'][4]['size_wh'] == [24, 24]
    assert [s['quality'] for s in params['steps'] if s['op'] == 'jpeg'] == [90, 90]
    assert {s['kernel_size'] for s in params['steps'] if s['op'] == 'sinc'} == {0}  # no final sinc drawn
    assert lq.shape == (24, 24, 3)
    lq2, _, _ = preview.sample_realesrgan(hq, 3, 4, preview.realesrgan_options(str(tmp_path / 'opt.yml')))
    np.testing.assert_array_equal(lq, lq2)


def test_dsn_rows_are_the_network_output(tmp_path, photo):
    pytest.importorskip('matplotlib')
    from srplugins.archs.dasr_arch import DASRDownsampler, DASRFSDiscriminator
    torch.manual_seed(0)
    g_opt = dict(type='DASRDownsampler', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, scale=4)
    net_g = DASRDownsampler(**{k: v for k, v in g_opt.items() if k != 'type'}).eval()
    net_d = DASRFSDiscriminator(filter_type='gau', norm='batch', d_arch='fsd', num_feat=8)
    torch.save(
        {
            'format': 'srplugins.DASR.dsn.v1',
            'iter': 1,
            'scale': 4,
            'network_g': g_opt,
            'network_d': net_d.config(),
            'params_g': net_g.state_dict(),
            'params_d': net_d.state_dict()
        }, tmp_path / 'dsn.pth')
    params = preview.preview(
        'dsn', photo, 2, str(tmp_path / 'dsn.png'), seed=4, size=64, checkpoint=str(tmp_path / 'dsn.pth'))
    y, x = params[0]['steps'][0]['crop_yx']
    crop = preview.read_rgb(photo)[y:y + 64, x:x + 64]
    lq, _, _ = preview.sample_dsn(preview.read_rgb(photo), 4, 64, net_g, 4)
    with torch.no_grad():
        expected = net_g(torch.from_numpy(crop.transpose(2, 0, 1).copy())[None])[0].clamp(0, 1)
    np.testing.assert_allclose(lq, expected.mul(255).round().div(255).numpy().transpose(1, 2, 0), atol=1e-6)
    assert (tmp_path / 'dsn.png').is_file() and len(json.loads((tmp_path / 'dsn.json').read_text())) == 2
    assert preview.main(['dsn', '-i', photo, '-o', str(tmp_path / 'x.png')]) == 2  # --checkpoint required
