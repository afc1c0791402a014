#!/usr/bin/env bash
# The timm versions setup.cfg admits, each checked as the pin was widened: a venv over this machine's packages with
# that timm, then optnets' model, weights and CLI tests and timm's own suite (scripts/timm_suite.sh) on a copy of
# the working tree. Usage: scripts/timm_versions.sh 1.0.29 1.0.30
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
for version in "$@"; do
  work=$(mktemp -d)
  python -m venv --system-site-packages "$work/env"
  "$work/env/bin/pip" install --quiet --no-deps "timm==$version"
  cp -r "$root" "$work/src" && rm -rf "$work/src/.git"
  echo "== timm $version"
  (cd "$work/src" && export PATH="$work/env/bin:$PATH" PYTHONPATH="$work/src" &&
    python -c 'import optnets, timm; assert timm.__version__ == "'"$version"'", timm.__version__' &&
    python -m pytest -q -p no:cacheprovider tests/test_models.py tests/test_weights.py tests/test_cli.py | tail -1 &&
    scripts/timm_suite.sh -q | tail -1)
  rm -rf "$work"
done
