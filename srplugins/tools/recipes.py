"""``srplugins-recipes``: the option files shipped inside the package (``srplugins/recipes/{demo,train,test}``).

``list [PATTERN]`` prints every recipe (name, folder, one-line description taken from the file's first comment);
``copy NAME [DIR]`` writes ``NAME.yml`` into ``DIR`` (default: the current folder), ready to edit and to run with
``srplugins-train -opt NAME.yml``. Relative paths in the recipes (``datasets/...``, ``experiments/...``) resolve
against the folder the command is run from, where ``srplugins-data demo`` writes ``datasets/demo``.
"""
import argparse
import fnmatch
import os
import os.path as osp
import re
import sys

from srplugins.tools._cli import HelpFormatter
from srplugins.utils.atomic import atomic_write

RECIPES_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'recipes')


def all_recipes(root=RECIPES_DIR):
    """``{name: path}`` of every ``*.yml`` under ``root`` (name = file stem; stems are unique across folders)."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith('.yml'):
                name = f[:-4]
                if name in found:
                    raise RuntimeError(f'recipe name {name!r} is used twice: {found[name]} and {osp.join(dirpath, f)}')
                found[name] = osp.join(dirpath, f)
    return dict(sorted(found.items(), key=lambda kv: (osp.relpath(kv[1], root), kv[0])))


def describe(path, width=100):
    """One-line description of an option file: the first sentence of its leading comment (up to a command line or the
    first non-comment line), shortened to ``width`` characters."""
    words = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            if not line.startswith('#') or line.startswith('#  '):
                break
            words.append(line[1:].strip())
    text = ' '.join(w for w in words if w)
    if not text:
        raise ValueError(f'{path}: the recipe has no leading "# description" comment')
    # a sentence ends at ". " before a capital letter, not after "et al." / "e.g." / "i.e." / "Sec."
    end = re.search(r'(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bSec)\.\s+(?=[A-Z])', text)
    sentence = text if end is None else text[:end.start() + 1]
    if len(sentence) > width:
        sentence = sentence[:width - 3].rsplit(' ', 1)[0] + '...'
    return sentence


def find_recipe(name):
    """Path of the recipe ``name`` (stem, ``stem.yml`` or ``folder/.../stem``), or a ValueError listing close names."""
    recipes = all_recipes()
    stem = osp.splitext(osp.basename(name))[0]
    if stem in recipes:
        return recipes[stem]
    close = [n for n in recipes if stem.lower() in n.lower()] or list(recipes)[:10]
    raise ValueError(f'no recipe named {name!r}; did you mean one of: {", ".join(close)}? '
                     '(srplugins-recipes list shows them all)')


def copy_recipe(name, folder='.', force=False):
    """Write the recipe ``name`` as ``folder/<stem>.yml`` (folder created); an existing file is kept unless
    ``force``. Returns the written path."""
    src = find_recipe(name)
    os.makedirs(folder, exist_ok=True)
    dst = osp.normpath(osp.join(folder, osp.basename(src)))
    if osp.exists(dst) and not force:
        raise FileExistsError(f'{dst} already exists; use --force to overwrite it')
    with open(src, encoding='utf-8') as f:
        text = f.read()
    with atomic_write(dst, 'w') as f:
        f.write(text)
    return dst


def build_parser():
    parser = argparse.ArgumentParser(
        prog='srplugins-recipes',
        description='The option files (recipes) shipped with srplugins: list them, copy one to edit and train.',
        formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    lister = sub.add_parser('list', help='every recipe with a one-line description', formatter_class=HelpFormatter)
    lister.add_argument('pattern', nargs='?', help='only names matching this shell pattern, e.g. "*A2N*"')
    copier = sub.add_parser('copy', help='write a recipe into a folder', formatter_class=HelpFormatter)
    copier.add_argument('name', help='recipe name as "list" shows it, e.g. demo_A2N_x2')
    copier.add_argument('dir', nargs='?', default='.', help='destination folder (default: the current folder)')
    copier.add_argument('--force', action='store_true', help='overwrite an existing file')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'list':
            recipes = all_recipes()
            shown = {n: p for n, p in recipes.items() if not args.pattern or fnmatch.fnmatch(n, args.pattern)}
            width = max((len(n) for n in shown), default=0)
            group = None
            for name, path in shown.items():
                folder = osp.dirname(osp.relpath(path, RECIPES_DIR)).replace(os.sep, '/')
                if folder != group:
                    print(f'{folder}/')
                    group = folder
                print(f'  {name:<{width}}  {describe(path)}')
            if not shown:
                print(f'no recipe matches {args.pattern!r}', file=sys.stderr)
                return 1
        else:
            dst = copy_recipe(args.name, args.dir, args.force)
            print(f'wrote {dst}; run it with: srplugins-train -opt {dst}')
    except (ValueError, FileExistsError) as err:
        print(f'srplugins-recipes {args.command}: error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
