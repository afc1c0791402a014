"""The Pareto study's table and picture (docs/benchmarks/rule-search.md): validation accuracy against GMACs.

    python -m benchmarks.rule_search_pareto   # front.md and pareto.png beside the study's study.db

Every complete trial of the study (``optnets search run --pareto``, the command on the page) is a point; its
Pareto front (Optuna's ``best_trials``: no other trial is both more accurate and cheaper) is joined, and the
built-ins, enqueued at ResNet-20's skeleton, are named. Beside them, as stars, the first study's best found rules
(its ``finalists``), scored by the same recipe on the same validation images at ResNet-20's skeleton.
"""

import argparse
from pathlib import Path

from benchmarks.rule_search import STORAGE as FIRST_STUDY
from benchmarks.rule_search import scored

OUT = Path(__file__).resolve().parent / 'results' / 'rule_search_pareto'
FOUND = 3
"""How many of the first study's best found rules stand beside the front (its finals' number)."""


def points(storage: str) -> list[dict]:
    """The study's complete trials, cheapest first."""
    from optnets.search import leaderboard

    return sorted(
        (r for r in leaderboard(storage) if r['state'] == 'complete'), key=lambda r: (r['gmacs'], r['number'])
    )


def found_rules(top: int = FOUND) -> list[dict]:
    """The first study's ``top`` best rules that are no built-in, scored at its full budget."""
    return [r for r in scored(FIRST_STUDY) if not r['named']][:top]


def table(rows: list[dict], found: list[dict]) -> list[str]:
    lines = [
        '| trial | rule | depth | width | GMACs | params | val top-1 | front |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        rule = f'`{r["rule"]}`' + (f' ({r["named"]})' if r['named'] else '')
        lines.append(
            f'| {r["number"]} | {rule} | {r["trial_params"]["depth"]} | {r["trial_params"]["width"]:g} '
            f'| {r["gmacs"]:.4f} | {r["params"]:,} | {100 * r["val_top1"]:.2f} | {"yes" if r["pareto"] else ""} |'
        )
    for r in found:
        lines.append(
            f'| first study #{r["number"]} | `{r["rule"]}` | 20 | 1 | {r["gmacs"]:.4f} | {r["params"]:,} '
            f'| {100 * r["val_top1"]:.2f} | |'
        )
    return lines


def figure(rows: list[dict], found: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    others = [r for r in rows if not r['pareto']]
    front = [r for r in rows if r['pareto']]
    ax.scatter([r['gmacs'] for r in others], [100 * r['val_top1'] for r in others], c='0.6', s=18, label='trials')
    ax.step(
        [r['gmacs'] for r in front],
        [100 * r['val_top1'] for r in front],
        where='post',
        c='C0',
        marker='o',
        ms=5,
        label='Pareto front',
    )
    for r in rows:
        if r['named']:
            ax.annotate(
                r['named'], (r['gmacs'], 100 * r['val_top1']), fontsize=7, xytext=(4, -3), textcoords='offset points'
            )
    ax.scatter(
        [r['gmacs'] for r in found],
        [100 * r['val_top1'] for r in found],
        marker='*',
        s=90,
        c='C3',
        label=f"the first study's {len(found)} best found rules",
    )
    ax.set_xscale('log')
    ax.set_xlabel('GMACs per 28x28 image (log scale)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title('Rules and skeletons: accuracy against cost (6,000 images, 3 epochs a trial)', fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows, found = points(f'sqlite:///{args.out / "study.db"}'), found_rules()
    lines = table(rows, found)
    (args.out / 'front.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    figure(rows, found, args.out / 'pareto.png')


if __name__ == '__main__':
    main()
