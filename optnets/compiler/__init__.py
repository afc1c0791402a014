"""Rule -> plan -> module: history analysis, coefficient placement, fusions, the compiled stage."""

from .codegen import generate_forward
from .plan import Coefficient, Plan, StreamPlan, compile_rule
from .stage import CompiledStage, compile_stage

__all__ = ['compile_rule', 'compile_stage', 'Plan', 'StreamPlan', 'Coefficient', 'CompiledStage', 'generate_forward']
