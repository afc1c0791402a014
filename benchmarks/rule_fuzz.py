"""Fuzz the compiler against the reference semantics: many generated rules, every mismatch counted.

    python -m benchmarks.rule_fuzz --examples 10000 --extreme --out benchmarks/results/rule_fuzz.json

The same generator and check as tests/test_semantics.py (which runs a fixed, seeded few hundred in CI), with
hypothesis' shrinking off: each example is checked once and every failure is kept, not only the first.
``--extreme`` also draws numbers whose folding leaves the finite range: those rules must be refused with a
positioned ``RuleError`` (counted as ``refused``), and anything else is a failure; an accepted rule with
such numbers must compile and run before and after ``fuse()``, and is counted as ``overflowed``, not compared.
"""

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from optnets import Rule, RuleError
from tests.rulegen import UNCOMPARED, cases, check


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--examples', type=int, default=10000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=None, help='write a JSON summary here')
    parser.add_argument('--show', type=int, default=3, help='print this many failures in full')
    parser.add_argument('--extreme', action='store_true', help='draw numbers that fold out of range too')
    args = parser.parse_args(argv)
    checked, refused, overflowed, failures, kinds = 0, 0, 0, [], collections.Counter()
    start = time.perf_counter()

    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases(extreme=args.extreme))
    def run(case):
        nonlocal checked, refused, overflowed
        checked += 1
        kinds[case.kind] += 1
        try:
            Rule.parse(case.text)
        except RuleError:
            refused += 1
        try:
            problems = check(case)
        except Exception as error:  # noqa: BLE001 - an internal error is a failure to report, not to stop on
            problems = [f'{type(error).__name__}: {error}']
        if problems == [UNCOMPARED]:
            overflowed += 1
        elif problems:
            failures.append(dict(case=vars(case), problems=problems))

    seed(args.seed)(run)()
    seconds = time.perf_counter() - start
    print(
        f'{checked} generated rules checked against the reference semantics in {seconds:.0f} s '
        f'({dict(kinds)}): {refused} refused with a positioned RuleError, '
        f'{overflowed} accepted and run but not compared (extreme numbers, or overflow), {len(failures)} mismatches'
    )
    for failure in failures[: args.show]:
        print(json.dumps(failure['case']), *failure['problems'], sep='\n  ')
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                dict(
                    examples=checked,
                    seed=args.seed,
                    extreme=args.extreme,
                    refused=refused,
                    overflowed=overflowed,
                    seconds=round(seconds),
                    kinds=dict(kinds),
                    mismatches=len(failures),
                    failures=failures[:50],
                ),
                indent=1,
            )
            + '\n'
        )
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
