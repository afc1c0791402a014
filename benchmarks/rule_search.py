"""The rule search's finals and its picture (docs/benchmarks/rule_search.md), after benchmarks/rule_search.sh.

    python -m benchmarks.rule_search finals   # the 3 best found rules, ResNet-20, HB-Net-20, gd_net's plain CNN
                                              # (no shortcut) and the best built-in,
                                              # 3 seeds each at a larger budget; test accuracy for these only
    python -m benchmarks.rule_search report   # table.md and search.png from the study and the finals

Every finalist trains with the same recipe (search_fashion_mnist with 20,000 training images and 5 epochs), the
same held-out validation images and the same seeds; only the rule differs. The finals run two at a time, one
thread each (`--jobs`), seed by seed, and each run's result is written as soon as it ends, so an interrupted
finals resumes.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from benchmarks.stats import mean_spread

OUT = Path(__file__).resolve().parent / 'results' / 'rule_search'
STORAGE = f'sqlite:///{OUT / "study.db"}'
SEEDS = (0, 1, 2)
BUDGET = ['--data.init_args.train_subset', '20000', '--trainer.max_epochs', '5']


def finalists(top: int = 3) -> dict[str, dict]:
    """name -> the recipe's model options: the best found rules, ResNet-20, HB-Net-20, the best built-in."""
    rows = scored()
    found = [r for r in rows if not r['named']][:top]
    named = {r['named']: r for r in rows if r['named']}
    best_named = max(named.values(), key=lambda r: r['val_top1'])
    picked = {f'searched_{r["number"]}': r for r in found}
    picked.setdefault(f'searched_{best_named["number"]}', best_named)
    models = {name: recipe_options(name, r) for name, r in picked.items()}
    models['resnet_20'] = ['--model.model', 'hb_net_20_cifar', '--model.model_kwargs', '{"learn_coeffs": false}']
    models['hb_net_20'] = ['--model.model', 'hb_net_20_cifar']
    plain = dict(rule='x[k+1] = T(x[k])', preset='cifar', depth=20, shortcut=False)  # gd_net's: no skip at all
    models['gd_net_20'] = ['--model.model', 'gd_net_20', '--model.rule', json.dumps(plain)]
    return models


def scored(storage: str = STORAGE, study: str = 'rules') -> list[dict]:
    """The study's leaderboard rows scored at its full budget (the most epochs a trial ran), best first."""
    from optnets.search import leaderboard

    rows = leaderboard(storage, study)
    full = max(r['epochs'] for r in rows)
    return [r for r in rows if at_full_budget(r, full)]


def at_full_budget(row: dict, full: int) -> bool:
    """A trial scored at the full budget of ``full`` epochs: complete, or pruned at the last epoch (Hyperband's
    last rung)."""
    return row['val_top1'] is not None and (
        row['state'] == 'complete' or row['state'] == 'pruned' and row['epochs'] == full
    )


def recipe_options(name: str, row: dict) -> list[str]:
    """A leaderboard row's rule as the recipe's model options, the model named ``name``."""
    spec = {k: v for k, v in row['register'].items() if k != 'model_kwargs'}
    model_kwargs = json.dumps(row['register']['model_kwargs'])
    return ['--model.model', name, '--model.rule', json.dumps(spec), '--model.model_kwargs', model_kwargs]


def train(name: str, options: list[str], seed: int, out: Path = OUT / 'finals') -> dict:
    """One final run, in a process of its own with one thread: test accuracy of the last epoch's weights, kept in
    ``out`` (a run already there is not run again)."""
    path = out / f'{name}_seed{seed}.json'
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    code = 'import json, sys; from benchmarks.rule_search import final_run; print(json.dumps(final_run(sys.argv[1:])))'
    args = [
        '--config',
        'search_fashion_mnist',
        *BUDGET,
        *options,
        '--seed_everything',
        str(seed),
        '--trainer.default_root_dir',
        f'{os.environ.get("RUNS", "runs")}/rule_search_finals/{name}_seed{seed}',
    ]
    done = subprocess.run(
        [sys.executable, '-c', code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
        cwd=OUT.parents[2],
    )
    if done.returncode:
        raise RuntimeError(f'{name} seed {seed} failed:\n{done.stderr[-3000:]}')
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]), name=name, seed=seed, options=options)
    path.write_text(json.dumps(result, indent=1))
    print(f'{name} seed {seed}: val {100 * result["val_top1"]:.2f} test {100 * result["test_top1"]:.2f}', flush=True)
    return result


def final_run(args: list[str]) -> dict:
    """Fit with the recipe, then validation and test accuracy of the final weights."""
    import time
    from optnets.recipes.console import quiet
    from optnets.recipes.train import make_cli

    quiet(lightning_info=False)
    cli = make_cli(args, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    val = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]['val/top1']
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]['test/top1']
    params = sum(p.numel() for p in cli.model.model.parameters())
    return dict(val_top1=val, test_top1=test, params=params, fit_seconds=seconds)


