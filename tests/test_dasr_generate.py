"""Tests for srplugins-dasr-generate (srplugins/tools/dasr_generate.py; DASR step 2: generated LR + domain-distance
maps), including grey / 16-bit output and the collapse check."""
import math
import numpy as np
import os
import os.path as osp
import pytest
import torch
from PIL import Image

import srplugins  # noqa: F401
from srplugins.archs.dasr_arch import DASRDownsampler, DASRFSDiscriminator


@pytest.fixture(scope='module')
def gen():
    from srplugins.tools import dasr_generate
    return dasr_generate


def _bundle(path, filter_type='gau', norm='batch', d_arch='fsd', channels=3):
    torch.manual_seed(0)
    g_opt = dict(type='DASRDownsampler', num_in_ch=channels, num_out_ch=channels, num_feat=8, num_block=1, scale=4)
    net_g = DASRDownsampler(**{k: v for k, v in g_opt.items() if k != 'type'})
    net_d = DASRFSDiscriminator(filter_type=filter_type, norm=norm, d_arch=d_arch, num_feat=8, num_in_ch=channels)
    net_d.eval()
    torch.save(
        {
            'format': 'srplugins.DASR.dsn.v1',
            'iter': 1,
            'scale': 4,
            'network_g': g_opt,
            'network_d': net_d.config(),
            'params_g': net_g.state_dict(),
            'params_d': net_d.state_dict()
        }, path)
    return net_g.eval(), net_d


