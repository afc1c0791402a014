"""HB-Net-20 against ResNet-20 at the full budget, seed by seed: the table of docs/benchmarks/fmnist-weights.md.

    python -m benchmarks.fmnist_seeds_table --out benchmarks/results/fmnist_seeds

Seeds 0 and 1 are the published runs, scored by benchmarks/fmnist_weights.py (its runs.json); each further seed is
a run of benchmarks/fmnist_seeds.sh that has finished its 12 epochs (runs/fmnist_full_seed<S>/<model>), scored the
same way: its last epoch's weights on all 10k test images. A model's seeds are compared pairwise (the same seed
gives both models the same data order), with a two-sided paired t-test, over all seeds and over the current data
pipeline's (the published runs predate its per-sample seeding). A seed already in ``--out``'s results.json keeps
its score there: run folders are not tracked, and a run may finish on another machine than the last table's.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

import timm

import optnets  # noqa: F401
from benchmarks.fmnist_weights import load_run, test_top1
from benchmarks.stats import mean_spread

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / 'benchmarks/results/fmnist_weights/runs.json'
PUBLISHED_SOURCE = str(PUBLISHED.relative_to(ROOT))  # a published seed's source
MODELS = {'hb_net_20': 'hb_net_20_cifar.fmnist', 'resnet_20': 'hb_net_20_cifar.fmnist_resnet'}  # run -> tag
LAST_EPOCH = 11


def scores(runs: Path, scored: dict) -> dict[str, dict[str, dict]]:
    """model -> seed -> {test_top1, source}: the published seeds, the ``scored`` ones (an earlier table's, whose
    runs may have finished on another machine), then every other finished run under ``runs``."""
    published = json.loads(PUBLISHED.read_text())
    found = {}
    for model, tag in MODELS.items():
        found[model] = {
            seed: dict(test_top1=top1, source=PUBLISHED_SOURCE) for seed, top1 in published[tag]['seeds'].items()
        }
        found[model] |= {seed: row for seed, row in scored.get(model, {}).items() if seed not in found[model]}
        for root in sorted(runs.glob('fmnist_full_seed*')):
            seed = root.name.removeprefix('fmnist_full_seed')
            if seed in found[model] or not list((root / model / 'checkpoints').glob(f'latest-epoch={LAST_EPOCH}-*')):
                continue
            network = timm.create_model('hb_net_20_cifar', num_classes=10, in_chans=1).eval()
            top1 = test_top1(load_run(network, root / model, LAST_EPOCH))
            found[model][seed] = dict(test_top1=top1, source=f'{root.name}/{model}')
            print(f'{model} seed {seed}: {100 * found[model][seed]["test_top1"]:.2f}%', flush=True)
    return found


def table(found: dict) -> str:
    """Every seed of each model, the mean over all of them and over the current pipeline's (the published seeds
    were trained before the data pipeline was seeded per sample, marked *), then the paired gap over each set."""
    published = PUBLISHED_SOURCE
    every = sorted(set(found['hb_net_20']) & set(found['resnet_20']))
    current = [s for s in every if published not in (found['hb_net_20'][s]['source'], found['resnet_20'][s]['source'])]

    lines = [
        '| model | seeds | test top-1 per seed (%) | mean ± sd, all seeds (%) | mean ± sd, current pipeline (%) |',
        '|---|---|---|---|---|',
    ]
    for model, seeds in found.items():
        top1 = {s: 100 * seeds[s]['test_top1'] for s in sorted(seeds)}
        per_seed = ', '.join(f'{s}{"*" if seeds[s]["source"] == published else ""}: {v:.2f}' for s, v in top1.items())
        now = [top1[s] for s in top1 if seeds[s]['source'] != published]
        lines.append(
            f'| {model} | {len(seeds)} | {per_seed} | {mean_spread(list(top1.values()))} | {mean_spread(now)} |'
        )
    lines += ['', '\\* a published run, trained before the data pipeline was seeded per sample.', '']
    lines += [paired(found, every, 'all seeds'), '', paired(found, current, 'the current pipeline')]
    return '\n'.join(lines)


def paired(found: dict, seeds: list[str], which: str) -> str:
    """HB-Net-20 minus ResNet-20 over ``seeds``: mean, sd, 95% confidence interval, wins, paired t-test."""
    from scipy.stats import t as student
    from scipy.stats import ttest_rel

    hb = [100 * found['hb_net_20'][s]['test_top1'] for s in seeds]
    resnet = [100 * found['resnet_20'][s]['test_top1'] for s in seeds]
    gaps = [a - b for a, b in zip(hb, resnet)]
    head = f'HB-Net-20 minus ResNet-20, paired by seed, {which} ({len(seeds)} seeds'
    if len(seeds) < 2:
        return f'{head}): too few to compare.'
    mean, sd = statistics.mean(gaps), statistics.stdev(gaps)
    half = student.ppf(0.975, len(gaps) - 1) * sd / math.sqrt(len(gaps))
    return (
        f'{head}: {", ".join(seeds)}): {mean:.2f} ± {sd:.2f} points, 95% confidence interval '
        f'[{mean - half:.2f}, {mean + half:.2f}]; HB-Net-20 ahead in {sum(g > 0 for g in gaps)} of {len(gaps)}; '
        f'two-sided paired t-test p = {ttest_rel(hb, resnet).pvalue:.3f}.'
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=Path, default=ROOT / 'runs', help='where fmnist_seeds.sh ran')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    results = args.out / 'results.json'
    found = scores(args.runs, json.loads(results.read_text()) if results.exists() else {})
    args.out.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(found, indent=1) + '\n')
    (args.out / 'table.md').write_text(table(found) + '\n')
    print(table(found))


if __name__ == '__main__':
    main()
