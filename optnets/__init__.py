"""optnets: networks from optimization algorithms, and training without backpropagation."""

from . import models, rules
from .compiler import CompiledStage, Plan, compile_rule, compile_stage
from .layer_objective import layer_objective
from .models import register, rule_model
from .rules import Rule, RuleError

__version__ = '0.1.0'
__all__ = [
    'rules',
    'models',
    'register',
    'rule_model',
    'Rule',
    'RuleError',
    'compile_rule',
    'compile_stage',
    'CompiledStage',
    'Plan',
    'layer_objective',
]
