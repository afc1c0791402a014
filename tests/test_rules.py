"""The rule language: canonical text round trips, positioned errors, and a fuzz test."""

import pytest
from hypothesis import given, settings, strategies as st

from optnets import Rule, RuleError, rules
from optnets.rules import HistorySum, Iterate, Transform
from optnets.rules.ir import DataGradient

ROUND_TRIP = [
    'x[k+1] = T(x[k]) + (1-c)*x[k] + c*x[k-1]',
    'x[k+1] = -x[k] - 2*c*x[k-1] + T(x[k] - x[k-1])/2',
    'x[k+1] = c*(x[k] - x[k-1]) + 0.5*b*T(x[k])',
    'x[k+1] = T(x[k]) + x[k] + c*sum_j x[j]',
    'x[k+1] = sum_j a[j]*T(x[j]) + sum_j (b[j] - 1/3)*x[j]; y[k+1] = T(y[k]) + x[k-2]',
    'z[k+1] = T(z[k] / (1 + g)) - g*z[k-1]  # a comment',
    'y[k+1] = T(y[k]) + a1*x[k]; x[k+1] = T(x[k] + y[k+1]) - a3*sum_t (y[t] - x[t])',
    'x[k+1] = (2 - c)*x[k] + c*(d + (e - f))*x[k-1]',
    'x[k+1] = 1.5/(1 + g)*-1*T(x[k]) - (d/g)*x[k-1]',  # a negated quotient prints as -a/b, which parses back
    'x[k+1] = T(x[k] - a*G(x[k]))',  # ISTA, the data term's gradient written out
    'x[k+1] = T(b1*x[k] + b2*x[k-1] - a*G(b1*x[k] + b2*x[k-1])) - c*G(x[k-1])',
]


@pytest.mark.parametrize('rule', list(rules.BUILTIN.values()), ids=list(rules.BUILTIN))
def test_builtin_round_trip(rule):
    assert Rule.parse(str(rule)) == rule
    assert rule.inits['special'].keys() == rule.inits['theory'].keys() == rule.symbols.keys()


@pytest.mark.parametrize('text', ROUND_TRIP)
def test_round_trip(text):
    rule = Rule.parse(text)
    assert Rule.parse(str(rule)) == rule
    assert str(Rule.parse(str(rule))) == str(rule)


def test_ir_reads_like_the_rule():
    (update,) = rules.nesterov.updates
    (term,) = update.terms
    assert isinstance(term.value, Transform)
    assert [t.value for t in term.value.terms] == [Iterate('x', 0), Iterate('x', 1)]
    assert [str(t.coeff) for t in term.value.terms] == ['b1', 'b2']
    sums = [t.value for t in rules.agd.updates[0].terms]
    assert sums == [HistorySum('j', 'x', transformed=True), HistorySum('j', 'x')]
    assert rules.admm.streams == ('y', 'x')
    assert rules.admm.symbols == dict.fromkeys(['a1', 'a2', 'a3', 'b1', 'b2', 'b3', 'b4'], False)
    assert rules.agd.symbols == {'a': True, 'b': True}


def test_the_data_gradient_reads_a_linear_combination_inside_or_outside_t():
    (update,) = Rule.parse('x[k+1] = T(x[k] - a*G(x[k] + b*x[k-1])) + c*G(x[k])').updates
    inside, outside = update.terms
    assert outside.value == DataGradient((rules.Term(rules.Num(1.0), Iterate('x', 0)),))
    step, gradient = inside.value.terms
    assert step.value == Iterate('x', 0) and isinstance(gradient.value, DataGradient)
    assert [str(t) for t in gradient.value.terms] == ['x[k]', 'b*x[k-1]']


