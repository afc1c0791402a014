"""The compiler against the reference semantics, over generated rules (hypothesis)."""

import pytest
from hypothesis import HealthCheck, given, settings

from tests.rulegen import Case, cases, check


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_compiled_stage_computes_what_the_rule_says(case):
    assert check(case) == []


DUAL_IN_G = [
    # ADMM-Net's rule (optnets.recon): the dual is a running difference read at the top and inside both G's
    'x[k+1] = z[k] - c*sum_t (x[t] - z[t]) - a*G(z[k] - c*sum_t (x[t] - z[t]))\n'
    'z[k+1] = T(z[k] - a*G(z[k] - c*sum_t (x[t] - z[t])))',
    # the pair only inside G, with another coefficient in each
    'x[k+1] = T(x[k]) + G(x[k] - sum_t (x[t] - y[t])); y[k+1] = T(y[k] + d*G(x[k+1] + 2*sum_t (x[t] - y[t])))',
    # a lone sum inside G beside the pair at the top: two running sums, no difference
    'x[k+1] = x[k] - c*sum_t (x[t] - y[t]) + T(G(sum_j x[j])); y[k+1] = T(y[k])',
    # an indexed sum inside G keeps the whole history
    'x[k+1] = T(x[k] - G(sum_j a[j]*x[j]))',
]


@pytest.mark.parametrize('learn', [False, True])
@pytest.mark.parametrize('text', DUAL_IN_G)
def test_history_sums_inside_the_data_gradient_compute_what_the_rule_says(text, learn):
    for seed in range(3):
        case = Case(
            text,
            'residual',
            steps=4,
            learn=learn,
            shape=['scalar', 'channel'][seed % 2],
            activation=['none', 'tanh', 'relu'][seed],
            train=seed == 1,
            skip_input=False,
            seed=seed,
        )
        assert check(case) == []


SHARED_CALLS = [
    # a G that reads the first stream's new iterate, read by the second update twice (once inside T)
    'y[k+1] = T(y[k]); x[k+1] = c*G(y[k+1]) + T(x[k] - G(y[k+1]))',
    # an update that is the shared call itself, which an in-place activation must not overwrite
    'x[k+1] = G(x[k]); y[k+1] = T(y[k] + 0.5*G(x[k]))',
]


@pytest.mark.parametrize('learn', [False, True])
@pytest.mark.parametrize('text', SHARED_CALLS, ids=['read_after_a_new_iterate', 'an_update_that_is_the_call'])
def test_a_call_that_several_updates_read_computes_what_the_rule_says(text, learn):
    for seed, activation in enumerate(['none', 'relu_inplace', 'tanh']):
        case = Case(text, 'residual', 3, learn, 'scalar', activation, train=seed == 1, skip_input=False, seed=seed)
        assert check(case) == []
