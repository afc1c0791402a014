"""The table of several vs_timm.py runs: per model, each ratio's median over the runs and their range (one run's
ratios move by up to 0.1 on a noisy machine). Eager runs and ``--compile`` runs have their own columns.

    python benchmarks/vs_timm_table.py benchmarks/results/vs_timm/run*.json --out benchmarks/results/vs_timm/table.md
"""

import argparse
import json
import statistics
from pathlib import Path


def table(paths) -> str:
    runs = [json.loads(Path(p).read_text())['rows'] for p in paths]
    ratios = [k for k in runs[0][0] if k.endswith('_ratio')]
    heads = [k.removesuffix('_ratio').replace('_', ' ') for k in ratios]
    lines = ['| model | baseline | ' + ' | '.join(heads) + ' |', '|---|---|' + '---|' * len(ratios)]
    for rows in zip(*runs):
        cells = []
        for ratio in ratios:
            values = [row[ratio] for row in rows]
            cells.append(f'{statistics.median(values):.3f}x ({min(values):.2f}-{max(values):.2f})')
        lines.append(f'| `{rows[0]["model"]}` | `{rows[0]["baseline"]}` | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', type=Path)
    parser.add_argument('--out', type=Path)
    args = parser.parse_args(argv)
    text = table(args.runs)
    print(text, end='')
    if args.out:
        args.out.write_text(text)


if __name__ == '__main__':
    main()
