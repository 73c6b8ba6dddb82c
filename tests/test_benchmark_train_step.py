"""``scripts/benchmark.py train-step`` on a tiny recipe: every variant row (basicsr baseline, ours fp32 / bf16 with and
without channels_last) is printed with a finite step time and no non-finite losses."""
import re

from tests.conftest import load_script, write_option

RECIPE = {
    'name': 'tiny_gan',
    'model_type': 'SRGANModel',
    'scale': 2,
    'num_gpu': 0,
    'datasets': {
        'train': {
            'gt_size': 32,
            'batch_size_per_gpu': 2
        }
    },
    'network_g': {
        'type': 'MSRResNet',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 8,
        'num_block': 1,
        'upscale': 2
    },
    'network_d': {
        'type': 'UNetSNDiscriminator',
        'num_in_ch': 3,
        'num_feat': 8
    },
    'path': {},
    'train': {
        'optim_g': {
            'type': 'Adam',
            'lr': 1e-4
        },
        'optim_d': {
            'type': 'Adam',
            'lr': 1e-4
        },
        'scheduler': {
            'type': 'MultiStepLR',
            'milestones': [100],
            'gamma': 0.5
        },
        'pixel_opt': {
            'type': 'L1Loss',
            'loss_weight': 1.0
        },
        'gan_opt': {
            'type': 'GANLoss',
            'gan_type': 'vanilla',
            'loss_weight': 0.1
        },
    },
}


def test_train_step_rows(tmp_path, capsys):
    benchmark = load_script('benchmark')
    opt_path = write_option(RECIPE, tmp_path)
    assert benchmark.main(['train-step', '--opt', opt_path, '--iters', '1', '--warmup', '0', '--amp', 'off,bf16']) == 0
    out = capsys.readouterr().out
    labels = [
        'basicsr SRGANModel fp32', 'ours SRGANPlusModel fp32', 'ours SRGANPlusModel fp32 channels_last',
        'ours SRGANPlusModel bf16', 'ours SRGANPlusModel bf16 channels_last'
    ]
    for label in labels:
        assert re.search(re.escape(label) + r' +[\d.]+ ms/step +[\d.]+ it/s +x *[\d.]+ vs basicsr\n', out), out
    assert 'NON-FINITE' not in out
