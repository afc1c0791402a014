"""The compiler against the reference semantics, over generated rules (hypothesis)."""

from hypothesis import HealthCheck, given, settings

from tests.rulegen import cases, check


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
