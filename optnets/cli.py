"""The ``optnets`` command: ``plan`` a rule, list ``models`` or one model's ``info``, ``train`` a recipe, ``export``,
``publish`` and fetch ``weights``."""
import argparse
import fnmatch
import sys

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import __version__, rules
from .compiler import CompiledStage, compile_rule
from .models import FAMILIES
from .rules import Rule, RuleError
from .weights.registry import WeightsError


def _plan(args):
    rule = rules.BUILTIN.get(args.rule) or Rule.parse(args.rule)
    print(compile_rule(rule))


def facts(name: str) -> dict:
    """What the model tables say of a registered name: sizes (built on the meta device: nothing is allocated),
    GMACs at its input size by torch's FLOP counter, its stages and its published tags."""
    model = timm.create_model(name, device='meta')
    size = tuple(model.pretrained_cfg['input_size'])
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *size, device='meta'))
    stages = [m for m in model.modules() if isinstance(m, CompiledStage)]
    arch = name.split('.')[0]
    return dict(model=model, input_size=size, gmacs=counter.get_total_flops() / 2e9, stages=stages,
                params=sum(p.numel() for p in model.parameters()),
                coefficients=sum(p.numel() for _, p in model.named_coefficients()),
                tags=[t.split('.', 1)[1] for t in timm.list_pretrained(f'{arch}.*')])


def _models(args):
    names = timm.list_models(args.pattern or '*', module=list(FAMILIES))
    if not names:
        raise LookupError(f'no optnets model matches {args.pattern!r}: `optnets models` lists them all')
    print(f'{"model":22} {"params (M)":>10} {"GMACs":>7} {"input":>11} {"coefficients":>12}  pretrained tags')
    for name in names:
        f = facts(name)
        print(f'{name:22} {f["params"] / 1e6:10.3f} {f["gmacs"]:7.3f} {"x".join(map(str, f["input_size"])):>11} '
              f'{f["coefficients"]:12d}  {", ".join(f["tags"]) or "-"}')


def _info(args):
    arch, _, tag = args.name.partition('.')
    if arch not in timm.list_models(module=list(FAMILIES)) or tag and args.name not in timm.list_pretrained(arch):
        raise LookupError(f'{args.name!r} is not an optnets model: `optnets models` lists them')
    f = facts(args.name)
    plan = f['stages'][0].plan
    print(f'{args.name}: {f["params"] / 1e6:.3f}M parameters ({f["coefficients"]} of them coefficients), '
          f'{f["gmacs"]:.3f} GMACs at {"x".join(map(str, f["input_size"]))}')
    print(f'stages: {", ".join(f"{s.steps} steps of width {s.width}" for s in f["stages"])}')
    print(f'pretrained tags: {", ".join(f["tags"]) or "none"}')
    print(plan)


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
            _fail('optnets export', error)
        return 0
    parser = argparse.ArgumentParser(prog='optnets', description=__doc__)
    parser.add_argument('--version', action='version', version=f'optnets {__version__}')
    sub = parser.add_subparsers(dest='command', required=True)
    plan = sub.add_parser('plan', help='print the compiled plan of a built-in rule or of rule text')
    plan.add_argument('rule', help=f'one of {", ".join(rules.BUILTIN)} or rule text')
    plan.set_defaults(run=_plan)
    models = sub.add_parser('models', help='a table of the optnets models: parameters, GMACs, coefficients, tags')
    models.add_argument('pattern', nargs='?', default='', help="a name pattern such as 'hb_net*'")
    models.set_defaults(run=_models)
    info = sub.add_parser('info', help="one model: its rule and reading, plan, stages, parameters, GMACs and tags")
    info.add_argument('name')
    info.set_defaults(run=_info)
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
    except (RuleError, WeightsError, LookupError, OSError, ValueError) as error:
        _fail('optnets', error)


def _fail(prog: str, error: Exception):
    """One line on stderr (a RuleError keeps its caret lines), exit 2."""
    message = str(error) if isinstance(error, RuleError) else (str(error).strip().splitlines() or [''])[0]
    print(f'{prog}: {message or type(error).__name__}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
    main()
