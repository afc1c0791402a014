"""The ``optnets`` command: ``plan`` a rule, list ``models``, ``train`` a recipe, ``export`` weights."""
import argparse
import fnmatch
import sys

import timm

from . import rules
from .compiler import compile_rule
from .models import FAMILIES
from .rules import Rule, RuleError
from .weights.registry import WeightsError


def _plan(args):
    rule = rules.BUILTIN.get(args.rule) or Rule.parse(args.rule)
    print(compile_rule(rule))


def _models(args):
    for name in timm.list_models(args.pattern, module=list(FAMILIES)):
        model = timm.create_model(name, device='meta')
        params = sum(p.numel() for p in model.parameters())
        coeffs = sum(p.numel() for _, p in model.named_coefficients())
        print(f'{name:20} {params / 1e6:8.3f}M parameters, {coeffs} of them coefficients')


def _weights(args):
    from .weights import registry
    tags = [t for t in registry.MANIFEST if fnmatch.fnmatch(t, args.tag or '*')]
    if not tags:
        raise registry.WeightsError(f'no published weights match {args.tag!r}: `optnets weights list` shows them')
    for tag in tags:
        entry = registry.MANIFEST[tag]
        source = entry['source'].get('hub') or 'shipped with optnets'
        if args.action == 'list':
            size = f'{entry["size"] / 1e6:.1f} MB' if entry.get('size') else 'size unknown'
            print(f'{tag:24} {source:28} {size:>13}  {registry.status(tag)}')
        elif args.action == 'download':
            print(f'{tag}: {registry.verified_file(tag)} (sha256 verified)')
        else:
            print(f'{tag:24} {registry.status(tag)}')


def _publish(args):
    from .weights.hub import publish
    print(f'published {args.directory} to {args.repo}: {publish(args.directory, args.repo, args.private)}')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['train']:  # sys.argv is left as it is: DDP's launcher starts each process with it again
        from optnets.recipes.train import cli_main
        cli_main(argv[1:])
        return 0
    if argv[:1] == ['export']:
        from .weights.export import main as export_main
        try:
            export_main(argv[1:])
        except (ValueError, OSError, RuntimeError, KeyError) as error:
            sys.exit(f'optnets export: {error}')
        return 0
    parser = argparse.ArgumentParser(prog='optnets', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    plan = sub.add_parser('plan', help='print the compiled plan of a built-in rule or of rule text')
    plan.add_argument('rule', help=f'one of {", ".join(rules.BUILTIN)} or rule text')
    plan.set_defaults(run=_plan)
    models = sub.add_parser('models', help='list the registered optnets models with their sizes')
    models.add_argument('pattern', nargs='?', default='')
    models.set_defaults(run=_models)
    weights = sub.add_parser('weights', help='published weights: list, download (verified) or verify their hashes')
    weights.add_argument('action', choices=['list', 'download', 'verify'])
    weights.add_argument('tag', nargs='?', help='a tag such as hb_net_20_cifar.fmnist, or a pattern (default: all)')
    weights.set_defaults(run=_weights)
    sub.add_parser('train', help='train with a Lightning recipe: optnets train fit --config CONFIG.yaml')
    sub.add_parser('export', help='write a training checkpoint as timm-loadable safetensors: optnets export CKPT OUT, '
                                  'or a hub folder: optnets export CKPT --hub-dir DIR')
    publish = sub.add_parser('publish', help='upload a hub folder made by optnets export --hub-dir')
    publish.add_argument('directory')
    publish.add_argument('--repo', required=True, help='the hub repository, USER/NAME')
    publish.add_argument('--private', action='store_true')
    publish.set_defaults(run=_publish)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (RuleError, WeightsError, OSError) as error:
        parser.exit(2, f'optnets: {error}\n')


if __name__ == '__main__':
    main()
