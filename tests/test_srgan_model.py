"""SRGAN recipes on CPU: pre-training through basicsr's SRModel, the GAN stage through basicsr's SRGANModel (a real
``srplugins/train.py`` run), SRResNet weights loading into the GAN recipe, the [-1, 1] tanh models, and the
consistency of every SRGAN option file."""
import copy
import glob
import math
import os.path as osp
import pytest
import re
import torch
import yaml
from basicsr.archs import build_network
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from srplugins.archs.srgan_arch import parse_output_range

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_G = {'type': 'SRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 4}
TINY_D = {'type': 'SRGANDiscriminator', 'num_in_ch': 3, 'num_feat': 8, 'input_size': 32}


def read_option(rel_path):
    with open(osp.join(REPO_ROOT, rel_path), encoding='utf-8') as f:
        return yaml.safe_load(f)


def in_process_opt(rel_path, tmp_path, network_g=None, network_d=None):
    """A repository option file made tiny and completed as basicsr's parse_options would for a CPU run."""
    opt = read_option(rel_path)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['network_g'] = copy.deepcopy(network_g or TINY_G)
    if 'network_d' in opt:
        opt['network_d'] = copy.deepcopy(network_d or TINY_D)
    exp = tmp_path / 'exp'
    opt['path'].update(
        experiments_root=str(exp),
        models=str(exp / 'models'),
        training_states=str(exp / 'states'),
        log=str(exp),
        visualization=str(exp / 'vis'))
    return opt


def demo_batch(demo_data, size=32, batch=2, seed=0):
    """HR crops of the demo photos in [0, 1] and their x4 LR crops from datasets/demo (aligned)."""
    import cv2
    gen = torch.Generator().manual_seed(seed)
    gts, lqs = [], []
    names = sorted(osp.basename(p) for p in glob.glob(osp.join(demo_data, 'train', 'HR', '*.png')))
    for i in range(batch):
        name = names[i % len(names)]
        hr = cv2.imread(osp.join(demo_data, 'train', 'HR', name))[..., ::-1] / 255.
        lr = cv2.imread(osp.join(demo_data, 'train', 'LR_bicubic', 'X4', name))[..., ::-1] / 255.
        y, x = [int(torch.randint(0, (d - size) // 4, (1, ), generator=gen)) for d in hr.shape[:2]]
        lqs.append(torch.from_numpy(lr[y:y + size // 4, x:x + size // 4].copy()).permute(2, 0, 1).float())
        gts.append(torch.from_numpy(hr[4 * y:4 * y + size, 4 * x:4 * x + size].copy()).permute(2, 0, 1).float())
    return {'lq': torch.stack(lqs), 'gt': torch.stack(gts)}


def test_srresnet_pretraining_loss_decreases(demo_data, tmp_path):
    opt = in_process_opt('options/demo/demo_SRResNet_x4.yml', tmp_path)
    opt['train']['optim_g']['lr'] = 1e-3
    torch.manual_seed(0)
    model = build_model(opt)
    assert type(model).__name__ == 'SRPlusModel'  # basicsr's SRModel plus srplugins' training options
    from basicsr.models.sr_model import SRModel
    assert isinstance(model, SRModel)
    data = demo_batch(demo_data)
    losses = []
    for it in range(1, 26):
        model.feed_data(data)
        model.optimize_parameters(it)
        losses.append(model.get_current_log()['l_pix'])
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_srresnet_weights_load_into_srgan_recipe(tmp_path, vgg19_weights):
    torch.manual_seed(0)
    srresnet = build_network(TINY_G)
    for m in srresnet.modules():  # distinguishable BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / 'net_g_srresnet.pth'
    torch.save({'params': srresnet.state_dict()}, path)

    opt = in_process_opt('options/train/SRGAN/train_SRGAN_x4_VGG54.yml', tmp_path)
    opt['path']['pretrain_network_g'] = str(path)
    model = build_model(opt)
    assert type(model).__name__ == 'SRGANPlusModel'
    from basicsr.models.srgan_model import SRGANModel
    assert isinstance(model, SRGANModel)
    loaded = model.net_g.state_dict()
    assert loaded.keys() == srresnet.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in srresnet.state_dict().items())

    opt = in_process_opt('options/train/SRGAN/train_SRGAN_x4_VGG54.yml', tmp_path, network_g=dict(TINY_G, num_block=3))
    opt['path']['pretrain_network_g'] = str(path)
    with pytest.raises(RuntimeError, match='Missing key'):  # strict_load_g: true catches a mismatching recipe
        build_model(opt)


LOSS_LINE = re.compile(r'iter:\s+(\d+),.*l_g_pix: (\S+) l_g_percep: (\S+) l_g_gan: (\S+) l_d_real: (\S+) '
                       r'out_d_real: \S+ l_d_fake: (\S+)')


def test_srgan_recipe_runs_three_iterations(run_train, demo_data, vgg19_weights, tmp_path):
    """The demo GAN recipe (tiny nets, MSE + VGG54 + GAN), started from a saved SRResNet, through srplugins/train.py."""
    torch.manual_seed(0)
    pretrained = tmp_path / 'srresnet.pth'
    srresnet = build_network(TINY_G)
    torch.save({'params': srresnet.state_dict()}, pretrained)

    opt = read_option('options/demo/demo_SRGAN_x4.yml')
    opt['name'] = 'srgan_three_iters'
    opt['network_g'], opt['network_d'] = dict(TINY_G), dict(TINY_D)
    for phase in ('train', 'val'):
        for key in ('dataroot_gt', 'dataroot_lq'):
            opt['datasets'][phase][key] = osp.join(demo_data, opt['datasets'][phase][key].split('datasets/demo/')[1])
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2)
    opt['path']['pretrain_network_g'] = str(pretrained)
    opt['train']['pixel_opt'] = {'type': 'MSELoss', 'loss_weight': 4.0, 'reduction': 'mean'}
    opt['train']['total_iter'] = 3
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    opt['val']['val_freq'] = 1000
    opt['val']['save_img'] = False
    result = run_train(opt, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f'Loading SRResNet model from {pretrained}' in result.stdout
    rows = LOSS_LINE.findall(result.stdout)
    assert [int(r[0]) for r in rows] == [1, 2, 3], result.stdout[-3000:]
    assert all(math.isfinite(float(v)) for row in rows for v in row[1:])
    saved = torch.load(tmp_path / 'experiments' / 'srgan_three_iters' / 'models' / 'net_g_latest.pth')['params']
    assert not torch.equal(saved['conv_last.weight'], srresnet.state_dict()['conv_last.weight'])  # G was trained
    assert (tmp_path / 'experiments' / 'srgan_three_iters' / 'models' / 'net_d_latest.pth').is_file()


@pytest.mark.parametrize(
    'network_d', [TINY_D, {
        'type': 'UNetDiscriminatorSN_basicsr',
        'num_in_ch': 3,
        'num_feat': 8
    }],
    ids=['per-image-logit', 'per-pixel-logits'])
def test_srgan_tanh_model(demo_data, tmp_path, vgg19_weights, network_d):
    opt = in_process_opt(
        'options/train/SRGAN/train_SRGAN_x4_VGG54.yml',
        tmp_path,
        network_g=dict(TINY_G, output_range=[-1, 1]),
        network_d=network_d)
    opt['model_type'] = 'SRGANTanhModel'
    opt['path']['pretrain_network_g'] = None
    opt['train']['pixel_opt'] = {'type': 'MSELoss', 'loss_weight': 1.0}  # the paper's MSE on [-1, 1]
    opt['train']['perceptual_opt'].update(layer_weights={'relu2_2': 1.0}, range_norm=True)
    torch.manual_seed(0)
    model = build_model(opt)
    data = demo_batch(demo_data)
    for it in (1, 2):
        model.feed_data(data)
        assert torch.allclose(model.gt, data['gt'] * 2 - 1) and torch.equal(model.lq, data['lq'])
        model.optimize_parameters(it)
        log = model.get_current_log()
        assert {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= log.keys()
        assert all(math.isfinite(v) for v in log.values())
    model.test()
    visuals = model.get_current_visuals()
    assert torch.allclose(visuals['gt'], data['gt'], atol=1e-6)
    assert visuals['result'].min() >= 0 and visuals['result'].max() <= 1
    assert torch.allclose(visuals['result'], (model.output + 1) / 2)


def test_tanh_models_check_their_options(tmp_path):
    opt = in_process_opt('options/train/SRGAN/train_SRResNet_x4_MSE.yml', tmp_path)
    opt['model_type'] = 'SRResNetTanhModel'
    with pytest.raises(ValueError, match=r'network_g.output_range: \[-1, 1\]'):
        build_model(opt)
    opt = in_process_opt(
        'options/train/SRGAN/train_SRGAN_x4_VGG54.yml', tmp_path, network_g=dict(TINY_G, output_range=[-1, 1]))
    opt['model_type'] = 'SRGANTanhModel'
    with pytest.raises(ValueError, match='perceptual_opt.range_norm: true'):
        build_model(opt)


OPTION_FILES = sorted(
    glob.glob(osp.join(REPO_ROOT, 'options', '*', 'SRGAN', '*.yml')) +
    [osp.join(REPO_ROOT, 'options', 'demo', f'demo_{n}_x4.yml') for n in ('SRResNet', 'SRGAN')])


@pytest.mark.parametrize('path', OPTION_FILES, ids=[osp.basename(p) for p in OPTION_FILES])
def test_option_files_are_consistent(path):
    opt = yaml.safe_load(open(path, encoding='utf-8'))
    scale = opt['scale']
    assert MODEL_REGISTRY.get(opt['model_type'])
    net_g = opt['network_g']
    assert net_g['type'] == 'SRResNet' and net_g['upscale'] == scale
    assert parse_output_range(net_g['output_range']) == (0.0, 1.0)  # the recipes use identity output
    build_network(dict(net_g, num_feat=4, num_block=1))
    for metric in opt['val']['metrics'].values():
        assert metric['crop_border'] == scale and metric['test_y_channel'] is True
    for phase, dataset in opt['datasets'].items():  # benchmark sets in the EDSR layout (HR, LR_bicubic/X<s>/<n>x<s>)
        if phase != 'train' and '/demo/' not in path and 'DIV2K' not in dataset['dataroot_gt']:
            root = f'datasets/benchmark/{dataset["name"]}'
            assert dataset['dataroot_gt'] == f'{root}/HR' and dataset['dataroot_lq'] == f'{root}/LR_bicubic/X{scale}'
            assert dataset['filename_tmpl'] == f'{{}}x{scale}'
    if '/test/' in path:
        assert len(opt['datasets']) == 5 and opt['val']['save_img'] is True
        return
    train = opt['train']
    assert train['optim_g']['lr'] == 1e-4 and opt['datasets']['train']['gt_size'] in (96, 64)
    if 'network_d' in opt:  # GAN stage
        assert ARCH_REGISTRY.get(opt['network_d']['type'])
        if opt['network_d']['type'] == 'SRGANDiscriminator':
            assert opt['network_d']['input_size'] == opt['datasets']['train']['gt_size']
        assert train['optim_d']['lr'] == 1e-4 and train['scheduler']['gamma'] == 0.1
        assert train['scheduler']['milestones'] == [train['total_iter'] // 2]
        assert train['gan_opt']['gan_type'] == 'vanilla' and train['gan_opt']['loss_weight'] == 1e-3
        assert train['net_d_iters'] == 1 and opt['path']['pretrain_network_g']
        content = train['perceptual_opt'] or train['pixel_opt']
        assert LOSS_REGISTRY.get(content['type'])
        if content['type'] == 'VGGContentLoss':
            assert list(content['layer_weights']) == ['relu5_4']
    else:
        assert train['pixel_opt']['type'] == 'MSELoss' and train['pixel_opt']['loss_weight'] == 4.0
    if '/train/' in path:
        assert opt['datasets']['train']['batch_size_per_gpu'] == 16 and opt['datasets']['train']['gt_size'] == 96
        assert train['total_iter'] == (200000 if 'network_d' in opt else 1000000)
