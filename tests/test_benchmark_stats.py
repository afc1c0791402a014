"""benchmarks/stats.py: how every study table prints a measurement over seeds."""

from benchmarks.stats import mean_spread


def test_several_values_print_their_mean_and_sample_standard_deviation():
    assert mean_spread([0.9, 0.92, 0.94], scale=100) == '92.00 ± 2.00'


def test_one_value_prints_alone_since_no_spread_was_measured():
    assert mean_spread([0.8632], scale=100) == '86.32'


def test_no_value_prints_a_dash():
    assert mean_spread([]) == '-'
