"""A measurement over seeds (or searches) as the study tables print it."""

import statistics


def mean_spread(values, scale: float = 1.0) -> str:
    """``mean ± sample standard deviation`` of ``scale * values`` to two decimals: the mean alone for one value (no
    spread was measured), ``-`` for none."""
    values = [scale * v for v in values]
    if len(values) < 2:
        return f'{values[0]:.2f}' if values else '-'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'
