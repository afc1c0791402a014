#!/usr/bin/env bash
# Run timm's own model test suite (tests/test_models.py of the pinned timm release) on every optnets model.
# The file is fetched at run time from timm's source distribution, never copied into this repository.
# Usage: scripts/timm_suite.sh [extra pytest args]
set -euo pipefail
version=$(python -c 'import timm; print(timm.__version__)')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download --quiet --no-deps --no-binary :all: "timm==$version" -d "$work"
tar -xzf "$work/timm-$version.tar.gz" -C "$work" "timm-$version/tests"
# -p optnets.models registers the families before timm's file collects its model lists. The families opt into
# timm's forward_intermediates and pruning contract tests the way timm's own do: named in its FEAT_INTER_FILTERS.
families_list=$(python -c 'from optnets.models import FAMILIES; print(", ".join(repr(f) for f in FAMILIES))')
sed -i "s/^FEAT_INTER_FILTERS = \[/FEAT_INTER_FILTERS = [$families_list, /" "$work/timm-$version/tests/test_models.py"
grep -q "^FEAT_INTER_FILTERS = \[$families_list, " "$work/timm-$version/tests/test_models.py"  # the opt-in took

# Its *_pretrained tests download published weights from the hub, which these machines cannot reach: they are
# left out here, and tests/test_weights.py runs the same path against a stand-in hub.
families=$(python -c 'from optnets.models import FAMILIES; print(" or ".join(FAMILIES))')
# -n auto: one pytest-xdist worker per core (timm's file sets no options of its own), each on one thread: two
# workers of two OpenMP threads on two cores take turns (timm's prune contract test ran 2.9x slower so).
OMP_NUM_THREADS=1 python -m pytest "$work/timm-$version/tests/test_models.py" -p optnets.models -p no:cacheprovider \
  --rootdir "$work" -k "($families) and not pretrained" -n auto "$@"
