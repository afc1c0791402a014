"""The table of one or more lpom_cnn.py long runs (results.json files): per method, the settings validation chose,
test top-1 after the first and after the last epoch, or after ``--at-epoch N`` (mean ± std over the seeds run),
and seconds per epoch. Runs of one method with the same settings and budget in several files (seeds run in
separate processes) make one row.

    python -m benchmarks.lpom_cnn_table benchmarks/results/lpom_cnn_55k_10ep_bn_mu10/results.json \
        benchmarks/results/lpom_cnn_55k_10ep_sgd_adam_mlp_from_10k/results.json \
        --out benchmarks/results/lpom_cnn_55k_10ep_bn_mu10/table.md
"""

import argparse
import json
import statistics
from pathlib import Path
from benchmarks.stats import mean_spread


def table(paths, at_epoch: int | None = None, budgets: bool = False) -> str:
    """One row a method and setting; the last column after ``at_epoch`` epochs (every run has them), else the last.
    ``budgets``: a column with each method's tuning budget, the grid points it validated."""
    last = f'epoch {at_epoch}' if at_epoch else 'last epoch'
    grid = ' grid points |' if budgets else ''
    rows = [
        f'| method | chosen (validation) |{grid} seeds | test top-1, epoch 1 | test top-1, {last} | s/epoch |',
        '|---|---|---|---|---|---|' + ('---|' if budgets else ''),
    ]
    pooled, points = {}, {}  # (method, settings, budget) -> {seed: run}; method -> grid points validated
    for path in paths:
        for name, entry in json.loads(Path(path).read_text())['methods'].items():
            key = (name, json.dumps(entry['chosen']), json.dumps(entry['budget']))
            runs = pooled.setdefault(key, {})
            points[name] = max(points.get(name, 0), len(entry.get('grid', [])))
            if runs.keys() & entry['runs'].keys():
                raise ValueError(f'{path}: {name} has a seed another file already gave')
            runs.update(entry['runs'])
    for (name, chosen, _), runs in pooled.items():
        runs = list(runs.values())
        chosen = ', '.join(f'{k} {v:g}' for k, v in json.loads(chosen).items())
        seconds = statistics.median(s for r in runs for s in r['seconds'])
        budget = f' {points[name]} |' if budgets else ''
        rows.append(
            f'| {name} | {chosen} |{budget} {len(runs)} | {mean_spread([r["curve"][0] for r in runs], 100)} | '
            f'{mean_spread([r["curve"][at_epoch - 1 if at_epoch else -1] for r in runs], 100)} | {seconds:.0f} |'
        )
    return '\n'.join(rows) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', type=Path)
    parser.add_argument('--at-epoch', type=int, help='the accuracy after this epoch instead of the last one')
    parser.add_argument('--budgets', action='store_true', help="a column with each method's grid points")
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    text = table(args.results, args.at_epoch, args.budgets)
    print(text, end='')
    if args.out:
        args.out.write_text(text)


if __name__ == '__main__':
    main()
