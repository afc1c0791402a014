"""The compiler: plans, special-case equivalences, accumulators, fuse() and training of any rule."""

import inspect

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import optnets
from optnets import Rule, compile_rule, compile_stage, rules
from optnets.blocks import BasicTransform, DenseLayer

from tests.helpers import randomise_norms

WIDTH, STEPS = 6, 3


def basic(step, stream, widths):
    return BasicTransform(WIDTH, WIDTH)


def dense(step, stream, widths):
    return DenseLayer(widths, growth=4, bn_size=None)


def hand_written(rule, stage, x):
    """What plain CNN / ResNet / DenseNet / merge-and-run stages compute with the stage's own transforms."""
    relu = torch.relu
    if rule is rules.agd:
        features = [x]
        for T in stage.T_x:
            inp = T.norm1(torch.cat(features, 1))
            features.append(T.conv1(inp))
        return torch.cat(features, 1)
    if rule is rules.admm:
        y = x
        for T_y, T_x in zip(stage.T_y, stage.T_x):
            merged = (x + y) / 2
            y, x = T_y(y) + merged, T_x(x) + merged
        return (y + x) / 2
    if rule is rules.momentum:  # Momentum ResNet: v <- g v + (1-g) T(x), x <- x + v
        v = torch.zeros_like(x)
        for T in stage.T_x:
            v = 0.9 * v + 0.1 * T(x)
            x = x + v
        return x
    residual = rule in (rules.heavy_ball, rules.linear_multistep)  # ResNet at their special values
    for T in stage.T_x:
        x = relu(T(x) + x) if residual else relu(T(x))
    return x


@pytest.mark.parametrize('learn', [True, False])
@pytest.mark.parametrize('name', list(rules.BUILTIN))
def test_special_init_is_the_classic_network(name, learn):
    rule = rules.BUILTIN[name]
    is_dense = rule is rules.agd
    act = None if rule in (rules.agd, rules.admm, rules.momentum) else nn.ReLU()
    stage = compile_stage(
        rule,
        STEPS,
        dense if is_dense else basic,
        4 if is_dense else WIDTH,
        in_width=WIDTH,
        learn_coeffs=learn,
        activation=act,
    )
    randomise_norms(stage)
    x = torch.randn(2, WIDTH, 7, 7)
    rtol = 1e-6 if rule is rules.momentum else 0  # the velocity form rounds differently from the rule's
    torch.testing.assert_close(stage(x), hand_written(rule, stage, x), rtol=rtol, atol=1e-6)
    if not learn:  # fixed special values compile to the classic code: no coefficient is touched
        assert 'coeff' not in stage.code and not list(stage.parameters(recurse=False))


def test_fixed_special_folds_to_plain_ops():
    stage = compile_stage(rules.heavy_ball, STEPS, basic, WIDTH, learn_coeffs=False, activation=nn.ReLU())
    assert 'self.act(self.T_x[2](x_0) + x_0)' in stage.code
    assert len(list(stage.coeff.parameters())) == 0