ERRORS = [  # text, message fragment, (line, column)
    ('x[k+1] = T(x[k]', "expected ')' to close T(", (1, 16)),
    ('x[k+1] = T(x[k+1])', 'x[k+1] is read in its own update', (1, 12)),
    ('x[k+1] = T(x[k+2])', 'reads the future', (1, 12)),
    ('x[k+1] = y[k+1]; y[k+1] = T(y[k])', "y[k+1] is read in an update before y[k+1]'s", (1, 10)),
    ('x[k+1] = T(x[k]) + y[k]', "undefined stream 'y'", (1, 20)),
    ('x[k+1] = T(T(x[k]))', 'T(T(...)) is not supported', (1, 12)),
    ('x[k+1] = G(G(x[k]))', 'G(G(...)) is not supported', (1, 12)),
    ('x[k+1] = G(T(x[k]))', 'G(...) reads iterates such as x[k]', (1, 12)),
    (
        'x[k+1] = G(sum_j T(x[j]))',
        'G(...) reads iterates such as x[k] and sums such as sum_j x[j], not T(x[j])',
        (1, 12),
    ),
    ('x[k+1] = T(x[k] + sum_j x[j])', 'T(sum_j ...) is not supported', (1, 19)),
    ('x[k+1] = x[k] - G(2)', 'G(...) must be applied to iterates', (1, 19)),
    ('x[k+1] = G*x[k]', "'G' is reserved", (1, 10)),
    ('x[k+1] = a*x[k] + sum_j a[j]*x[j]', "coefficient 'a' is used with two meanings", (1, 25)),
    ('x[k+1] = x[k]*x[k-1]', 'product of two iterates', (1, 15)),
    ('x[k+1] = T(x[k]) + 1', 'not linear in the iterates', (1, 20)),
    ('x[k] = T(x[k])', "'+1'", (1, 4)),
    ('x[k+1] = T(x[k])\ny[k+1] = $', "unexpected character '$'", (2, 10)),
    ('x[k+1] = T(x[k]) +\n', 'found a line break', (1, 19)),
    ('x[k+1] = a[j]*x[k]', 'outside any sum', (1, 12)),
    ('x[k+1] = sum_j x[k]', 'its body may read only', (1, 16)),
    ('x[k+1] = T(x[k]); x[k+1] = x[k]', "stream 'x' is assigned twice", (1, 19)),
    ('x[k+1] = T(x[k]) / x[k-1]', 'cannot divide by an iterate', (1, 20)),
    ('x[k+1] = x[k]/0', 'division by zero', (1, 14)),
    ('x[k+1] = x[k]/(2 - 2*1)', 'division by zero', (1, 14)),
    ('x[k+1] = T(x[k]) + c/(d-d)*x[k]', 'd - d is 0 for every value', (1, 21)),
    ('x[k+1] = T(x[k]) + c/(0*d)*x[k]', '0*d is 0 for every value', (1, 21)),
    ('x[k+1] = T(x[k]) + c/(d*e - e*d)*x[k]', 'is 0 for every value', (1, 21)),
    ('x[k+1] = T(x[k]) + c/(d/e - d/e)*x[k]', 'is 0 for every value', (1, 21)),
    ('x[k+1] = x[k]' + ' ' * 10_000, 'a rule of 10013 characters: at most 10000', (1, 10001)),
    ('x[k+1] = 1e999*x[k]', 'number out of range', (1, 10)),
    ('x[k+1] = 1e200*1e200*x[k]', 'number out of range', (1, 15)),
    ('x[k+1] = if*x[k]', "'if' is reserved", (1, 10)),
    ('x[k+1] = None*x[k]', "'None' is reserved", (1, 10)),
    ('x[k+1] = _c*x[k]', "'_c' is reserved", (1, 10)),
    ('x[k+1] = x[k-65]', 'window limit', (1, 14)),
    ('x[k+1] = x[k-1000000]', 'window limit', (1, 14)),
    ('x[k+1] = ' + '(' * 40 + 'x[k]' + ')' * 40, 'nested deeper than 32', (1, 42)),
    ('x[k+1] = ' + '-' * 3000 + 'x[k]', 'nested deeper than 32', (1, 42)),
    ('x[k+1] = ' + ' + '.join(['x[k]'] * 65), 'more than 64 terms', (1, 456)),
    ('x[k+1] = (' + ' + '.join('c' * 34) + ')*x[k]', 'more than 32 operators', (1, 141)),
]


@pytest.mark.parametrize('text, fragment, where', ERRORS)
def test_errors_name_the_position(text, fragment, where):
    with pytest.raises(RuleError) as info:
        Rule.parse(text)
    message = str(info.value)
    assert fragment in message
    assert f'(line {where[0]}, column {where[1]})' in message
    # the caret sits under the offending character of the quoted line (a long line is shown around it)
    quoted, caret = message.splitlines()[1:3]
    line = text.splitlines()[where[0] - 1]
    elided = quoted.startswith('    ...')
    shown = quoted[7 if elided else 4 :].removesuffix('...')
    first = where[1] - 1 - (caret.index('^') - (7 if elided else 4))  # where the shown part starts in the line
    assert line[first : first + len(shown)] == shown and (first > 0) == elided
    assert isinstance(info.value, ValueError)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='xyzabjkT[]()+-*/=;\n 0123456789._sume', max_size=60))
def test_fuzz_raises_only_rule_errors(text):
    try:
        rule = Rule.parse(text)
    except RuleError:
        return
    assert Rule.parse(str(rule)) == rule


_iterate = st.sampled_from(['x[k]', 'x[k-1]', 'x[k-2]', 'y[k]'])
_coeff = st.sampled_from(['', '2*', 'c*', '(1-c)*', '0.5*b*', '-'])
_term = st.one_of(
    st.builds(lambda c, i: c + i, _coeff, _iterate),
    st.builds(lambda c, i, j: f'{c}T({i} + {j})', _coeff, _iterate, _iterate),
    st.builds(lambda c: f'sum_j {c}a[j]*x[j]', _coeff),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_term, min_size=1, max_size=4), st.lists(_term, min_size=1, max_size=2))
