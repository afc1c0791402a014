#!/usr/bin/env bash
# The full-budget seeds of docs/benchmarks/fmnist-weights.md: fashion_mnist_full.yaml (all 60k images, 12 epochs)
# for each MODEL and SEED given, one run at a time on one core. A run that was stopped resumes from its last.ckpt;
# a finished run (its epoch-11 checkpoint exists) is skipped, so the script can be rerun until all are done.
#   benchmarks/fmnist_seeds.sh "resnet_20 hb_net_20" "2 3 4"
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-"resnet_20 hb_net_20"}
seeds=${2:-"2 3 4"}
for seed in $seeds; do
  for model in $models; do
    case $model in
      hb_net_20) kwargs='{}' ;;
      resnet_20) kwargs='{learn_coeffs: false}' ;;
      *) echo "fmnist_seeds.sh: unknown model '$model' (hb_net_20 or resnet_20)" >&2; exit 2 ;;
    esac
    root=runs/fmnist_full_seed$seed/$model
    if compgen -G "$root/checkpoints/latest-epoch=11-step=*.ckpt" >/dev/null; then continue; fi
    resume=()
    if [ -f "$root/checkpoints/last.ckpt" ]; then resume=(--ckpt_path last); fi
    echo "$(date -u +%FT%TZ) seed $seed $model ${resume[*]}" >>"runs/fmnist_full_seed${seed}_$model.log"
    OMP_NUM_THREADS=1 optnets train fit --config fashion_mnist_full --seed_everything "$seed" \
      --model.init_args.model_kwargs "$kwargs" --trainer.default_root_dir "$root" "${resume[@]}" \
      >>"runs/fmnist_full_seed${seed}_$model.log" 2>&1
  done
done
