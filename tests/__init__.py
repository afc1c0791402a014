"""The tests: a package, so that the lab (benchmarks/) imports its generators like code: ``tests.rulegen``."""
