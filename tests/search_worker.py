"""A search worker for the tests: ``python tests/search_worker.py STORAGE TRIALS MARKS [SECONDS_PER_EPOCH]``.

Its objective trains nothing: it writes a mark ``<trial>.<pid>`` in MARKS when a trial starts, reports three
epochs of a made-up accuracy (``SECONDS_PER_EPOCH`` apart) and returns the last, so that a test can tell which
trials ran, where, and how often."""

import os
import sys
import time
from pathlib import Path

from optnets.search import RuleSpace, run


def objective(marks: Path, seconds: float):
    def train(trial, point, space):
        (marks / f'{trial.number}.{os.getpid()}').touch()
        value = 0.0
        for epoch in range(1, 4):
            time.sleep(seconds)
            value = 0.5 + 0.1 * epoch + 0.001 * (len(point.text) % 50)
            trial.report(value, epoch)
        return value

    return train


if __name__ == '__main__':
    storage, trials, marks = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    run(RuleSpace(), objective(marks, seconds), trials, storage, heartbeat=1)
