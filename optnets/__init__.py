"""optnets: networks from optimization algorithms, and training without backpropagation."""
from . import rules
from .compiler import CompiledStage, Plan, compile_rule, compile_stage
from .rules import Rule, RuleError

__version__ = '0.1.0'
__all__ = ['rules', 'Rule', 'RuleError', 'compile_rule', 'compile_stage', 'CompiledStage', 'Plan']
