"""``val.distributed: true`` on a 2-process gloo CPU group: each rank validates its share (an uneven split of 5
images) and the all-reduced metrics equal basicsr's own rank-0 ``SRModel`` validation to 1e-6."""
import copy
import json
import os.path as osp
import pytest
import torch
import torch.multiprocessing as mp

from tests.test_entry_points import _tiny_paired_data, _tiny_paired_dataset

NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}


def _opt(data, tmp, model_type, dist=False, rank=0, world_size=1):
    return {
        'name': 'dist_val',
        'model_type': model_type,
        'scale': 2,
        'num_gpu': 0,
        'is_train': False,
        'dist': dist,
        'rank': rank,
        'world_size': world_size,
        'network_g': copy.deepcopy(NET),
        'path': {
            'pretrain_network_g': None,
            'visualization': osp.join(tmp, 'vis')
        },
        'val': {
            'distributed': True,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2,
                    'test_y_channel': True
                },
                'ssim': {
                    'type': 'calculate_ssim',
                    'crop_border': 2,
                    'test_y_channel': False
                }
            }
        },
        'datasets': {
            'val': _tiny_paired_dataset(data, name='tiny_val', phase='val', scale=2)
        },
    }


def _validate(opt):
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    torch.manual_seed(0)
    model = build_model(opt)
    loader = build_dataloader(build_dataset(opt['datasets']['val']), opt['datasets']['val'], num_gpu=0, dist=False)
    model.validation(loader, current_iter=1, tb_logger=None, save_img=False)
    return {k: float(v) for k, v in model.metric_results.items()}


def _worker(rank, data, tmp, world_size):
    import srplugins  # noqa: F401  (stack fixes: DDP wrapper on CPU)
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method='file://' + osp.join(tmp, 'rendezvous'), rank=rank, world_size=world_size)
    try:
        results = _validate(_opt(data, tmp, 'SRPlusModel', dist=True, rank=rank, world_size=world_size))
        with open(osp.join(tmp, f'rank{rank}.json'), 'w') as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_validation_equals_rank0(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('CPU distributed test')
    data = _tiny_paired_data(str(tmp_path / 'data'), num=5)
    tmp = str(tmp_path)
    mp.start_processes(_worker, args=(data, tmp, 2), nprocs=2, join=True, start_method='spawn')
    ranks = []
    for rank in range(2):
        with open(osp.join(tmp, f'rank{rank}.json')) as f:
            ranks.append(json.load(f))
    reference = _validate(_opt(data, tmp, 'SRModel'))  # basicsr's own validation, one process
    assert set(reference) == {'psnr', 'ssim'}
    for results in ranks:
        for name, value in reference.items():
            assert abs(results[name] - value) <= 1e-6, (name, results[name], value)
