"""Convert an official SR checkpoint (any layout srplugins recognises) to a BasicSR file ``{'params': ...}``.

The detected family, architecture and hyper-parameters are printed; the output loads with BasicSR's
``path.pretrain_network_g`` (default ``param_key_g: params``) and ``strict_load_g: true`` into the printed
``network_g``, and it records that ``network_g`` under ``srplugins_arch`` so ``srplugins-infer`` needs no hints.

Examples::

    python scripts/convert_checkpoint.py BSRGAN.pth -o experiments/pretrained_models/BSRGAN_basicsr.pth
    python scripts/convert_checkpoint.py BSRGAN.pth BSRGAN_basicsr.pth         # the output may also be positional
    python scripts/convert_checkpoint.py aan_x2.pt A2N_x2.pth                # scale from the "_x2" in the name
    python scripts/convert_checkpoint.py weights.pt A2N_x3.pth --scale 3     # or given explicitly
    python scripts/convert_checkpoint.py DSN/last_iteration.tar D.pth --param_key models_d_state_dict
    python scripts/convert_checkpoint.py any.pth --detect_only
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('input', help='official checkpoint (.pth / .pt / .tar / .ckpt / .safetensors)')
    parser.add_argument('output_pos', nargs='?', metavar='output', help='BasicSR .pth to write (same as -o)')
    parser.add_argument('-o', '--output', help='BasicSR .pth to write (omit with --detect_only)')
    parser.add_argument('--scale', type=int, help='scale where the weights do not fix it (A2N x2 / x3)')
    parser.add_argument(
        '--param_key',
        help='checkpoint entry holding the weights (default: automatic: params_ema, '
        'params, model_g_state_dict, state_dict, ...)')
    parser.add_argument(
        '--filter_type',
        choices=['gau', 'avg_pool', 'wavelet', 'rgb'],
        help='DASR discriminator filter when the file cannot tell (avg_pool vs rgb)')
    parser.add_argument('--d_arch', choices=['fsd', 'nld_s1', 'nld_s2'], help='DASR NLayer discriminator stride')
    parser.add_argument(
        '--unsafe_load',
        action='store_true',
        help='allow pickles with arbitrary objects (torch.load weights_only=False); trusted files only')
    parser.add_argument('--detect_only', action='store_true', help='print what was detected, write nothing')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output_pos is not None and args.output is not None and args.output_pos != args.output:
        parser.error(f'two different outputs: {args.output_pos!r} (positional) and {args.output!r} (-o); give one')
    args.output = args.output or args.output_pos
    return args


def main(argv=None):
    args = parse_args(argv)
    from srplugins.utils.checkpoint import build_network, convert_checkpoint, load_checkpoint
    hints = {k: v for k, v in (('filter_type', args.filter_type), ('d_arch', args.d_arch)) if v is not None}
    try:
        if args.detect_only or not args.output:
            if not args.detect_only:
                build_parser().error('give an output file or --detect_only')
            info = load_checkpoint(
                args.input, scale=args.scale, param_key=args.param_key, unsafe=args.unsafe_load, **hints)
            build_network(info, strict=True)
        else:
            info = convert_checkpoint(
                args.input, args.output, scale=args.scale, param_key=args.param_key, unsafe=args.unsafe_load, **hints)
    except (ValueError, FileNotFoundError) as err:
        print(f'convert_checkpoint: error: {err}', file=sys.stderr)
        return 2
    print(info.summary())
    print('strict load: ok')
    print('network_g:')
    print(f'  type: {info.arch_type}')
    for key, value in info.arch_opt.items():
        print(f'  {key}: {value}')
    if not args.detect_only:
        print(f'wrote {args.output} (param_key_g: params)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
