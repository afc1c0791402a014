"""Copy the entries that redo runs of lpom_fmnist.py re-made on copies of results.json (run side by side) back
into it, and regenerate table.md and tuning.md.

    python benchmarks/lpom_merge.py benchmarks/results/lpom_fmnist DIR...

Each DIR holds a copy of results.json, given a ``_redo_config`` entry ``[arch, activation, [methods]]`` before
its redo run (``lpom_fmnist.py --archs ARCH --activations ACT --redo METHOD... --out DIR``)."""

import json
import sys
from pathlib import Path

from lpom_fmnist import write_tables  # the script's own folder is on the path: its sibling's tables


def main(argv=None):
    target, *folders = map(Path, argv if argv is not None else sys.argv[1:])
    results = json.loads((target / 'results.json').read_text())
    for folder in folders:
        redo = json.loads((folder / 'results.json').read_text())
        arch, activation, methods = redo['_redo_config']
        row, new = (
            next(r for r in rs['configs'] if (r['arch'], r['activation']) == (arch, activation))
            for rs in (results, redo)
        )
        for method in methods:
            row['methods'][method] = new['methods'][method]
        row['tuning_spread'] = new['tuning_spread']
        results.setdefault('redone', []).extend(c for c in redo.get('redone', []) if c not in results['redone'])
    (target / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
    write_tables(results, target)


if __name__ == '__main__':
    main()
