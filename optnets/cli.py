"""The ``optnets`` command: ``plan`` a rule, list ``models`` or one model's ``info``, ``train`` a recipe, ``export``,
``publish`` and fetch ``weights``, run one of ``timm``'s scripts on optnets models."""

import argparse
import ast
import fnmatch
import sys

import timm
from torch import nn

from . import __version__, rules
from .compiler import CompiledStage, compile_rule
from .compiler.lower import Program
from .models import FAMILIES, family_of
from .models.facts import facts
from .extras import MissingExtra
from .rules import Rule, RuleError
from .search import DEFAULT_STORAGE
from .weights.registry import WeightsError


def _plan(args):
    print(program_of(rules.BUILTIN.get(args.rule) or Rule.parse(args.rule), args.steps, not args.fixed, args.init))


def program_of(rule: Rule, steps: int, learn_coeffs: bool, coeff_init: str) -> Program:
    """The program a stage of ``rule`` runs with these settings: the stage itself is compiled (with identity
    transforms, which are never called), so what prints is what runs."""
    stage = CompiledStage(
        compile_rule(rule), steps, lambda *_: nn.Identity(), 1, learn_coeffs=learn_coeffs, coeff_init=coeff_init
    )
    return stage.program


def _models(args):
    names = timm.list_models(args.pattern or '*', module=list(FAMILIES))
    if not names:
        raise LookupError(f'no optnets model matches {args.pattern!r}: `optnets models` lists them all')
    print(models_table(names) if args.format == 'markdown' else models_text(names))


def models_text(names: list[str]) -> str:
    lines = [f'{"model":22} {"params (M)":>10} {"GMACs":>7} {"input":>11} {"coefficients":>12}  pretrained tags']
    for name in names:
        f = facts(name)
        size, tags = 'x'.join(map(str, f['input_size'])), ', '.join(f['tags']) or '-'
        lines.append(
            f'{name:22} {f["params"] / 1e6:10.3f} {f["gmacs"]:7.3f} {size:>11} {f["coefficients"]:12d}  {tags}'
        )
    return '\n'.join(lines)


def models_table(names: list[str]) -> str:
    """The zoo as a Markdown table: the README's and the docs' (a test keeps them equal to this)."""
    lines = [
        '| model | family | params (M) | GMACs | input | coefficients | pretrained tags |',
        '|---|---|---|---|---|---|---|',
    ]
    for name in names:
        f = facts(name)
        tags = ', '.join(f'`{t}`' for t in f['tags']) or '-'
        lines.append(
            f'| `{name}` | {family_of(name)} | {f["params"] / 1e6:.3f} | {f["gmacs"]:.3f} | '
            f'{"x".join(map(str, f["input_size"]))} | {f["coefficients"]} | {tags} |'
        )
    return '\n'.join(lines)


def _info(args):
    arch, _, tag = args.name.partition('.')
    if arch not in timm.list_models(module=list(FAMILIES)) or tag and args.name not in timm.list_pretrained(arch):
        raise LookupError(f'{args.name!r} is not an optnets model: `optnets models` lists them')
    f = facts(args.name)
    program = f['stages'][0].program
    print(
        f'{args.name}: {f["params"] / 1e6:.3f}M parameters ({f["coefficients"]} of them coefficients), '
        f'{f["gmacs"]:.3f} GMACs at {"x".join(map(str, f["input_size"]))}'
    )
    print(f'stages: {", ".join(f"{s.steps} steps of width {s.width}" for s in f["stages"])}')
    print(f'pretrained tags: {", ".join(f["tags"]) or "none"}')
    print(f'first stage: {program}')


def _weights(args):
    from .weights import registry

    tags = [t for t in registry.MANIFEST if fnmatch.fnmatch(t, args.tag or '*')]
    if not tags:
        raise registry.WeightsError(f'no published weights match {args.tag!r}: `optnets weights list` shows them')
    mismatched = []  # verify: the tags whose file does not match
    for tag in tags:
        entry = registry.MANIFEST[tag]
        source = entry['source'].get('hub') or 'shipped with optnets'
        if args.action == 'list':
            size = f'{entry["size"] / 1e6:.1f} MB' if entry.get('size') else 'size unknown'
            print(f'{tag:24} {source:28} {size:>13}  {registry.status(tag)}')
        elif args.action == 'download':  # loaded into its model: verified, and pinned where no hash is known
            timm.create_model(tag, pretrained=True)
            print(f'{tag}: {registry.verified_file(tag)} ({registry.status(tag)})')
        else:
            state = registry.status(tag)
            print(f'{tag:24} {state}')
            mismatched += [tag] if state.startswith('MISMATCH') else []
    if mismatched:
        raise registry.WeightsError(f'{len(mismatched)} of {len(tags)} files do not match: {", ".join(mismatched)}')


