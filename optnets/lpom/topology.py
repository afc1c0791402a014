"""LPOM architectures from optnets rules: the zoo's ``Rule -> Plan -> Program``, read as layer specs for
``LPOMConv``.

A step ``x[k+1] = phi(a*T(x[k]) + c*x[k])`` with ``T`` a convolution is one LPOM layer ``phi(L(x[k]))`` with
``L = a*conv + c*I``: linear in ``x`` and in the weights, so the lifted objective holds (``a`` folds into the
convolution's weights; ``c*x[k]`` is the skip of ``convCxK+cx``). Plain gradient-descent stages give plain
convolutions, ResNet's rule skips of one. A step that reads ``x[k-1]`` or a history couples more than two
layers, which LPOM's objective (a sum of terms over consecutive layers) does not have, and is refused; LPOM learns
weights, not coefficients, so these are fixed at one of the rule's initialisations (heavy ball at ``special``,
``b2 = 0``, is ResNet and trains; at ``theory`` it reads ``x[k-1]`` and is refused).
"""

from __future__ import annotations

from ..compiler.lower import CallT, Combination, Read, describe, lower_fixed, terms
from ..compiler.plan import compile_rule
from ..rules.rule import Rule


def stage_specs(
    rule: Rule | str, steps: int, channels: int, kernel: int = 3, init: str = 'special', norm: bool = False
) -> tuple[str, ...]:
    """The specs of one stage: a transition convolution to ``channels`` (as the zoo's stages start), then
    ``steps`` steps of ``rule`` with its coefficients at ``init``, read from the stage's lowered program."""
    plan = compile_rule(rule)
    if len(plan.streams) != 1:
        raise ValueError(f'{plan.rule}: LPOM layers form one chain; a rule with streams {plan.stream_names} does not')
    bn = 'bn' if norm else ''
    specs = [f'conv{channels}x{kernel}{bn}']
    for step in lower_fixed(plan, steps, init).steps:
        ((stream, update),) = step.updates
        transform, skip, latest = 0.0, 0.0, Read(stream, step.index)
        for coeff, value in terms(update):
            if isinstance(value, CallT) and [v for _, v in terms(value.arg)] == [latest]:  # T(c*x[k]): c folds in
                transform += coeff
            elif value == latest:
                skip += coeff
            else:
                term = describe(Combination(((coeff, value),)), step.index)
                raise ValueError(
                    f'{term} (at {init!r}, step {step.index}): an LPOM layer reads only the layer before it, '
                    f'{stream}[{step.index}] through T or a skip; this term couples more layers than the lifted '
                    'objective has'
                )
        if transform == 0.0:
            raise ValueError(f'{plan.rule} at {init!r}, step {step.index}: no T(x[k]) term, so no weights to learn')
        specs.append(f'conv{channels}x{kernel}{bn}' + (f'{"+" if skip > 0 else "-"}{abs(skip)!r}x' if skip else ''))
    return tuple(specs)
