"""Model cards, generated, never typed: ``python tools/model_cards.py`` writes ``model_cards/``.

One card per family (its rule, reading, initialisations, members with parameters and GMACs from torch's FLOP
counter) and one per published tag (its source and hash; for weights trained here, the measured accuracy, command
and curves from ``benchmarks/results/fmnist_weights/runs.json``), in the Hugging Face model-card format. Every
number comes from ``cards.json``, which this command also writes; tests/test_cards.py checks the cards against it
and it against its sources.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

BIBTEX = """```bibtex
@inproceedings{li2018optimization,
  title     = {Optimization Algorithm Inspired Deep Neural Network Structure Design},
  author    = {Li, Huan and Yang, Yibo and Chen, Dongmin and Lin, Zhouchen},
  booktitle = {Proceedings of the Tenth Asian Conference on Machine Learning},
  series    = {Proceedings of Machine Learning Research},
  volume    = {95},
  year      = {2018}
}
@inproceedings{li2019lifted,
  title     = {Lifted Proximal Operator Machines},
  author    = {Li, Jia and Fang, Cong and Lin, Zhouchen},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2019}
}
```"""
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / 'benchmarks' / 'results' / 'fmnist_weights' / 'runs.json'


def collect() -> dict:
    """Everything the cards state, computed or read from the measured JSON."""
    import timm

    from optnets import rules
    from optnets.models.facts import facts
    from optnets.models import FAMILIES
    from optnets.weights import registry

    def size(name: str) -> dict:
        f = facts(name)
        return {'parameters': f['params'], 'gmacs': f['gmacs'], 'input_size': list(f['input_size'])}

    families = {}
    for family in FAMILIES:
        rule = rules.BUILTIN[FAMILIES[family].rule]
        families[family] = {
            'rule': str(rule),
            'reading': rules.READINGS[rule.reading],
            'inits': {init: {k: str(v) for k, v in values.items()} for init, values in rule.inits.items()},
            'members': {name: size(name) for name in timm.list_models(module=family)},
        }
    runs = json.loads(RUNS.read_text()) if RUNS.is_file() else {}
    tags = {}
    for tag, entry in registry.MANIFEST.items():
        tags[tag] = {
            'source': entry['source'],
            'sha256': entry['sha256'],
            'size': entry['size'],
            'converted_from': entry.get('converted_from'),
            'measured': runs.get(tag),
        }
    return {'families': families, 'tags': tags}


def front_matter(tags: list[str], datasets: list[str], results: list[dict] | None = None) -> str:
    lines = ['---', 'license: apache-2.0', 'library_name: timm', 'tags:', *(f'- {t}' for t in tags)]
    if datasets:
        lines += ['datasets:', *(f'- {d}' for d in datasets)]
    if results:
        lines += ['model-index:']
        for r in results:
            lines += [
                f'- name: {r["name"]}',
                '  results:',
                '  - task:',
                '      type: image-classification',
                '    dataset:',
                f'      name: {r["dataset"]}',
                f'      type: {r["dataset_id"]}',
                '    metrics:',
                '    - type: accuracy',
                f'      value: {r["value"]}',
            ]
    return '\n'.join(lines + ['---', ''])


def family_card(name: str, data: dict) -> str:
    rows = '\n'.join(
        f'| `{m}` | {v["parameters"] / 1e6:.3f}M | {v["gmacs"]:.3f} | {tuple(v["input_size"])} |'
        for m, v in data['members'].items()
    )
    inits = '\n'.join(
        f'- `{init}`: ' + (', '.join(f'{k} = {v}' for k, v in values.items()) or 'no coefficients')
        for init, values in data['inits'].items()
    )
    rule = data['rule'].replace('\n', '`, `')
    return (
        front_matter(['image-classification', 'timm', 'optnets'], ['imagenet-1k', 'cifar10'])
        + f'''
# {name}

The network compiled from the update rule `{rule}`; {data['reading']}.

```python
import timm, optnets
model = timm.create_model("{next(iter(data['members']))}")
```

Initialisations (`coeff_init`):
{inits}

| model | parameters | GMACs | input |
|---|---|---|---|
{rows}

Parameters and GMACs: `python tools/model_cards.py` (torch's `FlopCounterMode`, one image).

Limitations: accuracy on ImageNet and CIFAR is not measured by this project (its machines have no GPU and cannot
download those data sets); the cards of its published tags say what was measured.

{BIBTEX}
'''
    )


def tag_card(tag: str, data: dict) -> str:
    measured = data['measured']
    source = data['source'].get('hub') or f'shipped with optnets ({data["source"]["package"]})'
    if measured is None:
        return (
            front_matter(['image-classification', 'timm', 'optnets'], ['imagenet-1k'])
            + f'''
# {tag}

Converted from timm's `{data['converted_from']}` ({source}); with the `special` coefficients the logits equal the
source model's (tests/test_weights.py, on a stand-in file). Its accuracy is the source's, in timm's results tables:
not measured here.

```python
model = timm.create_model("{tag}", pretrained=True)   # downloaded through huggingface_hub, sha256 checked
```

sha256: {data['sha256'] or 'pinned on first download (the manifest has none yet: this project cannot reach the hub)'}

{BIBTEX}
'''
        )
    top1 = round(100 * measured['test_top1'], 2)
    curve = ', '.join(f'{100 * v:.2f}' for v in measured['curves']['test_top1'])
    seeds = {int(seed): 100 * value for seed, value in measured.get('seeds', {'0': measured['test_top1']}).items()}
    by_seed = ', '.join(f'seed {seed}: {value:.2f}%' for seed, value in sorted(seeds.items()))
    spread = (
        'one seed'
        if len(seeds) == 1
        else (
            f'{len(seeds)} seeds, mean {statistics.mean(seeds.values()):.2f}%, range {min(seeds.values()):.2f}-'
            f'{max(seeds.values()):.2f}% ({by_seed}; the others ran the same command with `--seed_everything N`; '
            "the published weights are seed 0's)"
        )
    )
    return (
        front_matter(
            ['image-classification', 'timm', 'optnets'],
            ['fashion_mnist'],
            [dict(name=tag, dataset='Fashion-MNIST', dataset_id='fashion_mnist', value=top1)],
        )
        + f'''
# {tag}

{measured['description']}, trained here on all 60k Fashion-MNIST training images for {measured['epochs']} epochs
(seed {measured['seed']}) and scored on all 10k test images: **{top1:.2f}%** top-1. Over seeds: {spread}.

```python
import timm, optnets  # optnets registers its models with timm: without it, timm does not know the name
model = timm.create_model("{tag}", pretrained=True)   # shipped with optnets, sha256 checked
```

timm's own scripts (from timm's repository) find optnets models when run through `optnets timm`, which imports
optnets and then runs the script with its own arguments; a one-channel model is asked for with `--in-chans 1`
(timm's scripts ask for 3 channels unless told; with 3, the grey stem is repeated over the channels and scores
the same on grey images):

```bash
optnets timm validate.py FASHION_MNIST_TEST_FOLDER --model {tag} --pretrained --in-chans 1
```

- Parameters: {measured['parameters']}; GMACs at 1x32x32: {measured['gmacs']:.4f}.
- Command: `{measured['command']}` (config `{measured['config']}`); published: the last epoch's weights.
- Test top-1 after each epoch (%): {curve}.
- Curves: `benchmarks/results/fmnist_weights/curves.png`; learned coefficients against ResNet's:
  `benchmarks/results/fmnist_weights/coefficients.png`.
- sha256: {measured['sha256']} ({measured['size']} bytes).

Limitations: {'one seed' if len(seeds) == 1 else f'{len(seeds)} seeds'}; the recipe validates on the test images after
each epoch, but nothing was chosen with them
(the settings are the recipe's, and the last epoch is published).

{BIBTEX}
'''
    )


def render(data: dict) -> dict[str, str]:
    cards = {f'{name}.md': family_card(name, d) for name, d in data['families'].items()}
    cards.update({f'{tag}.md': tag_card(tag, d) for tag, d in data['tags'].items()})
    return cards


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python tools/model_cards.py', description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=ROOT / 'model_cards')
    args = parser.parse_args(argv)
    args.out.mkdir(exist_ok=True)
    data = collect()
    (args.out / 'cards.json').write_text(json.dumps(data, indent=1) + '\n')
    for name, text in render(data).items():
        (args.out / name).write_text(text)
    print(f'wrote {len(data["families"]) + len(data["tags"])} cards to {args.out}')


if __name__ == '__main__':
    main()
