"""The source language: update rules as data (IR), their text parser and the built-in algorithms."""
from .builtin import BUILTIN, Latest, admm, agd, gd, heavy_ball, nesterov, nesterov_beta
from .ir import BinOp, HistorySum, Iterate, Num, Rule, Sym, Term, Transform, Update
from .errors import RuleError
from .parser import parse
from .semantics import evaluate

__all__ = [
    'Rule', 'RuleError', 'parse', 'evaluate', 'BUILTIN', 'gd', 'heavy_ball', 'nesterov', 'agd', 'admm', 'Latest',
    'nesterov_beta', 'Update', 'Term', 'Iterate', 'Transform', 'HistorySum', 'Num', 'Sym', 'BinOp',
]