def finals(jobs: int = 2):
    """Every finalist at seed 0 first, then seed 1, then seed 2: a partial finals compares all of them."""
    runs = [(name, options, seed) for seed in SEEDS for name, options in finalists().items()]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda run: train(*run), runs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('step', choices=['finals', 'report'])
    parser.add_argument('--jobs', type=int, default=2, help='finals run at once, one thread each')
    args = parser.parse_args(argv)
    finals(args.jobs) if args.step == 'finals' else report()


def report():
    """table.md (the study: its counts, its 10 best trials by validation, fANOVA importances; then the finals,
    once run) and search.png (every trial's validation accuracy against its distance from the nearest built-in)."""
    import optuna

    from optnets.search import leaderboard
    from optnets.search.study import storage_of

    rows = leaderboard(STORAGE)
    (OUT / 'leaderboard.json').write_text(json.dumps(rows, indent=1))
    study = optuna.load_study(storage=storage_of(STORAGE), study_name='rules')
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    states = {state: sum(r['state'] == state for r in rows) for state in ('complete', 'pruned', 'fail')}
    refused = sum(bool(r['refused']) for r in rows)
    full = max(r['epochs'] for r in rows)
    early = sum(r['state'] == 'pruned' and 0 < r['epochs'] < full for r in rows)
    lines = [
        f'Study: {len(rows)} trials, {states["complete"]} complete, {states["pruned"] - refused} pruned by '
        f'Hyperband ({early} before the last epoch), {refused} refused before training (an exploding identity '
        f'path), {states["fail"]} failed.',
        '',
        '| trial | rule | built-in | val top-1 (%) | epochs | state | nearest built-in (distance) |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in [r for r in rows if r['val_top1'] is not None][:10]:
        lines.append(
            f'| {r["number"]} | `{r["rule"]}` | {r["named"] or "-"} | {100 * r["val_top1"]:.2f} | {r["epochs"]} | '
            f'{r["state"]} | {r["nearest"][0]} ({r["nearest"][1]:.2f}) |'
        )
    lines += ['', '| built-in | rule | val top-1 (%) | epochs | state |', '|---|---|---|---|---|']
    for r in [r for r in rows if r['named']]:
        value = f'{100 * r["val_top1"]:.2f}' if r['val_top1'] is not None else '-'
        lines.append(f'| {r["named"]} | `{r["rule"]}` | {value} | {r["epochs"]} | {r["state"]} |')
    lines += ['', '| parameter | importance (fANOVA) |', '|---|---|']
    lines += [f'| `{name}` | {value:.3f} |' for name, value in importances.items()]
    lines += finals_table(rows)
    (OUT / 'table.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    plot(rows, OUT / 'search.png')


def finals_table(rows: list[dict]) -> list[str]:
    """The finals' rows, best mean test accuracy first (none before the finals have run)."""
    runs = [json.loads(p.read_text()) for p in sorted((OUT / 'finals').glob('*.json'))]
    if not runs:
        return []
    rule_of = {f'searched_{r["number"]}': (r['rule'], r['named']) for r in rows}
    rule_of['resnet_20'] = ('x[k+1] = T(x[k]) + x[k]', 'ResNet-20, fixed')
    rule_of['hb_net_20'] = ('x[k+1] = T(x[k]) + b1*x[k] + b2*x[k-1]', 'HB-Net-20, from ResNet')
    rule_of['gd_net_20'] = ('x[k+1] = T(x[k])', "gd_net's plain CNN, no shortcut anywhere")
    by_name = {}
    for run in runs:
        by_name.setdefault(run['name'], []).append(run)

    lines = [
        '',
        '| model | rule | params | val top-1 (%) | test top-1 (%) | seeds | s/run |',
        '|---|---|---|---|---|---|---|',
    ]
    for name, group in sorted(by_name.items(), key=lambda kv: -sum(r['test_top1'] for r in kv[1]) / len(kv[1])):
        rule, named = rule_of[name]
        lines.append(
            f'| {name}{f" ({named})" if named else ""} | `{rule}` | {group[0]["params"]} | '
            f'{mean_spread([r["val_top1"] for r in group], 100)} | '
            f'{mean_spread([r["test_top1"] for r in group], 100)} | '
            f'{len(group)} | {sum(r["fit_seconds"] for r in group) / len(group):.0f} |'
        )
    return lines


def plot(rows: list[dict], path: Path):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for state, marker in (('complete', 'o'), ('pruned', 'x')):
        points = [r for r in rows if r['state'] == state and r['val_top1'] is not None]
        ax.scatter(
            [r['nearest'][1] for r in points],
            [100 * r['val_top1'] for r in points],
            marker=marker,
            label=f'{state} ({len(points)})',
            alpha=0.8,
        )
    for r in rows:
        if r['named'] and r['val_top1'] is not None:
            ax.annotate(r['named'], (0, 100 * r['val_top1']), fontsize=6, xytext=(4, 0), textcoords='offset points')
    ax.set(
        xlabel='distance from the nearest built-in (initial coefficients; +1 per changed state)',
        ylabel='best validation top-1 (%)',
        title='Rule search, Fashion-MNIST, ResNet-20 skeleton',
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == '__main__':
    main()