def test_parameters_are_named_after_rule_symbols():
    stage = compile_stage(rules.heavy_ball, STEPS, basic, WIDTH)
    assert dict(stage.coeff.named_parameters()).keys() == {'b1', 'b2'}
    assert stage.coeff.b1.shape == (STEPS,)
    channel = compile_stage(rules.heavy_ball, STEPS, basic, WIDTH, coeff_shape='channel')
    assert channel.coeff.b2.shape == (STEPS, WIDTH, 1, 1)
    indexed = compile_stage(rules.agd, STEPS, dense, 4, in_width=WIDTH)
    assert indexed.coeff.a.shape == (STEPS * (STEPS + 1) // 2,)  # a[j] for j <= step, packed


def test_theory_init_uses_the_algorithms_coefficients():
    stage = compile_stage(rules.nesterov, 4, basic, WIDTH, coeff_init='theory')
    beta = [rules.nesterov_beta(k) for k in range(4)]
    assert beta[0] == beta[1] == 0 < beta[2] < beta[3] < 1  # theta_0 = 1 makes the first two steps plain
    torch.testing.assert_close(stage.coeff.b1.detach(), torch.tensor([1 + b for b in beta]))
    torch.testing.assert_close(stage.coeff.b2.detach(), torch.tensor([-b for b in beta]))
    hb = compile_stage(rules.heavy_ball, 2, basic, WIDTH, coeff_init='theory')  # increment reading: 1+beta, -beta
    assert hb.coeff.b1.tolist() == pytest.approx([1.9, 1.9]) and hb.coeff.b2.tolist() == pytest.approx([-0.9, -0.9])


def test_accumulator_memory_is_independent_of_depth():
    rule = 'x[k+1] = T(x[k]) + x[k] + c*sum_j x[j]'
    plan = compile_rule(rule)
    assert plan.streams[0].accumulator and not plan.streams[0].whole_history
    shallow, deep = (compile_stage(rule, k, basic, WIDTH) for k in (4, 32))
    assert shallow.kept_tensors() == deep.kept_tensors() == 2
    x = torch.randn(1, WIDTH, 4, 4)
    s = x.clone()
    y = x
    with torch.no_grad():  # the accumulator computes the true history sum
        for k, T in enumerate(shallow.T_x):
            y = T(y) + y + shallow.coeff.c[k] * s
            s = s + y
        torch.testing.assert_close(shallow(x), y)
    # an indexed coefficient needs the whole history: it grows with depth
    indexed = [compile_stage('x[k+1] = T(x[k]) + sum_j c[j]*x[j]', k, basic, WIDTH) for k in (4, 32)]
    assert indexed[0].kept_tensors() < indexed[1].kept_tensors()


def test_plan_prints_like_the_formula():
    text = str(compile_rule(rules.admm))
    assert 'x[k+1] = T(x[k]) + b1*x[k] + b2*y[k] + b3*y[k+1] + sum_t b4*y[t] - sum_t b4*x[t]' in text
    assert 'b3       one per step; special: 0.0, theory: 0.5' in text
    assert 'reading: T is the increment' in text and 'special: preserved' in text
    program = str(compile_stage(rules.admm, 3, basic, WIDTH).program)
    assert program.startswith(text) and 'running difference D = sum_j (y[j] - x[j])' in program  # one accumulator
    assert 'step 2: x[3] = T_x[2](x[2]) + b1[2]*x[2] + b2[2]*y[2] + b3[2]*y[3] + b4[2]*D' in program
    agd = compile_stage(rules.agd, 2, dense, 4).program
    assert 'a[j]' in str(agd.plan) and 'whole history' in str(agd)
    assert 'fused transform calls:\n    x: sum_j a[j]*T(x[j]) = tail(conv(concat_j(a[j] * P(x[j]))))' in str(agd.plan)


FUSE_CASES = [
    ('heavy_ball', rules.heavy_ball, basic, WIDTH, nn.ReLU()),
    ('nesterov', rules.nesterov, basic, WIDTH, nn.ReLU()),
    ('agd', rules.agd, dense, 4, None),
    ('admm', rules.admm, basic, WIDTH, None),
    ('multistep', 'x[k+1] = T(x[k]) + (1-c)*x[k] + c*x[k-1]', basic, WIDTH, nn.ReLU()),
    ('scaled', 'x[k+1] = 0.5*b*T(x[k]) + x[k]', basic, WIDTH, None),
]


@pytest.mark.parametrize(
    'name, rule, transform, width, act, shape',
    [
        (*case, shape)
        for case in FUSE_CASES
        for shape in ('scalar', 'channel')
        if not (case[0] == 'agd' and shape == 'channel')  # dense stages take scalar coefficients
    ],
    ids=lambda v: v if isinstance(v, str) and '[' not in v else None,
)
def test_fuse_keeps_outputs(name, rule, transform, width, act, shape):
    stage = compile_stage(rule, STEPS, transform, width, in_width=WIDTH, coeff_shape=shape, activation=act)
    with torch.no_grad():
        for p in stage.coeff.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    randomise_norms(stage)
    x = torch.randn(2, WIDTH, 6, 6)
    with torch.no_grad():
        before = stage(x)
        stage.fuse()
        after = stage(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    if shape == 'scalar':
        assert not list(stage.coeff.parameters())
        if name != 'agd':  # a dense stage keeps b[j] as one buffer row a step
            assert 'self.coeff' not in stage.code


def test_torchscript_runs_the_generated_code():
    stage = randomise_norms(compile_stage(rules.agd, STEPS, dense, 4, in_width=WIDTH))
    x = torch.randn(1, WIDTH, 5, 5)
    torch.testing.assert_close(torch.jit.script(stage)(x), stage(x))


def test_a_new_rule_compiles_and_trains():
    torch.manual_seed(0)
    stage = compile_stage('x[k+1] = T(x[k]) + (1-c)*x[k] + c*x[k-1]', STEPS, basic, WIDTH, activation=nn.ReLU())
    head = nn.Linear(WIDTH, 3)
    x, y = torch.randn(16, WIDTH, 6, 6), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD([*stage.parameters(), *head.parameters()], lr=0.05, momentum=0.9)

    def loss():
        return F.cross_entropy(head(stage(x).mean((2, 3))), y)

    first = loss().item()
    for _ in range(15):
        opt.zero_grad()
        value = loss()
        value.backward()
        assert stage.coeff.c.grad is not None and stage.coeff.c.grad.abs().sum() > 0
        opt.step()
    assert loss().item() < 0.7 * first


def test_bad_stage_arguments():
    with pytest.raises(ValueError, match='coeff_init'):
        compile_stage(rules.heavy_ball, 2, basic, WIDTH, coeff_init='random')
    with pytest.raises(ValueError, match='transition'):
        compile_stage(rules.heavy_ball, 2, basic, WIDTH, in_width=3)
    with pytest.raises(ValueError, match='one width'):
        compile_stage(rules.agd, 2, dense, 4, in_width=WIDTH, coeff_shape='channel')


def test_public_api():
    assert optnets.Rule is rules.Rule and issubclass(optnets.RuleError, ValueError)


@pytest.mark.parametrize('compiling', [False, True], ids=['eager-product', 'compiler-reduction'])
@pytest.mark.parametrize('in_width', [WIDTH, 8], ids=['input-width-apart', 'input-width-a-multiple'])
def test_dense_step_computes_the_agd_rule_with_any_coefficients(in_width, compiling, monkeypatch):
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: compiling)
    stage = randomise_norms(compile_stage(rules.agd, STEPS, dense, 4, in_width=in_width))
    with torch.no_grad():
        for p in stage.coeff.parameters():
            p.copy_(torch.randn_like(p))
        x = torch.randn(2, in_width, 5, 5)
        history = [x]
        for k, T in enumerate(stage.T_x):
            a = stage.coeff.a[k * (k + 1) // 2 :][: k + 1]
            b = stage.coeff.b[k * (k + 1) // 2 :][: k + 1]
            heads = T.norm1(torch.cat(history, 1)).split([h.shape[1] for h in history], 1)
            transformed = T.conv1(torch.cat([a_j * h for a_j, h in zip(a, heads)], 1))  # sum_j a[j]*T(x[j])
            history.append(transformed + sum(b[j] * history[j] for j in range(1, k + 1)))  # + sum_j b[j]*x[j]
        torch.testing.assert_close(stage(x), torch.cat(history, 1), rtol=1e-5, atol=1e-5)


def test_a_dense_stage_reads_each_learned_coefficient_once_split_into_its_rows():
    """Each step's row is then a piece of one split, whose gradient is one slice of the coefficient's: a slice of the
    parameter a step made inductor's backward sum a masked copy of every step's (``vs_timm.py --compile``)."""
    stage = compile_stage(rules.agd, STEPS, dense, 4, in_width=8)
    names = [name for name, _ in stage.coeff.named_parameters()]
    assert names == ['a', 'b']
    for name in names:
        assert stage.code.count(f'self.coeff.{name}') == 1 and f'self.coeff.{name}.clone().split(' in stage.code


@pytest.mark.parametrize('compiling', [False, True], ids=['eager-scales-the-weight', 'compiler-scales-the-input'])
@pytest.mark.parametrize('widths', [(8, 4, 4, 4), (3, 5, 5, 2, 4, 4, 4), (4, 4, 4)])
def test_a_dense_layer_is_the_sum_of_its_summands_for_any_input_widths(widths, compiling, monkeypatch):
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: compiling)
    layer = DenseLayer(widths, growth=3, bn_size=2, dtype=torch.float64)
    xs = [torch.randn(2, w, 4, 4, dtype=torch.float64) for w in widths]
    a = torch.randn(len(widths), dtype=torch.float64, requires_grad=True)
    fused = layer(torch.cat(xs, 1), a)
    summands = layer.tail(sum(a[j] * layer.head(x, j) for j, x in enumerate(xs)))
    torch.testing.assert_close(fused, summands)
    grad = torch.randn_like(fused)
    torch.testing.assert_close(*(torch.autograd.grad(out, a, grad)[0] for out in (fused, summands)))


COMPILE_ERRORS = [  # rule, message fragment, the text under the caret
    ('x[k+1] = sum_j a[j]*T(x[j]); y[k+1] = T(y[k])', 'has one stream', 'y[k+1]'),
    ('x[k+1] = x[k] + sum_j a[j]*T(x[j]) + T(x[k])', 'T(...) beside sum_j', 'T(x[k])'),
]


@pytest.mark.parametrize('text, fragment, at', COMPILE_ERRORS)
def test_rules_the_compiler_cannot_build_are_refused_with_the_position(text, fragment, at):
    with pytest.raises(optnets.RuleError, match=fragment.replace('(', r'\(').replace(')', r'\)')) as info:
        compile_rule(text)
    quoted, caret = str(info.value).splitlines()[1:3]
    assert quoted[caret.index('^') :].startswith(at)


@pytest.mark.parametrize('name', ['training', 'forward', 'cuda'])
def test_coefficient_names_taken_by_torch_are_refused(name):
    with pytest.raises(optnets.RuleError, match=f'coefficient {name!r}'):
        compile_stage(f'x[k+1] = T(x[k]) + {name}*x[k]', 2, basic, WIDTH)


def test_a_fixed_zero_divisor_is_a_clear_error():
    rule = rules.Rule.parse('x[k+1] = T(x[k]/g) + x[k]')  # g starts at 0 when no init names it
    with pytest.raises(ValueError, match='divides by zero'):
        compile_stage(rule, 2, basic, WIDTH, learn_coeffs=False)
    compile_stage(rule.with_inits(special={'g': 2.0}), 2, basic, WIDTH, learn_coeffs=False)


def test_channel_coefficients_own_their_memory_in_every_dtype():
    for dtype in (torch.float32, torch.float64):
        stage = compile_stage(
            rules.heavy_ball,
            STEPS,
            lambda k, s, w: BasicTransform(WIDTH, WIDTH, dtype=dtype),  # noqa: B023
            WIDTH,
            coeff_shape='channel',
            dtype=dtype,
        )
        assert stage.coeff.b1.dtype == dtype and 0 not in stage.coeff.b1.stride()
        opt = torch.optim.SGD(stage.parameters(), lr=0.1)
        stage(torch.randn(2, WIDTH, 4, 4, dtype=dtype)).sum().backward()
        opt.step()  # an expand()-ed alias fails here


def test_generated_code_does_not_inherit_future_flags():
    stage = compile_stage(rules.heavy_ball, STEPS, basic, WIDTH)
    assert stage.forward.__annotations__ == {'x_in': torch.Tensor, 'return': torch.Tensor}


def test_one_class_per_generated_forward_and_pickling_round_trips():
    import copy
    import io
    import pickle

    first, second = (randomise_norms(compile_stage(rules.admm, STEPS, basic, WIDTH)) for _ in range(2))
    other = compile_stage(rules.admm, STEPS, basic, WIDTH, learn_coeffs=False)
    assert type(first) is type(second) and type(first) is not type(other)
    x = torch.randn(2, WIDTH, 5, 5)
    buffer = io.BytesIO()
    torch.save(first, buffer)
    buffer.seek(0)
    for clone in (torch.load(buffer, weights_only=False), pickle.loads(pickle.dumps(first)), copy.deepcopy(first)):
        assert type(clone) is type(first) and clone.code == first.code
        torch.testing.assert_close(clone(x), first(x), rtol=0, atol=0)


def test_a_fused_state_never_loads_into_an_unfused_stage():
    import copy

    stage = compile_stage(rules.agd, STEPS, dense, 4, in_width=WIDTH)
    with torch.no_grad():
        for p in stage.coeff.parameters():
            p.add_(0.5)
    stage = randomise_norms(stage)
    fused = copy.deepcopy(stage).fuse()
    with pytest.raises(RuntimeError, match='saved after fuse'):
        stage.load_state_dict(fused.state_dict(), strict=False)
    with pytest.raises(RuntimeError, match='saved before fuse'):
        copy.deepcopy(fused).load_state_dict(stage.state_dict())
    twin = copy.deepcopy(stage).fuse()
    twin.load_state_dict(fused.state_dict())  # fused the same way: loads, and computes the same
    x = torch.randn(2, WIDTH, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), stage(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    'op, left, right, expected',
    [
        ('*', 'c', 0.0, 0.0),
        ('*', 0.0, 'c', 0.0),
        ('*', 1.0, 'c', 'c'),
        ('*', 'c', 1.0, 'c'),
        ('/', 'c', 1.0, 'c'),
        ('+', 0.0, 'c', 'c'),
        ('+', 'c', 0.0, 'c'),
        ('-', 'c', 0.0, 'c'),
        ('+', 1.0, 'c', '(1.0 + c)'),
        ('-', 'c', 1.0, '(c - 1.0)'),
        ('-', 0.0, 'c', '(0.0 - c)'),
        ('/', 0.0, 'c', '(0.0 / c)'),
        ('+', 1.0, 2.0, 3.0),
    ],
)
def test_constant_folding_decisions(op, left, right, expected):
    from optnets.compiler.lower import fold

    assert fold(op, left, right) == expected


def test_folding_refuses_a_fixed_zero_divisor():
    from optnets.compiler.lower import fold

    for left in ('c', 1.0):
        with pytest.raises(ZeroDivisionError):
            fold('/', left, 0.0)


@pytest.mark.parametrize(
    'text',
    [
        'S[k+1] = 0.5*S[k] + 0.25*sum_j new[j]\nnew[k+1] = 0.5*new[k]',  # both want S_new
        'S_[k+1] = 0.5*S_[k] + 0.25*sum_j _0[j]\n_0[k+1] = 0.5*_0[k-1]',  # S__0, and _0's window _0_0
        'x[k+1] = 0.5*x[k] + sum_j h_x[j]*0.25\nh_x[k+1] = x[k+1] - 0.5*sum_j a[j]*x[j]',  # h_x and h_h_x
        'torch[k+1] = 0.5*torch[k] + 0.25*self[k-1]\nself[k+1] = 0.5*self[k] + torch[k+1]',
    ],
)
def test_generated_names_never_collide_whatever_the_stream_names(text):
    from optnets.rules.semantics import evaluate, output

    rule = Rule.parse(text, special={'a': lambda step, j: 0.5 + j})
    stage = compile_stage(rule, 3, lambda k, s, w: nn.Identity(), 1, learn_coeffs=False)
    x = torch.full((1, 1, 1, 1), 1.0, dtype=torch.float64)
    history = evaluate(rule, 1.0, 3, None, lambda name, k, j: 0.5 + j)  # only a[j] is a symbol
    assert stage(x).item() == pytest.approx(output(rule, history))


def test_a_fused_state_restores_the_learned_coefficients_in_a_new_model():
    """Train, fuse, save; a new model, fused, loads it and computes the same (no coefficient kept outside state)."""
    for name in ('hb_net_20_cifar', 'admm_net_56_cifar', 'agd_net_40_cifar'):
        model = randomise_norms(timm.create_model(name, coeff_init='theory', in_chans=3))
        with torch.no_grad():
            for _, p in model.named_coefficients():
                p.add_(torch.rand_like(p) * 0.5)  # as training leaves them
        model.eval().fuse()
        state = model.state_dict()
        twin = timm.create_model(name, coeff_init='theory', in_chans=3).eval().fuse()
        twin.load_state_dict(state)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)


DUALS = [
    'y[k+1] = T(y[k]) + a1*y[k] + a2*x[k] - a3*sum_t (y[t] - x[t])\n'
    'x[k+1] = T(x[k]) + b1*x[k] + b3*y[k+1] + b4*sum_t (y[t] - x[t])',
    'y[k+1] = T(y[k]) - 2*sum_t (y[t] - x[t]); x[k+1] = T(x[k]) + 0.5*sum_t (y[t] - x[t])',
    'y[k+1] = T(y[k]) + y[k]; x[k+1] = T(x[k]) + (c + 1)*sum_t (x[t] - y[t])',
]


@pytest.mark.parametrize('text', DUALS)
@pytest.mark.parametrize('learn', [True, False])
def test_a_dual_read_as_a_difference_runs_as_one_running_difference_that_computes_the_rule(text, learn):
    """ADMM's dual sum_t (y[t] - x[t]): one accumulator D instead of two running sums that are only ever read as
    their difference (whose cancellation in float32 cost the compiled gradients their precision)."""
    from tests.rulegen import Case, check

    plan = compile_rule(text)
    assert plan.difference is not None and not any(s.accumulator for s in plan.streams)
    assert compile_stage(text, 3, basic, WIDTH).kept_tensors() == len(plan.streams) + 1
    for steps in (1, 2, 4):
        case = Case(
            text=text,
            kind='residual',
            steps=steps,
            learn=learn,
            shape='channel',
            activation='relu',
            train=True,
            skip_input=False,
            seed=steps,
        )
        assert check(case) == []


def test_sums_read_apart_keep_their_own_accumulators():
    plan = compile_rule('y[k+1] = T(y[k]) - a*sum_t y[t]; x[k+1] = T(x[k]) + b*sum_t (y[t] - x[t])')
    assert plan.difference is None and all(s.accumulator for s in plan.streams)


def test_a_stage_that_reads_a_data_term_takes_it_as_an_argument():
    """G(...) reads measurements: called without them a stage refuses in one line; given a data term as an argument
    it computes x[k+1] = T(x[k] - a*G(x[k])) (T the identity: a gradient step on G's objective), and keeps none."""
    stage = compile_stage('x[k+1] = T(x[k] - a*G(x[k]))', 2, lambda step, stream, widths: nn.Identity(), 1)
    with torch.no_grad():
        stage.coeff.a.fill_(0.5)
    with pytest.raises(RuntimeError, match='reconstruction network'):
        stage(torch.ones(1, 1, 2, 2))

    class Half:
        def gradient(self, z):
            return z - 2.0  # G of 1/2 ||z - 2||^2

    x = torch.ones(1, 1, 2, 2)
    before = dict(vars(stage))
    torch.testing.assert_close(stage(x, Half()), 2.0 + (x - 2.0) * 0.25)  # two steps of z - 0.5 (z - 2)
    assert vars(stage) == before and 'data' in inspect.signature(stage.forward).parameters
    with pytest.raises(optnets.compiler.reversible.NotInvertible, match='not one of'):
        compile_stage(
            'x[k+1] = T(x[k]) + x[k] - 0.5*x[k-1] - G(x[k])',
            2,
            lambda *a: nn.Identity(),
            1,
            memory='reversible',
            coeff_init='special',
        )


def test_a_call_that_two_updates_read_runs_once_a_step():
    """ADMM-Net's ``G(z - u)`` is read by the x-update and inside the z-update's T: the plan names it once a step
    (``v0``), and the stage calls G once a step, with the outputs of the rule."""
    stage = compile_stage(
        'x[k+1] = z[k] - c*sum_t (x[t] - z[t]) - a*G(z[k] - c*sum_t (x[t] - z[t]));'
        ' z[k+1] = T(z[k] - a*G(z[k] - c*sum_t (x[t] - z[t])))',
        3,
        lambda *a: nn.Identity(),
        1,
    )
    assert 'step 0: v0 = G(' in str(stage.program) and str(stage.program).count('*v0') == 6
    with torch.no_grad():
        stage.coeff.a.fill_(1.0)
        stage.coeff.c.fill_(1.0)

    class Counted:
        calls = 0

        def gradient(self, z):
            Counted.calls += 1
            return z - 2.0

    out = stage(torch.ones(1, 1, 2, 2), Counted())
    assert Counted.calls == 3
    x, z, dual = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    for _ in range(3):  # ADMM at a = c = 1, T the identity
        g = (z - dual) - 2.0
        x, z = z - dual - g, z - g
        dual = dual + (x - z)
    torch.testing.assert_close(out, (x + z) / 2)


@pytest.mark.parametrize(
    'text',
    ['y[k+1] = x[k]; x[k+1] = T(x[k]) + y[k]', 'y[k+1] = G(x[k]); x[k+1] = T(G(x[k])) + y[k]'],
    ids=['an_iterate', 'a_shared_call'],
)
def test_an_in_place_activation_changes_neither_the_input_nor_an_iterate_another_update_reads(text):
    """An update that is a bare iterate or a call another update reads (``y[k+1] = x[k]``) is a tensor the forward
    still needs: the stage's activation (the zoo's ``ReLU(inplace=True)``) gets a copy of it."""

    class Shift:
        def gradient(self, z):
            return z - 0.5

    outputs = []
    for act in (nn.ReLU(), nn.ReLU(inplace=True)):
        torch.manual_seed(0)
        stage = compile_stage(text, 2, lambda *a: nn.Conv2d(2, 2, 1), 2, activation=act)
        x = torch.randn(1, 2, 3, 3)
        given = x.clone()
        outputs.append(stage(x, Shift()) if 'G' in text else stage(x))
        torch.testing.assert_close(x, given, rtol=0, atol=0)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
