#!/usr/bin/env bash
# The rule search on Fashion-MNIST, ResNet-20 skeleton (docs/benchmarks/rule-search.md): 75 finished trials of
# 6,000 training images x 3 epochs, chosen on 5,000 held-out training images, by two workers (one thread each)
# sharing one SQLite study. Run it again to resume. Then: python -m benchmarks.rule_search finals
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/rule_search
mkdir -p "$out"
for worker in 1 2; do
  OMP_NUM_THREADS=1 optnets search run --storage "sqlite:///$out/study.db" --trials 75 --seed "$worker" \
    --root-dir "${RUNS:-runs}/rule_search" --trainer.accelerator cpu \
    --data.init_args.train_subset 6000 --data.init_args.num_workers 0 >> "$out/worker_$worker.log" 2>&1 &
  sleep 20  # the first worker creates the study and enqueues the built-ins; the second joins it
done
wait
optnets search show --storage "sqlite:///$out/study.db" > "$out/leaderboard.txt"
