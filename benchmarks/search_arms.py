"""Do the algorithms make a good starting point for a search? R searches per arm, the same budget each.

    python -m benchmarks.search_arms run      # resumable: run it again after an interrupt
    python -m benchmarks.search_arms finals   # each search's pick retrained at the finals' budget, tested
    python -m benchmarks.search_arms report   # arms.md, curves.json and anytime.png

Three arms, R = 5 searches each (sampler seeds 0 to 4), 30 finished trials per search, all on the space and
per-trial budget of the first study (benchmarks/rule_search.sh: 6,000 training images, 3 epochs, chosen on 5,000
held-out training images) with its Hyperband pruner:

- ``builtins``: TPE with the built-in algorithms enqueued first (what ``optnets search`` does);
- ``no_builtins``: the same TPE, its first 10 trials random draws instead (``--no-builtins``);
- ``random``: Optuna's RandomSampler, no built-ins (``--sampler random``): the floor.

TPE draws its start-up trials with a RandomSampler of its own seed, so a ``no_builtins`` search's first 10 trials
are the ``random`` search's of the same seed: those two arms part at trial 11 (common random numbers).

A trial counts at the full budget only (complete, or pruned at the last epoch, as the finals read it). The any-time
curve of a search is the best such validation accuracy among its first n trials; its area is that curve's mean over
n = 1..30. The curve never goes below chance (10%), what a search has before its first full-budget trial, so it
never falls. A proposal refused before training (an exploding identity path) takes a trial and no training, so
the report also counts the networks each search trained and its best after the first 10 of them. Every search
is one study in ``arms.db`` (``<arm>_<r>``); two run at once, one thread each.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.rule_search import at_full_budget, recipe_options
from benchmarks.rule_search import train as final_train
from benchmarks.stats import mean_spread

OUT = Path(__file__).resolve().parent / 'results' / 'search_arms'
ARMS = {'builtins': [], 'no_builtins': ['--no-builtins'], 'random': ['--sampler', 'random', '--no-builtins']}
SEEDS = (0, 1, 2, 3, 4)
TRIALS = 30
NETWORKS = 10  # the report's early mark in networks trained (a search that trained fewer: its best of all)
CHANCE = 0.1  # ten classes' chance: a search's curve before its first full-budget trial, and its floor
TRIAL_BUDGET = ['--data.init_args.train_subset', '6000', '--data.init_args.num_workers', '0']
Search = tuple[str, int, list[dict], int]  # arm, seed, counted trials (leaderboard rows), full budget in epochs


def storage(out: Path) -> str:
    return f'sqlite:///{out / "arms.db"}'


def search(out: Path, arm: str, seed: int, trials: int, extra: list[str]) -> None:
    """One search, in a process of its own with one thread; its log beside the database."""
    name = f'{arm}_{seed}'
    command = [
        *('optnets', 'search', 'run', '--storage', storage(out), '--study', name, '--trials', str(trials)),
        *('--seed', str(seed), *ARMS[arm], '--root-dir', f'{os.environ.get("RUNS", "runs")}/search_arms/{name}'),
        *('--trainer.accelerator', 'cpu', '--no-progress', *TRIAL_BUDGET, *extra),
    ]
    with open(out / f'{name}.log', 'a') as log:
        done = subprocess.run(command, stdout=log, stderr=log, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    print(f'{name}: exit {done.returncode}', flush=True)


def finished(out: Path, trials: int = TRIALS) -> Iterator[Search]:
    """Each search with ``trials`` finished trials: its arm, seed, first ``trials`` finished trials (leaderboard
    rows, in order) and full budget in epochs. A failed trial (its worker stopped) is not one of the search's
    trials: the search ran another. A search not yet begun, or not finished, is left out (a report while they run)."""
    from optnets.search import leaderboard
    from optnets.search.study import FINISHED

    states = {state.name.lower() for state in FINISHED}  # as the leaderboard spells a trial's state
    for seed in SEEDS:  # seed by seed, so that finals cut short compare every arm at the seeds they reached
        for arm in ARMS:
            try:
                rows = sorted(leaderboard(storage(out), f'{arm}_{seed}'), key=lambda r: r['number'])
            except LookupError:  # not begun
                continue
            rows = [r for r in rows if r['state'] in states]
            if len(rows) >= trials:
                yield arm, seed, rows[:trials], max(r['epochs'] for r in rows)


def curves(searches: Iterable[Search], networks: bool = False) -> dict[str, list[list[float]]]:
    """arm -> per search of ``finished``, the best full-budget validation accuracy among its first n trials (n =
    1..trials). ``networks``: per network trained among those trials instead, leaving out the proposals refused
    before training (an exploding identity path), which take a trial and no training: curves of different
    lengths."""
    found = {}
    for arm, _, rows, full in searches:
        best, curve = None, []
        for r in [r for r in rows if not (networks and r['refused'])]:
            if at_full_budget(r, full) and (best is None or r['val_top1'] > best):
                best = r['val_top1']
            curve.append(CHANCE if best is None else max(CHANCE, best))
        found.setdefault(arm, []).append(curve)
    return found


def pick(rows: list[dict], full: int) -> dict:
    """A search's best full-budget trial among its counted ``rows`` (a tie: the earlier)."""
    return max((r for r in rows if at_full_budget(r, full)), key=lambda r: r['val_top1'])


