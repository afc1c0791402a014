#!/usr/bin/env bash
# The full-budget seeds of docs/benchmarks/fmnist-weights.md: fashion_mnist_full.yaml (all 60k images, 12 epochs)
# for each MODEL and SEED given, one run at a time on one core. A run that was stopped resumes from its last.ckpt;
# a finished run (its epoch-11 checkpoint exists, or the table has scored it) is skipped, so the script can be
# rerun until all are done.
#   benchmarks/fmnist_seeds.sh "resnet_20 hb_net_20" "2 3 4 5 6"
# A run takes longer than a working session and runs/ is not tracked, so an unfinished run's last.ckpt is carried
# to another machine through benchmarks/carry/ (tracked): `--carry` copies it there (and drops finished runs'),
# and a run with no last.ckpt of its own resumes from the carried one.
#   benchmarks/fmnist_seeds.sh --carry
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
carried() { echo "benchmarks/carry/${1#runs/}/last.ckpt"; }  # a run folder's carried last.ckpt
finished() { compgen -G "$1/checkpoints/latest-epoch=11-step=*.ckpt" >/dev/null; }
scored() {  # in the table's results.json: finished, maybe on another machine
  python -c 'import json, sys; sys.exit(sys.argv[2] not in json.load(open(sys.argv[3])).get(sys.argv[1], {}))' \
    "$1" "$2" benchmarks/results/fmnist_seeds/results.json
}
if [ "${1:-}" = --carry ]; then
  for ckpt in runs/fmnist_full_seed*/*/checkpoints/last.ckpt; do
    [ -f "$ckpt" ] || continue
    root=${ckpt%/checkpoints/last.ckpt}
    carried=$(carried "$root")
    if finished "$root"; then rm -f "$carried"; else mkdir -p "$(dirname "$carried")" && cp "$ckpt" "$carried"; fi
  done
  exit 0
fi
models=${1:-"resnet_20 hb_net_20"}
seeds=${2:-"2 3 4 5 6"}
for seed in $seeds; do
  for model in $models; do
    case $model in
      hb_net_20) kwargs='{}' ;;
      resnet_20) kwargs='{learn_coeffs: false}' ;;
      *) echo "fmnist_seeds.sh: unknown model '$model' (hb_net_20 or resnet_20)" >&2; exit 2 ;;
    esac
    root=runs/fmnist_full_seed$seed/$model
    if finished "$root" || scored "$model" "$seed"; then continue; fi
    carried=$(carried "$root")
    if [ ! -f "$root/checkpoints/last.ckpt" ] && [ -f "$carried" ]; then
      mkdir -p "$root/checkpoints" && cp "$carried" "$root/checkpoints/last.ckpt"
    fi
    resume=()
    if [ -f "$root/checkpoints/last.ckpt" ]; then resume=(--ckpt_path last); fi
    echo "$(date -u +%FT%TZ) seed $seed $model ${resume[*]}" >>"runs/fmnist_full_seed${seed}_$model.log"
    OMP_NUM_THREADS=1 optnets train fit --config fashion_mnist_full --seed_everything "$seed" \
      --model.init_args.model_kwargs "$kwargs" --trainer.default_root_dir "$root" "${resume[@]}" \
      >>"runs/fmnist_full_seed${seed}_$model.log" 2>&1
  done
done; exit  # parsed with the loop: a script edited while it runs is not read on
