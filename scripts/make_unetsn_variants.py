"""Write (or check) the ``*_unetsn.yml`` twin of every SRGAN / BSRGAN / DASR GAN recipe.

A twin is its base option file with ``network_d`` replaced by the U-Net discriminator with spectral norm
(``UNetSNDiscriminator``, same ``num_in_ch``, ``num_feat: 64``, skips on), ``_unetsn`` appended to ``name`` and the
file name updated in the comments; every other line is copied. DASR's DSN stage and recipes that already use the
U-Net are skipped. ``tests/test_unet_sn_arch.py`` checks that every twin matches its base.

    python scripts/make_unetsn_variants.py            # (re)write the twins
    python scripts/make_unetsn_variants.py --check    # exit 1 if a twin is missing or out of date
"""
import argparse
import glob
import os.path as osp
import re
import sys
import textwrap
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
METHODS = ('SRGAN', 'BSRGAN', 'DASR')


def base_recipes(options_root):
    """GAN recipes of ``METHODS`` whose discriminator is not already the U-Net (DASR DSN stage excluded)."""
    recipes = []
    for method in METHODS:
        for path in sorted(glob.glob(osp.join(options_root, method, 'train_*.yml'))):
            if path.endswith('_unetsn.yml') or '_DSN_' in path:
                continue
            with open(path, encoding='utf-8') as f:
                opt = yaml.safe_load(f)
            if 'network_d' in opt and opt['network_d'].get('type') != 'UNetSNDiscriminator':
                recipes.append(path)
    return recipes


def variant_text(base_path):
    """Text of the ``*_unetsn.yml`` twin of ``base_path``."""
    with open(base_path, encoding='utf-8') as f:
        text = f.read()
    opt = yaml.safe_load(text)
    old_d, gan = opt['network_d'], opt['train']['gan_opt']
    base_name = osp.basename(base_path)
    twin_name = base_name[:-4] + '_unetsn.yml'
    lines = text.split('\n')
    start = next(i for i, line in enumerate(lines) if line.startswith('network_d:'))
    end = start + 1
    while end < len(lines) and lines[end].startswith((' ', '#')):
        end += 1
    lines[start:end] = [
        'network_d:  # Real-ESRGAN U-Net discriminator with spectral norm: one logit per pixel',
        '  type: UNetSNDiscriminator', f'  num_in_ch: {old_d["num_in_ch"]}', '  num_feat: 64', '  skip_connection: true'
    ]
    body = '\n'.join(lines).replace(base_name, twin_name)
    body = re.sub(r'^name: (.*)$', lambda m: f'name: {m.group(1)}_unetsn', body, count=1, flags=re.M)
    body = body.replace('# must equal network_d.input_size', '# a multiple of 8 for the U-Net discriminator')
    intro = (f'Variant of {base_name} with the U-Net discriminator with spectral norm (UNetSNDiscriminator, '
             f'Real-ESRGAN Sec. 4.2) in place of {old_d["type"]}; every other setting is copied from {base_name}. '
             f'The GAN loss is unchanged ({gan["gan_type"]}, weight {gan["loss_weight"]}) and now averages over the '
             f'per-pixel logit map. Sides fed to the discriminator must be multiples of 8. See docs/RealESRGAN.md.')
    header = '\n'.join('# ' + line for line in textwrap.wrap(intro, 116, break_on_hyphens=False)) + '\n'
    return twin_name, header + body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--options',
        default=osp.join(REPO, 'srplugins', 'recipes', 'train'),
        help='folder of training recipes (default: srplugins/recipes/train, which options/train links to)')
    parser.add_argument('--check', action='store_true', help='only report missing or outdated twins (exit 1)')
    args = parser.parse_args(argv)
    stale = []
    for base in base_recipes(args.options):
        twin_name, text = variant_text(base)
        twin = osp.join(osp.dirname(base), twin_name)
        current = open(twin, encoding='utf-8').read() if osp.isfile(twin) else None
        if current == text:
            continue
        stale.append(twin)
        if not args.check:
            from srplugins.utils.atomic import atomic_write
            with atomic_write(twin, 'w') as f:
                f.write(text)
            print(f'wrote {osp.relpath(twin, REPO)}')
    if args.check and stale:
        print('missing or outdated: ' + ', '.join(osp.relpath(p, REPO) for p in stale))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