def report(out: Path, trials: int = TRIALS) -> None:
    import statistics

    searches = list(finished(out, trials))  # each study read once
    found, trained = curves(searches), curves(searches, networks=True)
    finals = {p.stem: json.loads(p.read_text()) for p in sorted((out / 'finals').glob('*.json'))}
    marks = [n for n in (10, 20, trials) if n <= trials]
    lines = [
        f'| arm | searches | best validation top-1 after {" / ".join(map(str, marks))} trials (%) | area (%) | '
        f'networks trained in {trials} trials | best after {NETWORKS} networks (%) | '
        'test top-1 of the pick, retrained (%) |',
        '|---|---|---|---|---|---|---|',
    ]
    last, tests = {}, {}
    for arm, runs in found.items():
        at = ' / '.join(mean_spread([c[n - 1] for c in runs], 100) for n in marks)
        area = mean_spread([statistics.mean(c) for c in runs], 100)
        counts = ', '.join(str(len(c)) for c in trained[arm])
        early = mean_spread([c[min(NETWORKS, len(c)) - 1] for c in trained[arm]], 100)
        last[arm] = [c[-1] for c in runs]
        tests[arm] = [finals[f'{arm}_{s}_seed0']['test_top1'] for s in SEEDS if f'{arm}_{s}_seed0' in finals]
        lines.append(f'| `{arm}` | {len(runs)} | {at} | {area} | {counts} | {early} | {mean_spread(tests[arm], 100)} |')
    lines += ['', '| search | pick | rule | shortcut | validation top-1 (%) | test top-1, retrained (%) |']
    lines += ['|---|---|---|---|---|---|']
    for arm, seed, rows, full in searches:
        best, final = pick(rows, full), finals.get(f'{arm}_{seed}_seed0')
        if final and f'searched_{best["number"]}' not in final['options']:
            raise ValueError(f'finals/{arm}_{seed}_seed0.json retrained another trial than the pick, {best["number"]}')
        test = f'{100 * final["test_top1"]:.2f}' if final else '-'
        lines.append(
            f'| `{arm}_{seed}` | trial {best["number"]} | `{best["rule"]}` | {best["trial_params"]["shortcut"]} | '
            f'{100 * best["val_top1"]:.2f} | {test} |'
        )
    for other in [arm for arm in ('no_builtins', 'random') if {'builtins', arm} <= found.keys()]:
        at_end, picks = gap(last, other, f'best after {trials} trials'), gap(tests, other, 'test top-1 of the pick')
        lines += ['', f'`builtins` minus `{other}`: {at_end}; {picks}.']
    hours = trial_hours(out, searches)
    lines += [
        '',
        f'{len(searches)} searches of {trials} trials: {hours:.1f} hours of trials, one core each (`arms.db`).',
    ]
    (out / 'arms.md').write_text('\n'.join(lines) + '\n')
    (out / 'curves.json').write_text(json.dumps({'trials': found, 'networks': trained}, indent=1))
    print('\n'.join(lines))
    plot(found, out / 'anytime.png')


