"""The source language: update rules as data (IR), their text parser and the built-in algorithms."""

from .builtin import BUILTIN, Latest, admm, agd, gd, heavy_ball, linear_multistep, momentum, nesterov, nesterov_beta
from .errors import RuleError
from .ir import BinOp, HistorySum, Iterate, Num, Sym, Term, Transform, Update
from .parser import parse
from .rule import READINGS, Rule
from .semantics import evaluate

__all__ = [
    'Rule',
    'RuleError',
    'parse',
    'evaluate',
    'BUILTIN',
    'gd',
    'heavy_ball',
    'nesterov',
    'agd',
    'admm',
    'momentum',
    'linear_multistep',
    'Latest',
    'nesterov_beta',
    'READINGS',
    'Update',
    'Term',
    'Iterate',
    'Transform',
    'HistorySum',
    'Num',
    'Sym',
    'BinOp',
]
