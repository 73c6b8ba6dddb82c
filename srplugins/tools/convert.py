"""``srplugins-convert``: convert a checkpoint (any layout srplugins recognises) to a BasicSR file ``{'params': ...}``.

The detected family, architecture and hyper-parameters are printed; the output loads with BasicSR's
``path.pretrain_network_g`` (``param_key_g: params``, ``strict_load_g: true``) into the printed ``network_g`` block
(``network_d`` for a discriminator, loaded with ``path.pretrain_network_d``), and records that block under
``network_opt`` so ``srplugins-infer`` needs no hints for it.

Examples::

    srplugins-convert BSRGAN.pth -o experiments/pretrained_models/BSRGAN_basicsr.pth
    srplugins-convert aan_x2.pt A2N_x2.pth                 # scale from the "_x2" in the name
    srplugins-convert weights.pt A2N_x3.pth --scale 3      # or given explicitly
    srplugins-convert DSN/last_iteration.tar D.pth --purpose discriminator
    srplugins-convert any.pth --detect_only
"""
import argparse
import sys

PROG = 'srplugins-convert'


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('input', help='checkpoint (.pth / .pt / .tar / .ckpt / .safetensors)')
    parser.add_argument('output_pos', nargs='?', metavar='output', help='BasicSR .pth to write (same as -o)')
    parser.add_argument('-o', '--output', help='BasicSR .pth to write (omit with --detect_only)')
    parser.add_argument('--scale', type=int, help='scale where the weights do not fix it (A2N x2 / x3)')
    parser.add_argument(
        '--param_key',
        help='checkpoint entry holding the weights (default: automatic: params_ema, params, model_g_state_dict, ...)')
    parser.add_argument(
        '--purpose',
        choices=['sr', 'downsampler', 'discriminator'],
        help='network to take from a file holding several (DSN: discriminator = models_d_state_dict / params_d)')
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
    if not args.detect_only and not args.output:
        parser.error('give an output file or --detect_only')
    return args


def print_info(info):
    """The summary and the option-file block (``network_g``, or ``network_d`` for a discriminator)."""
    print(info.summary())
    print('strict load: ok')
    print(f'{info.option_block}:')
    print(f'  type: {info.arch_type}')
    for key, value in info.arch_opt.items():
        print(f'  {key}: {value}')


def main(argv=None):
    """Entry point of ``srplugins-convert`` and ``scripts/convert_checkpoint.py``. Returns the exit code."""
    args = parse_args(argv)
    from srplugins import checkpoints
    hints = {k: v for k, v in (('filter_type', args.filter_type), ('d_arch', args.d_arch)) if v is not None}
    common = dict(scale=args.scale, param_key=args.param_key, purpose=args.purpose, unsafe_load=args.unsafe_load)
    try:
        if args.detect_only:
            _, info = checkpoints.build_network(args.input, option='input', **common, **hints)
        else:
            info = checkpoints.convert(args.input, args.output, **common, **hints)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    print_info(info)
    if not args.detect_only:
        key = 'pretrain_network_d' if info.purpose == 'discriminator' else 'pretrain_network_g'
        print(f'wrote {args.output} (path.{key}, param_key: params)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
