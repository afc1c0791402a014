"""LPOM networks from optnets rules: the layer specs a rule's plan gives, the rules refused and why, and a stage
trained by LPOM that runs as the zoo's compiled stage of the same rule."""

import pytest
import torch
from torch import nn

from optnets import rules
from optnets.compiler.stage import CompiledStage
from optnets.lpom import LPOMConv
from optnets.lpom.topology import stage_specs

from tests.test_lpom_conv import squares


@pytest.mark.parametrize(
    'rule, expected',
    [
        ('x[k+1] = T(x[k])', ('conv4x3', 'conv4x3', 'conv4x3')),  # gradient descent: a plain chain
        ('x[k+1] = T(x[k]) + x[k]', ('conv4x3', 'conv4x3+1.0x', 'conv4x3+1.0x')),
        (rules.heavy_ball, ('conv4x3', 'conv4x3+1.0x', 'conv4x3+1.0x')),  # special: b1 = 1, b2 = 0, ResNet
        ('x[k+1] = 2*T(0.5*x[k]) - 0.25*x[k]', ('conv4x3', 'conv4x3-0.25x', 'conv4x3-0.25x')),
    ],
)
def test_stage_specs_read_the_plan(rule, expected):
    assert stage_specs(rule, 2, 4) == expected


def test_stage_specs_take_the_coefficients_at_each_step():
    rule = 'x[k+1] = T(x[k]) + c*x[k]'
    assert stage_specs(rules.Rule.parse(rule).with_inits(special={'c': lambda step, j: step / 2}), 3, 4) == (
        'conv4x3',
        'conv4x3',
        'conv4x3+0.5x',
        'conv4x3+1.0x',
    )


@pytest.mark.parametrize(
    'rule, init, message',
    [
        (
            rules.heavy_ball,
            'theory',
            r'-0.9\*x\[0\] \(at .theory., step 1\): an LPOM layer reads only the layer before it',
        ),
        ('x[k+1] = T(x[k] + x[k-1])', 'special', 'reads only the layer before it'),
        ('x[k+1] = sum_j T(x[j])', 'special', 'reads only the layer before it'),
        ('x[k+1] = T(y[k])\ny[k+1] = T(x[k+1])', 'special', 'one chain'),
        ('x[k+1] = c*T(x[k]) + x[k]', 'special', 'no T'),  # c starts at 0
    ],
)
def test_rules_that_couple_more_layers_are_refused_with_the_term(rule, init, message):
    with pytest.raises(ValueError, match=message):
        stage_specs(rule, 2, 4, init=init)


def test_a_resnet_stage_trained_by_lpom_runs_as_the_compiled_stage_of_its_rule():
    """Heavy ball at its special values is ResNet: trained without backpropagation, its convolutions as the T of
    ``CompiledStage(heavy_ball)`` (the zoo's stage, transition first) give the LPOM network's logits."""
    images, y = squares()
    model = LPOMConv(
        stage_specs(rules.heavy_ball, 2, 4), input_shape=(1, 8, 8), max_iter=3, batch_size=50, random_state=0
    ).fit(images[:200], y[:200])
    assert model.score(images[200:], y[200:]) > 0.9
    net = model.to_torch()
    transition, convs, head = nn.Sequential(net[0], net[1]), [net[2].map, net[4].map], net[6]
    stage = CompiledStage(
        rules.heavy_ball,
        2,
        lambda step, stream, widths: convs[step],
        width=4,
        learn_coeffs=False,
        activation=nn.ReLU(),
        transition=transition,
    )
    x = torch.from_numpy(images[200:])
    with torch.no_grad():
        torch.testing.assert_close(head(stage(x)), net(x))