def trial_hours(out: Path, searches: Iterable[Search]) -> float:
    """The counted trials of ``searches`` (``finished``'s), from start to end, in hours."""
    import optuna

    seconds = 0.0
    for arm, seed, rows, _ in searches:
        counted = {r['number'] for r in rows}
        for t in optuna.load_study(study_name=f'{arm}_{seed}', storage=storage(out)).get_trials(deepcopy=False):
            if t.number in counted:
                seconds += (t.datetime_complete - t.datetime_start).total_seconds()
    return seconds / 3600


def gap(values: dict[str, list[float]], other: str, what: str) -> str:
    """``what`` of the searches from the built-ins minus ``other``'s, in points, with Welch's two-sided t-test (the
    searches of two arms are independent: no pairing)."""
    from scipy.stats import ttest_ind

    ours, theirs = values['builtins'], values[other]
    if min(len(ours), len(theirs)) < 2:
        return f'{what}: too few searches to compare'
    difference = 100 * (sum(ours) / len(ours) - sum(theirs) / len(theirs))
    p = ttest_ind(ours, theirs, equal_var=False).pvalue
    return f'{what} {difference:+.2f} points (Welch p = {p:.2f}, {len(ours)} and {len(theirs)} searches)'


def plot(found: dict, path: Path, zoom_from: int = 5) -> None:
    """The any-time curves, mean and range over each arm's searches: all trials, then from trial ``zoom_from``
    on a scale that shows the points between the arms."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = dict(zip(ARMS, ('-', '--', ':')))
    late = []
    for arm, runs in found.items():
        values = 100 * np.array(runs, dtype=float)
        n = np.arange(1, values.shape[1] + 1)
        late.append(values[:, zoom_from - 1 :])
        for ax in axes:
            (line,) = ax.plot(n, values.mean(0), styles[arm], label=f'{arm} (mean of {len(runs)})')
            ax.fill_between(n, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    late = np.concatenate([v.ravel() for v in late])
    axes[1].set(xlim=(zoom_from, None), ylim=(late.min() - 0.3, late.max() + 0.3), title=f'from trial {zoom_from}')
    axes[0].set(ylabel='best validation top-1 so far (%)', title='all trials')
    for ax in axes:
        ax.set(xlabel='trials')
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[1].legend()
    fig.suptitle('Rule search from the algorithms or not (bands: the range over the searches)')
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('step', choices=['run', 'finals', 'report'])
    parser.add_argument('--jobs', type=int, default=2, help='searches (or finals) at once, one thread each')
    parser.add_argument('--trials', type=int, default=TRIALS, help='finished trials per search')
    parser.add_argument('--out', type=Path, default=OUT, help='the studies (arms.db), logs, finals and report')
    args, extra = parser.parse_known_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.step == 'run':  # seed by seed, so that a cut run compares every arm at the seeds it finished
        work = [(arm, seed) for seed in SEEDS for arm in ARMS]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: search(out, *job, args.trials, extra), work))
    elif args.step == 'finals':
        picks = [(f'{arm}_{seed}', pick(rows, full)) for arm, seed, rows, full in finished(out, args.trials)]
        work = [(name, recipe_options(f'searched_{best["number"]}', best)) for name, best in picks]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: final_train(*job, seed=0, out=out / 'finals'), work))
    else:
        report(out, args.trials)


if __name__ == '__main__':
    sys.exit(main())