def _publish(args):
    from .weights.hub import publish

    print(f'published {args.directory} to {args.repo}: {publish(args.directory, args.repo, args.private)}')


def _export(args):
    if args.hub_dir and args.out:
        raise ValueError(f'give OUT ({args.out}) or --hub-dir ({args.hub_dir}), not both (nothing was written)')
    if args.hub_dir:
        from .weights.hub import hub_folder

        model_args = hub_folder(args.checkpoint, args.hub_dir, args.card)
        print(
            f'wrote {args.hub_dir} (model args {model_args})\n'
            f'load it: timm.create_model("local-dir:{args.hub_dir}", pretrained=True); '
            f'upload it: optnets publish {args.hub_dir} --repo USER/NAME'
        )
        return
    if not args.out:
        raise ValueError('give OUT (a .safetensors file) or --hub-dir DIR')
    from .weights.export import export_checkpoint

    metadata = export_checkpoint(args.checkpoint, args.out, overwrite=args.force)
    model = metadata.get('model', 'MODEL')
    kwargs = metadata.get('model_kwargs')
    extra = ''.join(f', {k}={v!r}' for k, v in (ast.literal_eval(kwargs) or {}).items()) if kwargs else ''
    print(
        f'wrote {args.out} ({", ".join(f"{k}={v}" for k, v in metadata.items())})\n'
        f'load it: timm.create_model("{model}", pretrained=True, num_classes={metadata.get("num_classes", "N")}, '
        f'in_chans={metadata.get("in_chans", 3)}{extra}, pretrained_cfg_overlay=dict(file="{args.out}"))'
    )


def _train(args, rest):
    try:
        from optnets.recipes.train import cli_main
    except MissingExtra as error:
        _fail('optnets train', error)
    cli_main(rest)


def _timm(args, rest):
    from .timm_scripts import run

    if not rest:
        _fail('optnets timm', ValueError("give one of timm's scripts: optnets timm validate.py [ARGS...]"))
    try:
        run(rest[0], rest[1:])
    except FileNotFoundError as error:
        _fail('optnets timm', error)


SEARCH_ACTIONS = ('run', 'show', 'export')


def _search(args, rest):
    try:
        from optnets.recipes.search import main as search_main
    except MissingExtra as error:
        _fail('optnets search', error)
    try:
        search_main(args, rest)
    except (LookupError, OSError, ValueError, KeyError) as error:
        _fail('optnets search', error)


