"""A2N: official key/shape layout, strict loading through basicsr, scale-mismatch refusal, a functional reference
forward written from the spec (a2n_srgan.md 1.1), ADM behaviour, gradients, img_range, and a short demo training."""
import copy
import os.path as osp
import pytest
import random
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from collections import OrderedDict
from torch.nn import functional as F

import srplugins  # noqa: F401
from srplugins.archs.a2n_arch import A2N

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def official_layout(scale, nf=40, unf=24, nb=16, non_attention_kernel=3, in_ch=3):
    """Key -> shape table of the authors' aan_x{scale}.pt, as documented in spec 1.3, in the files' key order."""
    table = [('conv_first.weight', (nf, in_ch, 3, 3)), ('conv_first.bias', (nf, ))]
    k = non_attention_kernel
    for i in range(nb):
        p = f'AAB_trunk.{i}.'
        table += [(p + 'conv_first.weight', (nf, nf, 1, 1)), (p + 'ADM.0.weight', (nf // 4, nf)),
                  (p + 'ADM.2.weight', (2, nf // 4)), (p + 'attention.k1.weight', (nf, nf, 3, 3)),
                  (p + 'attention.k2.weight', (nf, nf, 1, 1)), (p + 'attention.k2.bias', (nf, )),
                  (p + 'attention.k3.weight', (nf, nf, 3, 3)), (p + 'attention.k4.weight', (nf, nf, 3, 3)),
                  (p + 'non_attention.weight', (nf, nf, k, k)), (p + 'conv_last.weight', (nf, nf, 1, 1))]
    table += [('trunk_conv.weight', (nf, nf, 3, 3)), ('trunk_conv.bias', (nf, )), ('upconv1.weight', (unf, nf, 3, 3)),
              ('upconv1.bias', (unf, )), ('att1.conv.weight', (unf, unf, 1, 1)), ('att1.conv.bias', (unf, )),
              ('HRconv1.weight', (unf, unf, 3, 3)), ('HRconv1.bias', (unf, ))]
    if scale == 4:
        table += [('upconv2.weight', (unf, unf, 3, 3)), ('upconv2.bias', (unf, )),
                  ('att2.conv.weight', (unf, unf, 1, 1)), ('att2.conv.bias', (unf, )),
                  ('HRconv2.weight', (unf, unf, 3, 3)), ('HRconv2.bias', (unf, ))]
    table += [('conv_last.weight', (3, unf, 3, 3)), ('conv_last.bias', (3, ))]
    return table


def random_official_state(scale, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(shape, generator=gen) * 0.05) for k, shape in official_layout(scale, **kwargs))


def tiny(upscale, **kwargs):
    torch.manual_seed(0)
    return A2N(num_feat=8, num_up_feat=4, num_block=2, upscale=upscale, **kwargs)


# ------------------------------------------------------------------------------------------------------------------ #
def test_registered_and_bad_arguments_are_errors():
    assert ARCH_REGISTRY.get('A2N') is A2N
    with pytest.raises(ValueError, match='upscale'):
        A2N(upscale=8)
    with pytest.raises(ValueError, match='non_attention_kernel'):
        A2N(upscale=2, non_attention_kernel=5)


@pytest.mark.parametrize('scale,num_tensors,num_params', [(2, 172, 1036443), (3, 172, 1036443), (4, 178, 1047459)])
def test_state_dict_equals_official_layout_and_parameter_count(scale, num_tensors, num_params):
    net = A2N(upscale=scale)
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert got == official_layout(scale)
    assert len(got) == num_tensors
    assert sum(p.numel() for p in net.parameters()) == num_params
    assert not list(net.buffers())


@pytest.mark.parametrize('scale,num_params', [(2, 831643), (4, 842659)])
def test_a2n_m_variant(scale, num_params):
    net = A2N(upscale=scale, non_attention_kernel=1)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == official_layout(scale, non_attention_kernel=1)
    assert sum(p.numel() for p in net.parameters()) == num_params


def _test_opt(path, scale, **network):
    net_opt = {'type': 'A2N', 'num_in_ch': 3, 'num_out_ch': 3, 'upscale': scale}
    net_opt.update(network)
    return {
        'name': 'a2n_load',
        'model_type': 'SRModel',
        'is_train': False,
        'dist': False,
        'num_gpu': 0,
        'scale': scale,
        'network_g': net_opt,
        'val': None,
        'path': {
            'pretrain_network_g': str(path),
            'param_key_g': None,
            'strict_load_g': True
        }
    }


@pytest.mark.parametrize('scale', [2, 4])
def test_official_plain_state_dict_loads_strictly_through_basicsr(tmp_path, scale):
    state = random_official_state(scale)
    path = tmp_path / f'aan_x{scale}.pt'
    torch.save(state, path)  # plain dict: no 'params' wrapper, as the authors' files
    model = build_model(_test_opt(path, scale))
    loaded = model.net_g.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_loading_checkpoint_named_for_another_scale_is_an_error(tmp_path):
    # x2 and x3 files have identical shapes: only the name can tell, and the option must agree with it
    path = tmp_path / 'aan_x3.pt'
    torch.save(random_official_state(3), path)
    with pytest.raises(ValueError, match=r'x3.*scale.*2'):
        build_model(_test_opt(path, 2))
    assert build_model(_test_opt(path, 3)).net_g.upscale == 3
    # a wrong-scale file that does not carry the x4 tensors fails the strict load as well
    path4 = tmp_path / 'weights.pt'
    torch.save(random_official_state(3), path4)
    with pytest.raises(RuntimeError, match='upconv2'):
        build_model(_test_opt(path4, 4))


def reference_forward(state, x255, scale, num_block, temperature=30.):
    """The official computation written out with functional ops from the spec text (input/output in 0..255)."""

    def conv(t, key, bias=True):
        w = state[key + '.weight']
        return F.conv2d(t, w, state.get(key + '.bias') if bias else None, padding=w.shape[-1] // 2)

    lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    fea = conv(x255, 'conv_first')
    trunk = fea
    for i in range(num_block):
        p = f'AAB_trunk.{i}.'
        y = lrelu(conv(trunk, p + 'conv_first', bias=False))
        hidden = F.relu(F.linear(y.mean(dim=(2, 3)), state[p + 'ADM.0.weight']))
        a = torch.softmax(F.linear(hidden, state[p + 'ADM.2.weight']) / temperature, dim=1)
        att_map = torch.sigmoid(conv(lrelu(conv(y, p + 'attention.k1', bias=False)), p + 'attention.k2'))
        att = conv(conv(y, p + 'attention.k3', bias=False) * att_map, p + 'attention.k4', bias=False)
        non_att = conv(y, p + 'non_attention', bias=False)
        mixed = lrelu(a[:, 0, None, None, None] * att + a[:, 1, None, None, None] * non_att)
        trunk = conv(mixed, p + 'conv_last', bias=False) + trunk
    fea = fea + conv(trunk, 'trunk_conv')
    stages = [(2, '1'), (2, '2')] if scale == 4 else [(scale, '1')]
    for factor, n in stages:
        fea = conv(F.interpolate(fea, scale_factor=factor, mode='nearest'), 'upconv' + n)
        fea = lrelu(fea * torch.sigmoid(conv(fea, f'att{n}.conv')))
        fea = lrelu(conv(fea, 'HRconv' + n))
    skip = F.interpolate(x255, scale_factor=scale, mode='bilinear', align_corners=False)
    return conv(fea, 'conv_last') + skip


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_forward_matches_functional_reference_of_the_official_computation(scale):
    state = random_official_state(scale, seed=scale, nf=8, unf=4, nb=2)
    net = tiny(scale).eval()
    net.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        ours = net(x)
        ref = reference_forward(state, x * 255., scale, num_block=2) / 255.
    assert ours.shape == (2, 3, 7 * scale, 9 * scale)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_forward_shapes_on_odd_sizes(scale):
    net = tiny(scale)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 5, 11)).shape == (1, 3, 5 * scale, 11 * scale)
        assert net(torch.rand(3, 3, 9, 1)).shape == (3, 3, 9 * scale, scale)


def test_adm_weights_sum_to_one_and_depend_on_the_input():
    torch.manual_seed(0)
    block = tiny(2).AAB_trunk[0]
    for lin in (block.ADM[0], block.ADM[2]):  # larger logits, so the softmax(./30) visibly moves
        torch.nn.init.normal_(lin.weight, std=3.)
    x = torch.randn(4, 8, 6, 6)
    feat = F.leaky_relu(block.conv_first(x), 0.2)
    weights = block.branch_weights(feat)
    assert weights.shape == (4, 2)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    assert (weights > 0).all() and (weights[:, 0] - weights[0, 0]).abs().max() > 1e-3  # per-sample, not constant
    # pooled from the conv_first output, not from the block input: a shifted input changes the weights
    shifted = block.branch_weights(F.leaky_relu(block.conv_first(x + 1.), 0.2))
    assert (shifted - weights).abs().max() > 1e-3


def test_both_branches_and_adm_receive_gradients():
    torch.manual_seed(0)
    net = A2N(num_feat=16, num_up_feat=4, num_block=2, upscale=3)  # 16 channels: 4 ADM hidden units, not all dead
    net(torch.rand(2, 3, 6, 5)).abs().mean().backward()
    names = ('attention.k1.weight', 'attention.k2.weight', 'attention.k3.weight', 'attention.k4.weight',
             'non_attention.weight', 'ADM.0.weight', 'ADM.2.weight')
    for i, block in enumerate(net.AAB_trunk):
        params = dict(block.named_parameters())
        for name in names:
            grad = params[name].grad
            assert grad is not None and grad.abs().sum() > 0, f'AAB_trunk.{i}.{name}'


def test_img_range_scales_input_and_output():
    net255 = tiny(2, img_range=255.).eval()
    net1 = tiny(2, img_range=1.).eval()
    net1.load_state_dict(net255.state_dict())
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(net255(x), net1(x * 255.) / 255., rtol=1e-5, atol=1e-6)
        # with img_range 255 a bias-free change of range is not a no-op: the weights are range-specific
        assert (net255(x) - net1(x)).abs().max() > 1e-4


def test_demo_recipe_few_iterations_reduce_l1(demo_data):
    with open(osp.join(ROOT, 'options', 'demo', 'demo_A2N_x2.yml'), encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    assert opt['network_g']['type'] == 'A2N'
    opt.update(is_train=True, dist=False, num_gpu=0, rank=0, world_size=1)
    opt['path'].update(pretrain_network_g=None, param_key_g=None)
    opt['train'].pop('ema_decay', None)
    model = build_model(copy.deepcopy(opt))

    train_opt = dict(opt['datasets']['train'], phase='train', scale=opt['scale'], gt_size=48)
    for key in ('dataroot_gt', 'dataroot_lq'):
        train_opt[key] = osp.join(demo_data, osp.relpath(train_opt[key], osp.join('datasets', 'demo')))
    from basicsr.data import build_dataset
    dataset = build_dataset(train_opt)
    random.seed(0)  # the dataset crops with `random`
    torch.manual_seed(0)
    items = [dataset[i] for i in range(4)]
    batch = {k: torch.stack([it[k] for it in items]) for k in ('lq', 'gt')}

    def eval_l1():
        model.net_g.eval()
        with torch.no_grad():
            loss = F.l1_loss(model.net_g(batch['lq']), batch['gt']).item()
        model.net_g.train()
        return loss

    before = eval_l1()
    for it in range(1, 21):
        model.feed_data(batch)
        model.optimize_parameters(it)
    after = eval_l1()
    assert after < 0.95 * before, (before, after)
