#!/usr/bin/env bash
# The README's Fashion-MNIST table and curves: learned coefficients vs the fixed special case, two seeds each,
# tested on all 10k test images. Sized for 2 CPU cores: the ResNet-20 family on the first 10k training images for
# 2 epochs and on the first 20k for 3; the DenseNet-40 family (about 10x slower per image on CPU) on the first 3k
# for 2 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m optnets.recipes.compare --models hb_net_20_cifar --epochs 2 --seeds 0 1 --train-subset 10000 \
  --out benchmarks/results/fmnist_hb_net_20
python -m optnets.recipes.compare --models hb_net_20_cifar --epochs 3 --seeds 0 1 --train-subset 20000 \
  --out benchmarks/results/fmnist_hb_net_20_long
python -m optnets.recipes.compare --models agd_net_40_cifar --epochs 2 --seeds 0 1 --train-subset 3000 --batch-size 64 \
  --out benchmarks/results/fmnist_agd_net_40
