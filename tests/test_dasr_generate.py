"""Tests for scripts/dasr_generate_data.py (DASR step 2: generated LR + domain-distance maps)."""
import importlib.util
import numpy as np
import os.path as osp
import pytest
import torch
from PIL import Image

import srplugins  # noqa: F401
from srplugins.archs.dasr_arch import DASRDownsampler, DASRFSDiscriminator

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def gen():
    spec = importlib.util.spec_from_file_location('dasr_generate_data',
                                                  osp.join(ROOT, 'scripts', 'dasr_generate_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bundle(path, filter_type='gau', norm='batch'):
    torch.manual_seed(0)
    g_opt = dict(type='DASRDownsampler', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, scale=4)
    net_g = DASRDownsampler(**{k: v for k, v in g_opt.items() if k != 'type'})
    net_d = DASRFSDiscriminator(filter_type=filter_type, norm=norm)
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
