"""Search over update rules: the algorithms as starting points of an architecture search, on Optuna.

``RuleSpace`` is the space, as data; ``run`` drives an Optuna study over it (any objective: the recipes' is
``optnets.recipes.search.RecipeObjective``, which trains each rule with the Lightning recipe); ``leaderboard`` and
``export`` read a study back.
"""

from .space import NAMED, Point, RuleSpace, distance, nearest_named
from .study import export, leaderboard, run

__all__ = ['RuleSpace', 'Point', 'NAMED', 'distance', 'nearest_named', 'run', 'leaderboard', 'export']
