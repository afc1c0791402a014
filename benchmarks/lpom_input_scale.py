"""LPOM and the scale of its inputs: the same 784-300-10 MLP on Fashion-MNIST pixels in [0, 1], those pixels
times 3, standardized (scikit-learn's StandardScaler, as its MLP docs recommend) and standardized then divided by
3, each fitted on 2,000 training rows and scored on 2,000 other training rows (a validation split: the test set is
never read), over 3 seeds, with the inputs as given (``scale_inputs=False``) and scaled by the estimator (the
default); accuracy on the fitted rows too, which says whether a scale under-fits or over-fits.

    OMP_NUM_THREADS=1 python -m benchmarks.lpom_input_scale --out benchmarks/results/lpom_input_scale   # ~6 min
"""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from optnets.lpom import LPOM
from optnets.recipes.data import fashion_mnist_flat
from benchmarks.stats import mean_spread

SCALINGS = {  # name -> the transforms before LPOM
    'pixels in [0, 1]': lambda: [],
    'pixels x 3': lambda: [FunctionTransformer(lambda a: a * 3)],
    'standardized': lambda: [StandardScaler()],
    'standardized / 3': lambda: [StandardScaler(), FunctionTransformer(lambda a: a / 3)],
}


def rms(transforms: list, x: np.ndarray) -> float:
    for transform in transforms:
        x = transform.fit_transform(x)
    return float(np.sqrt((x**2).mean()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--seeds', type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x, y = fashion_mnist_flat(True, slice(0, 4000))
    x, y = x.numpy(), y.numpy()
    (fit_x, fit_y), (val_x, val_y) = (x[:2000], y[:2000]), (x[2000:], y[2000:])
    rows = []
    for scale_inputs in (False, True):
        for name, transforms in SCALINGS.items():
            fitted, validation = [], []
            for seed in range(args.seeds):
                lpom = LPOM(hidden_layer_sizes=(300,), max_iter=3, random_state=seed, scale_inputs=scale_inputs)
                model = make_pipeline(*transforms(), lpom).fit(fit_x, fit_y)
                fitted.append(model.score(fit_x, fit_y))
                validation.append(model.score(val_x, val_y))
            rows.append(
                dict(
                    scaling=name,
                    scale_inputs=scale_inputs,
                    rms=rms(transforms(), fit_x),
                    fitted=fitted,
                    validation=validation,
                )
            )
            mean = {key: statistics.mean(rows[-1][key]) for key in ('fitted', 'validation')}
            print(f'{name:18} scale_inputs={scale_inputs!s:5} rms {rows[-1]["rms"]:.2f}  fitted {mean["fitted"]:.3f}  '
                  f'validation {mean["validation"]:.3f}', flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'results.json').write_text(json.dumps(rows, indent=1) + '\n')
    (args.out / 'table.md').write_text(table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        '| inputs | RMS | `scale_inputs` | accuracy on the fitted rows (%) | validation accuracy (%) |',
        '|---|---|---|---|---|',
    ]
    lines += [
        f'| {r["scaling"]} | {r["rms"]:.2f} | {r["scale_inputs"]} | {mean_spread(r["fitted"], 100)} '
        f'| {mean_spread(r["validation"], 100)} |'
        for r in rows
    ]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
