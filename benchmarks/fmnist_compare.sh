#!/usr/bin/env bash
# The README's Fashion-MNIST table and curves: learned coefficients vs the fixed special case, two seeds each.
# ResNet-20 family on all 60k training images; the DenseNet-40 family (about 10x slower on CPU) on the first 5k.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m recipes.compare --models hb_net_20_cifar --epochs 3 --seeds 0 1 --train-subset 0 \
  --out benchmarks/results/fmnist_hb_net_20
python -m recipes.compare --models agd_net_40_cifar --epochs 3 --seeds 0 1 --train-subset 5000 --batch-size 64 \
  --out benchmarks/results/fmnist_agd_net_40
