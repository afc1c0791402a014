"""Rule -> plan -> program -> module: history analysis, coefficient placement, fusions, the lowered program of a
stage's steps, the compiled stage."""

from .codegen import generate_forward
from .lower import Program, lower
from .plan import Coefficient, Plan, StreamPlan, compile_rule
from .stage import CompiledStage, compile_stage

__all__ = [
    'compile_rule',
    'compile_stage',
    'lower',
    'Plan',
    'Program',
    'StreamPlan',
    'Coefficient',
    'CompiledStage',
    'generate_forward',
]
