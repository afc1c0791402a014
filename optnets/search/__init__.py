"""Search over update rules: the algorithms as starting points of an architecture search, on Optuna.

``RuleSpace`` is the space, as data; ``run`` drives an Optuna study over it (any objective: the recipes' is
``optnets.recipes.search.RecipeObjective``, which trains each rule with the Lightning recipe); ``leaderboard`` and
``export`` read a study back.
"""

DEFAULT_STORAGE = 'sqlite:///optnets-search.db'
"""Where a study lives unless told: one SQLite file in the working folder."""

from .space import NAMED, Point, RuleSpace, distance, nearest_named  # noqa: E402

__all__ = ['RuleSpace', 'Point', 'NAMED', 'distance', 'nearest_named', 'run', 'leaderboard', 'export']


def __getattr__(name: str):
    """The study's functions, imported on first use: the space and ``optnets search --help`` need no Optuna."""
    if name in ('run', 'leaderboard', 'export'):
        from . import study

        return getattr(study, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