def parser() -> argparse.ArgumentParser:
    """Every subcommand and its arguments; ``train`` hands the rest of the line to LightningCLI."""
    root = argparse.ArgumentParser(prog='optnets', description=__doc__.replace('``', ''))  # plain text, not reST
    root.add_argument('--version', action='version', version=f'optnets {__version__}')
    sub = root.add_subparsers(dest='command', required=True)
    plan = sub.add_parser(
        'plan', help='print the plan of a built-in rule or of rule text, and the program a stage of it runs'
    )
    plan.add_argument('rule', help=f'one of {", ".join(rules.BUILTIN)} or rule text')
    plan.add_argument('--steps', type=int, default=3, help="the stage's steps (default: 3)")
    plan.add_argument('--fixed', action='store_true', help='fixed coefficients, folded into the program as numbers')
    plan.add_argument('--init', default='special', help="the coefficients' initialisation (default: special)")
    plan.set_defaults(run=_plan)
    models = sub.add_parser('models', help='a table of the optnets models: parameters, GMACs, coefficients, tags')
    models.add_argument('pattern', nargs='?', default='', help="a name pattern such as 'hb_net*'")
    models.add_argument('--format', choices=['text', 'markdown'], default='text', help="markdown: the docs' table")
    models.set_defaults(run=_models)
    info = sub.add_parser('info', help='one model: its rule and reading, plan, stages, parameters, GMACs and tags')
    info.add_argument('name')
    info.set_defaults(run=_info)
    weights = sub.add_parser('weights', help='published weights: list, download (verified) or verify their hashes')
    weights.add_argument('action', choices=['list', 'download', 'verify'])
    weights.add_argument('tag', nargs='?', help='a tag such as hb_net_20_cifar.fmnist, or a pattern (default: all)')
    weights.set_defaults(run=_weights)
    train = sub.add_parser(
        'train',
        add_help=False,
        help='train with a Lightning recipe: optnets train fit --config '
        "CONFIG (optnets train --help: LightningCLI's help)",
    )
    train.set_defaults(run=_train)
    timm_script = sub.add_parser(
        'timm',
        add_help=False,
        help="run one of timm's scripts on optnets models: optnets timm validate.py FOLDER --model "
        'hb_net_20_cifar.fmnist --pretrained --in-chans 1 (train.py and benchmark.py alike)',
    )
    timm_script.set_defaults(run=_timm)
    search = sub.add_parser(
        'search',
        help='search over update rules on Optuna, each trial trained by a recipe: '
        'optnets search [run|show|export] (run by default)',
    )
    actions = search.add_subparsers(dest='action', required=True)
    run = actions.add_parser(
        'run',
        help='run, resume or join the study (other options pass to each trial, as to '
        'optnets train fit: --data.*, --trainer.*, --model.*)',
    )
    show = actions.add_parser('show', help='the leaderboard: every trial, best validation accuracy first')
    export = actions.add_parser('export', help='the best rules as optnets.register lines and recipe model configs')
    for action in (run, show, export):
        action.add_argument(
            '--storage',
            default=DEFAULT_STORAGE,
            help='an Optuna storage: sqlite:///FILE (default), postgresql://..., or journal:PATH',
        )
        action.add_argument('--study', default='rules', help='the study name in that storage')
        action.set_defaults(run=_search)
    run.add_argument('--config', default='search_fashion_mnist', help='the recipe config each trial trains with')
    run.add_argument('--trials', type=int, default=60, help='finished (complete or pruned) trials to reach')
    run.add_argument('--seed', type=int, default=0, help="the sampler's seed")
    run.add_argument('--sampler', choices=('tpe', 'random'), default='tpe', help="Optuna's sampler")
    run.add_argument(
        '--builtins',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='enqueue the built-in algorithms as the first trials (a new study only)',
    )
    run.add_argument('--root-dir', default='runs/search', help='trial logs and checkpoints: ROOT/trial_<n>')
    run.add_argument('--window', type=int, default=3, help='the longest history a rule reads (m)')
    run.add_argument(
        '--pareto',
        action='store_true',
        help='accuracy against GMACs: a multi-objective study of their Pareto front (no pruning)',
    )
    run.add_argument(
        '--depths', type=int, nargs='+', default=(), help='the depths searched (ResNet 6n+2, 20 among them)'
    )
    run.add_argument(
        '--width-scales',
        type=float,
        nargs='+',
        default=(1.0,),
        help="scales of the skeleton's widths searched (1 among them)",
    )
    run.add_argument(
        '--progress',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='a progress bar over trials (default: on a terminal)',
    )
    export.add_argument('--top', type=int, default=3, help='how many of the best rules')
    export.add_argument('--out', default='searched', help='the folder to write them into (new files only)')
    export = sub.add_parser(
        'export', help='write a training checkpoint as timm-loadable safetensors, or a Hugging Face hub folder'
    )
    export.add_argument('checkpoint', help='a .ckpt written by `optnets train`')
    export.add_argument('out', nargs='?', help='the .safetensors file to write')
    export.add_argument(
        '--hub-dir',
        help='instead, write a Hugging Face hub folder (timm config, card, run config) into this new or empty folder',
    )
    export.add_argument('--card', help='with --hub-dir: the model card to include as README.md')
    export.add_argument('--force', action='store_true', help='replace OUT if it exists (by default it is refused)')
    export.set_defaults(run=_export)
    publish = sub.add_parser('publish', help='upload a hub folder made by optnets export --hub-dir')
    publish.add_argument('directory')
    publish.add_argument('--repo', required=True, help='the hub repository, USER/NAME')
    publish.add_argument('--private', action='store_true')
    publish.set_defaults(run=_publish)
    return root


def main(argv: list[str] | None = None) -> int:
    """``optnets``: one dispatcher. ``sys.argv`` is left as it is: DDP's launcher starts each process with it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (
        argv[:1] == ['search']
        and (argv[1:2] == [] or argv[1] not in SEARCH_ACTIONS)
        and '-h' not in argv[1:2]
        and '--help' not in argv[1:2]
    ):
        argv.insert(1, 'run')  # `optnets search --trials 60`: run is the default action
    args, rest = parser().parse_known_args(argv)
    if args.command == 'train':
        _train(args, rest)
        return 0
    if args.command == 'timm':
        _timm(args, rest)
        return 0
    if args.command == 'search':
        _search(args, rest)
        return 0
    if rest:
        parser().error(f'unrecognized arguments: {" ".join(rest)}')
    try:
        args.run(args)
    except (RuleError, WeightsError, LookupError, OSError, ValueError, RuntimeError, KeyError) as error:
        _fail(f'optnets {args.command}' if args.command == 'export' else 'optnets', error)
    return 0


def _fail(prog: str, error: Exception):
    """One line on stderr (a RuleError keeps its caret lines), exit 2."""
    message = str(error) if isinstance(error, RuleError) else (str(error).strip().splitlines() or [''])[0]
    print(f'{prog}: {message or type(error).__name__}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
    main()