def test_generated_rules_round_trip(x_terms, y_terms):
    rule = Rule.parse(f'x[k+1] = {" + ".join(x_terms)}\ny[k+1] = {" + ".join(y_terms)}')
    assert Rule.parse(str(rule)) == rule


def test_rule_error_for_non_text():
    with pytest.raises(RuleError):
        Rule.parse(None)


def test_the_rule_layer_stands_alone_and_ir_is_its_leaf():
    """rules/ and the plan analysis import only the standard library and the rule layer; ir imports nothing of
    optnets (no cycle through it)."""
    import ast
    import sys
    from pathlib import Path

    folder = Path(rules.__file__).parent
    for path in [*folder.glob('*.py'), folder.parent / 'compiler' / 'plan.py']:  # the plan analysis too
        tree = ast.parse(path.read_text())
        imported = [(n.level, n.module or '') for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [(0, a.name) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        outside = [
            m
            for level, m in imported
            if level == 0 and m.split('.')[0] not in sys.stdlib_module_names and m != '__future__'
        ]
        assert not outside, f'{path.name} imports {outside}'
        if path.name == 'ir.py':
            assert all(level == 0 for level, _ in imported), 'ir.py imports a sibling module'
        if path.name == 'plan.py':  # from the compiler, only the rule layer
            assert all(m.startswith('rules') for level, m in imported if level == 2) and all(
                level in (0, 2) for level, _ in imported
            ), f'plan.py imports {imported}'


@pytest.mark.parametrize(
    'text, at',
    [
        ('x[k+1] = T(x[k]) + 1e300*a*1e300*x[k]', '*1e300'),
        ('x[k+1] = T(x[k]) + a/5e-324*x[k]', '/5e-324'),
        ('x[k+1] = T(x[k]) + (1e300*a*1e300)*0*x[k]', '*1e300)'),
    ],
)
def test_folding_out_of_the_finite_range_is_refused_where_it_happens(text, at):
    with pytest.raises(RuleError, match='out of range') as error:
        Rule.parse(text)
    assert error.value.pos == text.index(at)


def test_a_huge_lag_is_refused_with_its_position_not_pythons_int_limit():
    for sign, message in (('-', 'window limit'), ('+', 'reads the future')):
        text = f'x[k+1] = x[k{sign}' + '9' * 5000 + ']'
        with pytest.raises(RuleError, match=message) as error:
            Rule.parse(text)
        assert error.value.pos is not None and len(str(error.value)) < 400


def test_the_number_of_streams_is_limited():
    from optnets.rules.parser import MAX_STREAMS

    Rule.parse('; '.join(f's{i}[k+1] = s{i}[k]' for i in range(MAX_STREAMS)))
    with pytest.raises(RuleError, match='streams'):
        Rule.parse('; '.join(f's{i}[k+1] = s{i}[k]' for i in range(MAX_STREAMS + 1)))


@pytest.mark.parametrize(
    'text',
    [
        'x[k+1] = T(x[k]) - (a*b)*x[k]',
        'x[k+1] = -(a*b*c)*x[k] + 2*(a*-b)*x[k-1]',
        'x[k+1] = 0.25/(1 + g)*-d*T(x[k])',
        'x[k+1] = -(2*a/b)*x[k]',
    ],
)
def test_a_product_under_unary_minus_prints_as_the_same_tree(text):
    rule = Rule.parse(text)
    assert Rule.parse(str(rule)) == rule


def test_a_divisor_that_starts_at_zero_is_a_positioned_error_not_a_crash():
    import timm
    import optnets

    text = 'x[k+1] = T(x[k]) + a/b*x[k]'
    assert 'undefined: a/b divides by zero' in str(optnets.compile_rule(Rule.parse(text)))
    optnets.register('divides_at_init_net', text, depth=8)
    with pytest.raises(RuleError, match='a/b divides by zero') as error:
        timm.create_model('divides_at_init_net')
    assert error.value.pos == str(Rule.parse(text)).index('a/b')
    optnets.register('divides_later_net', text, depth=8, special={'b': 1.0})
    timm.create_model('divides_later_net')


@pytest.mark.parametrize('divisor', ['d - e', 'd*d - e', '(d - 1)*e', 'd/e - 1'])
def test_a_divisor_that_is_zero_only_for_some_values_is_allowed(divisor):
    Rule.parse(f'x[k+1] = T(x[k]) + c/({divisor})*x[k]')


def test_a_long_rule_is_refused_before_it_is_read(monkeypatch):
    from optnets.rules import parser

    monkeypatch.setattr(parser, 'tokenize', lambda text: pytest.fail('a 1.4 MB rule was tokenized'))
    with pytest.raises(RuleError, match='at most 10000'):
        Rule.parse('x[k+1] = ' + ' + '.join(['T(x[k])'] * 140_000))