def _hr_folder(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_generate_writes_stem_paired_files(tmp_path, gen):
    net_g, net_d = _bundle(tmp_path / 'dsn.pth')
    hr_dir = _hr_folder(tmp_path / 'hr', {'a.png': (34, 41), 'b.v2.jpg': (32, 32)})  # 'a' is mod-cropped to 32x40
    out = tmp_path / 'out'
    stems = gen.generate(str(tmp_path / 'dsn.pth'), str(hr_dir), str(out), tile=16, tile_pad=32, progress=False)
    assert stems == ['a', 'b.v2']
    assert sorted(p.name for p in (out / 'lq').iterdir()) == ['a.png', 'b.v2.png']
    assert sorted(p.name for p in (out / 'ddm').iterdir()) == ['a.npy', 'b.v2.npy']
    lr = np.asarray(Image.open(out / 'lq' / 'a.png'))
    assert lr.shape == (8, 10, 3)
    ddm = np.load(out / 'ddm' / 'a.npy')
    assert ddm.shape == (1, 1, 8, 10) and ddm.dtype == np.float32

    # reference: full-image G, rounding to 8 bit, sigmoid(D), explicit 17x17 receptive-field spreading
    hr = torch.from_numpy(np.asarray(Image.open(hr_dir / 'a.png'), dtype=np.float32)[:32, :40] / 255.)
    with torch.no_grad():
        full = net_g(hr.permute(2, 0, 1)[None])
        np.testing.assert_array_equal(lr, full[0].permute(1, 2, 0).mul(255).round().byte().numpy())
        prob = torch.sigmoid(net_d(torch.from_numpy(lr / 255.).float().permute(2, 0, 1)[None]))[0, 0].numpy()
    total, count = np.zeros((8, 10)), np.zeros((8, 10))
    for i in range(8):
        for j in range(10):
            total[max(0, i - 8):i + 9, max(0, j - 8):j + 9] += prob[i, j]
            count[max(0, i - 8):i + 9, max(0, j - 8):j + 9] += 1
    np.testing.assert_allclose(ddm[0, 0], total / count, atol=1e-6)


def test_tiled_generator_equals_full_image(gen):
    torch.manual_seed(0)
    net = DASRDownsampler(num_feat=8, num_block=2, scale=4).eval()
    hr = torch.rand(1, 3, 72, 56)
    with torch.no_grad():
        full = net(hr)
    tiled = gen.tiled_downsample(net, hr, 4, tile=16, tile_pad=24)
    torch.testing.assert_close(tiled, full, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='multiple of the scale'):
        gen.tiled_downsample(net, torch.rand(1, 3, 30, 32), 4)


def test_generate_refuses_mismatched_folders(tmp_path, gen):
    _bundle(tmp_path / 'dsn.pth')
    hr_dir = _hr_folder(tmp_path / 'hr', {'a.png': (16, 16)})
    stale = tmp_path / 'out' / 'ddm'
    stale.mkdir(parents=True)
    np.save(stale / 'zzz.npy', np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match='stems are not in'):
        gen.generate(str(tmp_path / 'dsn.pth'), str(hr_dir), str(tmp_path / 'out'), progress=False)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(hr_dir / 'a.jpg')
    with pytest.raises(ValueError, match='share the stem'):
        gen.generate(str(tmp_path / 'dsn.pth'), str(hr_dir), str(tmp_path / 'out2'), progress=False)
    with pytest.raises(FileNotFoundError, match='--checkpoint'):
        gen.generate(str(tmp_path / 'missing.pth'), str(hr_dir), str(tmp_path / 'out3'), progress=False)


@pytest.mark.parametrize('filter_type,norm,d_type', [('gau', 'batch', 'FSD'), ('wavelet', 'instance', 'FSD'),
                                                     ('avg_pool', 'batch', 'nld_s1')])
def test_official_dsn_checkpoint_is_rebuilt(tmp_path, gen, filter_type, norm, d_type):
    net_g = DASRDownsampler(scale=2, num_block=2)
    net_d = DASRFSDiscriminator(filter_type=filter_type, norm=norm, d_arch=d_type.lower())
    official = {
        'epoch': 5,
        'iteration': 100,
        'fs_type': filter_type,
        'fs_kernel_size': 5,
        'D_type': d_type,
        'model_g_state_dict': net_g.state_dict(),
        'models_d_state_dict': net_d.state_dict()
    }
    torch.save(official, tmp_path / 'last_iteration.tar')
    loaded_g, loaded_d, info = gen.load_dsn(str(tmp_path / 'last_iteration.tar'))
    assert info['network_g']['scale'] == 2 and info['network_g']['num_block'] == 2
    assert loaded_d.config() == net_d.config()
    # the norm is not recorded officially: a wrong override fails with a message naming the options
    with pytest.raises(ValueError, match='--norm'):
        gen.load_dsn(str(tmp_path / 'last_iteration.tar'), {'norm': 'batch' if norm == 'instance' else 'instance'})


# the official create_dataset_modified.py convnets, written out here independently of srplugins
OFFICIAL_CONVNETS = {
    'fsd': [[5, 1, 2], [5, 1, 2], [5, 1, 2], [5, 1, 2]],
    'nld_s1': [[4, 1, 1], [4, 1, 1], [4, 1, 1], [4, 1, 1]],
    'nld_s2': [[4, 2, 1], [4, 2, 1], [4, 1, 1], [4, 1, 1]],
}


def official_receptive_average(prob, convnet, height, width):
    """Explicit receptive-field averaging as the official receptive_cal.py (outFromIn + weights_matrix + getWeights),
    one python loop per output value; each axis with its own geometry."""
    geometry = []
    for size in (height, width):
        n, jump, rf, start = size, 1, 1, 0.5
        for k, s, p in convnet:
            n_out = math.floor((n - k + 2 * p) / s) + 1
            pad_left = math.floor(((n_out - 1) * s - n + k) / 2)
            n, jump, rf, start = n_out, jump * s, rf + (k - 1) * jump, start + ((k - 1) / 2 - pad_left) * jump
        geometry.append((n, jump, rf, start))
    (n_h, j_h, rf_h, s_h), (n_w, j_w, rf_w, s_w) = geometry
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for i in range(n_h):
        for j in range(n_w):
            top, bottom = int(max(0, s_h + i * j_h - rf_h // 2)), int(s_h + i * j_h + rf_h - rf_h // 2)
            left, right = int(max(0, s_w + j * j_w - rf_w // 2)), int(s_w + j * j_w + rf_w - rf_w // 2)
            total[top:bottom, left:right] += prob[i, j]
            count[top:bottom, left:right] += 1
    return total / count


@pytest.mark.parametrize('d_arch,size', [('nld_s1', (11, 14)), ('nld_s2', (24, 24)), ('nld_s2', (25, 26)),
                                         ('nld_s2', (27, 30)), ('fsd', (9, 12))])
def test_receptive_field_spreading_equals_official_loop(d_arch, size):
    from srplugins.ops.frequency import DSN_RECEPTIVE_LAYERS, receptive_field_geometry, spread_over_receptive_fields
    n_h = receptive_field_geometry(size[0], DSN_RECEPTIVE_LAYERS[d_arch])[0]
    n_w = receptive_field_geometry(size[1], DSN_RECEPTIVE_LAYERS[d_arch])[0]
    prob = torch.rand(1, 1, n_h, n_w, dtype=torch.float64)
    ours = spread_over_receptive_fields(prob, DSN_RECEPTIVE_LAYERS[d_arch], size)
    expected = official_receptive_average(prob[0, 0].numpy(), OFFICIAL_CONVNETS[d_arch], *size)
    np.testing.assert_allclose(ours[0, 0].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize('filter_type,d_arch', [('gau', 'nld_s2'), ('wavelet', 'nld_s1'), ('avg_pool', 'nld_s1')])
def test_generate_nld_maps_follow_official_windows(tmp_path, gen, filter_type, d_arch):
    net_g, net_d = _bundle(tmp_path / 'dsn.pth', filter_type, 'instance', d_arch)
    hr_dir = _hr_folder(tmp_path / 'hr', {'a.png': (100, 106)})  # LR 25 x 26 (mod-cropped HR 100 x 104)
    out = tmp_path / 'out'
    gen.generate(str(tmp_path / 'dsn.pth'), str(hr_dir), str(out), progress=False)
    lr = np.asarray(Image.open(out / 'lq' / 'a.png'))
    with torch.no_grad():
        prob = torch.sigmoid(net_d(torch.from_numpy(lr / 255.).float().permute(2, 0, 1)[None]))[0, 0].double()
    canvas = (13, 13) if filter_type == 'wavelet' else (25, 26)  # discriminator input grid
    ddm = np.load(out / 'ddm' / 'a.npy')
    assert ddm.shape == (1, 1) + canvas
    expected = official_receptive_average(prob.numpy(), OFFICIAL_CONVNETS[d_arch], *canvas)
    np.testing.assert_allclose(ddm[0, 0], expected, atol=1e-6)
    with pytest.raises(ValueError, match='--field'):
        gen.generate(str(tmp_path / 'dsn.pth'), str(hr_dir), str(tmp_path / 'out2'), field=17, progress=False)


def test_generate_grayscale_and_rgba_inputs(tmp_path, gen):
    _bundle(tmp_path / 'dsn.pth')
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (32, 36), dtype=np.uint8)
    rgba = rng.integers(0, 256, (36, 32, 4), dtype=np.uint8)
    (tmp_path / 'hr').mkdir()
    (tmp_path / 'hr_rgb').mkdir()
    Image.fromarray(gray, 'L').save(tmp_path / 'hr' / 'g.png')
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'hr' / 'a.png')
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(tmp_path / 'hr_rgb' / 'g.png')
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(tmp_path / 'hr_rgb' / 'a.png')
    with pytest.warns(UserWarning, match='alpha'):
        gen.generate(str(tmp_path / 'dsn.pth'), str(tmp_path / 'hr'), str(tmp_path / 'out'), progress=False)
    gen.generate(str(tmp_path / 'dsn.pth'), str(tmp_path / 'hr_rgb'), str(tmp_path / 'ref'), progress=False)
    for stem, shape in (('g', (8, 9, 3)), ('a', (9, 8, 3))):
        lr = np.asarray(Image.open(tmp_path / 'out' / 'lq' / f'{stem}.png'))
        assert lr.shape == shape
        np.testing.assert_array_equal(lr, np.asarray(Image.open(tmp_path / 'ref' / 'lq' / f'{stem}.png')))
        np.testing.assert_array_equal(
            np.load(tmp_path / 'out' / 'ddm' / f'{stem}.npy'), np.load(tmp_path / 'ref' / 'ddm' / f'{stem}.npy'))


def test_strip_suffix_links_realsr_pairs(tmp_path, gen):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    rng = np.random.default_rng(6)
    for sub in ('LR', 'HR'):
        (tmp_path / sub).mkdir()
    for i in (1, 2):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / 'LR' / f'Canon_00{i}_LR4.png')
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / 'HR' / f'Canon_00{i}_HR.png')
    gen.main(
        ['strip-suffix', '--src',
         str(tmp_path / 'LR'), '--dst',
         str(tmp_path / 'stems' / 'LR'), '--suffix', '_LR4'])
    written = gen.link_by_stem(str(tmp_path / 'HR'), str(tmp_path / 'stems' / 'HR'), '_HR', copy=True)
    assert [osp.basename(p) for p in written] == ['Canon_001.png', 'Canon_002.png']
    assert sorted(os.listdir(tmp_path / 'stems' / 'LR')) == ['Canon_001.png', 'Canon_002.png']
    assert osp.islink(tmp_path / 'stems' / 'LR' / 'Canon_001.png')
    assert not osp.islink(tmp_path / 'stems' / 'HR' / 'Canon_001.png')
    # basicsr's PairedImageDataset now pairs them, each LR with its own HR
    ds = PairedImageDataset({
        'dataroot_gt': str(tmp_path / 'stems' / 'HR'),
        'dataroot_lq': str(tmp_path / 'stems' / 'LR'),
        'io_backend': {
            'type': 'disk'
        },
        'phase': 'val',
        'scale': 4
    })
    for item in (ds[0], ds[1]):
        stem = osp.splitext(osp.basename(item['gt_path']))[0]
        expected = np.asarray(Image.open(tmp_path / 'LR' / f'{stem}_LR4.png'), dtype=np.float32) / 255.
        np.testing.assert_allclose(item['lq'].numpy().transpose(1, 2, 0), expected, atol=1e-6)
    # a rerun is fine; missing suffix, name clashes and conflicting destinations are refused
    gen.link_by_stem(str(tmp_path / 'LR'), str(tmp_path / 'stems' / 'LR'), '_LR4')
    with pytest.raises(ValueError, match='differs'):
        gen.link_by_stem(str(tmp_path / 'HR'), str(tmp_path / 'stems' / 'LR'), '_HR')
    with pytest.raises(ValueError, match='does not end with'):
        gen.link_by_stem(str(tmp_path / 'HR'), str(tmp_path / 'x'), '_LR4')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'LR' / 'Canon_001_LR4.jpg')
    with pytest.raises(ValueError, match='both become'):
        gen.link_by_stem(str(tmp_path / 'LR'), str(tmp_path / 'y'), '_LR4')


def test_generated_lr_keeps_grey_and_16_bit(tmp_path, gen):
    import cv2
    net_g, net_d = _bundle(tmp_path / 'dsn.pth', channels=1)
    rng = np.random.default_rng(7)
    hr16 = rng.integers(0, 65536, (32, 40), dtype=np.uint16)
    (tmp_path / 'hr').mkdir()
    cv2.imwrite(str(tmp_path / 'hr' / 'mri.png'), hr16)
    cv2.imwrite(str(tmp_path / 'hr' / 'eight.png'), (hr16 // 257).astype(np.uint8))
    gen.generate(str(tmp_path / 'dsn.pth'), str(tmp_path / 'hr'), str(tmp_path / 'out'), progress=False)
    lr16 = cv2.imread(str(tmp_path / 'out' / 'lq' / 'mri.png'), cv2.IMREAD_UNCHANGED)
    lr8 = cv2.imread(str(tmp_path / 'out' / 'lq' / 'eight.png'), cv2.IMREAD_UNCHANGED)
    assert lr16.dtype == np.uint16 and lr16.shape == (8, 10)
    assert lr8.dtype == np.uint8 and lr8.shape == (8, 10)
    # reference: the 1-channel network on the 16-bit image at full precision, rounded to 16 bit
    with torch.no_grad():
        full = net_g(torch.from_numpy(hr16.astype(np.float32) / 65535.)[None, None])
    expected = full[0, 0].clamp(0, 1).mul(65535).round().numpy().astype(np.uint16)
    np.testing.assert_array_equal(lr16, expected)
    with torch.no_grad():
        prob = torch.sigmoid(net_d(torch.from_numpy(lr16.astype(np.float32) / 65535.)[None, None]))
    assert np.load(tmp_path / 'out' / 'ddm' / 'mri.npy').shape == (1, 1, 8, 10)
    assert prob.shape[-2:] == (8, 10)
    # a colour file cannot feed a 1-channel DSN: the error names the file
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / 'hr' / 'rgb.png')
    with pytest.raises(ValueError, match='rgb.png has 3 channels'):
        gen.generate(str(tmp_path / 'dsn.pth'), str(tmp_path / 'hr'), str(tmp_path / 'out2'), progress=False)


def _collapsed_bundle(path):
    """A bundle whose generator outputs a constant image: its last conv has zero weights and a constant bias."""
    net_g, _ = _bundle(path)
    bundle = torch.load(path, weights_only=True)
    bundle['params_g']['block_output.weight'].zero_()
    bundle['params_g']['block_output.bias'].fill_(-20.)
    torch.save(bundle, path)


def test_collapsed_outputs_are_named_and_an_all_collapsed_set_is_refused(tmp_path, gen, capsys):
    _collapsed_bundle(tmp_path / 'dsn.pth')
    hr_dir = _hr_folder(tmp_path / 'hr', {'a.png': (16, 16), 'b.png': (16, 20)})
    code = gen.main([
        '--checkpoint',
        str(tmp_path / 'dsn.pth'), '--hr',
        str(hr_dir), '--out',
        str(tmp_path / 'out'), '--device', 'cpu'
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert 'a.png collapsed: all black' in err and 'b.png collapsed' in err and '--force' in err
    assert os.listdir(tmp_path / 'out' / 'lq') == [] and os.listdir(tmp_path / 'out' / 'ddm') == []
    # --force writes them anyway (still warning by name)
    assert gen.main([
        '--checkpoint',
        str(tmp_path / 'dsn.pth'), '--hr',
        str(hr_dir), '--out',
        str(tmp_path / 'out'), '--device', 'cpu', '--force'
    ]) == 0
    assert sorted(os.listdir(tmp_path / 'out' / 'lq')) == ['a.png', 'b.png']
    assert 'a.png collapsed' in capsys.readouterr().err
    assert gen.collapse_reason(torch.full((1, 3, 4, 4), 0.5)).startswith('constant')
    assert gen.collapse_reason(torch.rand(1, 3, 4, 4)) is None


def test_scale_one_generator_runs_on_hr_only_when_trained_at_scale_one(tmp_path, gen):
    """A scale-1 generator trained with ``scale: 1`` maps HR images (LR = HR size); one trained at x4 (DSGAN: bicubic
    LR input) or an official file that records no scale is refused."""
    torch.manual_seed(1)
    g_opt = dict(type='DASRDownsampler', num_feat=8, num_block=1, scale=1)
    net_g = DASRDownsampler(num_feat=8, num_block=1, scale=1).eval()
    net_d = DASRFSDiscriminator(filter_type='gau', norm='instance', num_feat=8).eval()
    hr_dir = _hr_folder(tmp_path / 'hr', {'a.png': (13, 15)})
    for data_scale in (1, 4):
        torch.save(
            {
                'format': 'srplugins.DASR.dsn.v1',
                'scale': data_scale,
                'network_g': g_opt,
                'network_d': net_d.config(),
                'params_g': net_g.state_dict(),
                'params_d': net_d.state_dict()
            }, tmp_path / f'dsn{data_scale}.pth')
    gen.generate(str(tmp_path / 'dsn1.pth'), str(hr_dir), str(tmp_path / 'out'), tile=8, tile_pad=8, progress=False)
    lr = np.asarray(Image.open(tmp_path / 'out' / 'lq' / 'a.png'))
    hr = torch.from_numpy(np.asarray(Image.open(hr_dir / 'a.png'), dtype=np.float32) / 255.).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = net_g(hr)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    np.testing.assert_array_equal(lr, expected)  # full HR size, no mod-crop
    with pytest.raises(ValueError, match='trained at scale 4'):
        gen.generate(str(tmp_path / 'dsn4.pth'), str(hr_dir), str(tmp_path / 'out4'), progress=False)
    torch.save({
        'model_g_state_dict': net_g.state_dict(),
        'models_d_state_dict': net_d.state_dict()
    }, tmp_path / 'official.tar')
    with pytest.raises(ValueError, match='records no training scale'):
        gen.generate(str(tmp_path / 'official.tar'), str(hr_dir), str(tmp_path / 'out_o'), progress=False)
