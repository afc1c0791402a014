#!/usr/bin/env bash
# The long measurements still open, in the order they are wanted, on LANES lanes of one core each: a lane takes the
# first job that no lane has done or holds (a flock per job in runs/pending/) and goes on down the list. Every job
# resumes where it stopped and skips what is done, so after a cut (a session's end, a new machine) start it again:
#   setsid nohup benchmarks/pending.sh >> runs/pending.out 2>&1 &
# Before the machine goes, `benchmarks/pending.sh --stop` ends the lanes and their jobs with SIGTERM (a training run
# saves its last.ckpt mid-epoch) and carries the seeds' checkpoints; then commit benchmarks/carry/ and results/.
# The commands are their pages' (docs/benchmarks/fmnist-weights.md, recon-cs.md, recon-inpainting.md, rule-search.md).
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
seeds_table='python -m benchmarks.fmnist_seeds_table --out benchmarks/results/fmnist_seeds'
recon='python -m benchmarks.recon_cs --ratios 0.25 0.1 0.5 --train 5000 --epochs 4 --phases 5 --val 500 --test 1000
  --classical-iters 100 --seeds 0 1 2'
pareto=benchmarks/results/rule_search_pareto
jobs=(
  "benchmarks/fmnist_seeds.sh resnet_20 4 && $seeds_table"
  "benchmarks/fmnist_seeds.sh hb_net_20 3 && $seeds_table"
  "benchmarks/fmnist_seeds.sh hb_net_20 4 && $seeds_table"
  "benchmarks/fmnist_seeds.sh resnet_20 5 && $seeds_table"
  "benchmarks/fmnist_seeds.sh hb_net_20 5 && $seeds_table"
  "benchmarks/fmnist_seeds.sh resnet_20 6 && $seeds_table"
  "benchmarks/fmnist_seeds.sh hb_net_20 6 && $seeds_table"
  "$recon --out benchmarks/results/recon_cs_table
    && python -m benchmarks.recon_cs --report --out benchmarks/results/recon_cs_table"
  "$recon --physics inpainting --out benchmarks/results/recon_inpainting
    && python -m benchmarks.recon_cs --report --out benchmarks/results/recon_inpainting"
  'python -m benchmarks.search_arms run && python -m benchmarks.search_arms finals
    && python -m benchmarks.search_arms report'  # two searches at once, as on the page: a lane of two cores
  "mkdir -p $pareto && optnets search run --pareto --depths 20 32 44 --width-scales 0.5 1 1.5 --trials 40
    --storage sqlite:///$pareto/study.db --root-dir runs/search_pareto --trainer.accelerator cpu --no-progress
    --data.init_args.train_subset 6000 --data.init_args.num_workers 0 && python -m benchmarks.rule_search_pareto"
)
mkdir -p runs/pending
if [ "${1:-}" = --stop ]; then
  if [ -f runs/pending/group ]; then
    group=$(cat runs/pending/group)
    kill -TERM -- "-$group" 2>/dev/null
    while pgrep -g "$group" >/dev/null; do sleep 1; done
  else
    echo "pending.sh: no lanes were started here (no runs/pending/group); carrying what runs/ holds" >&2
  fi
  exec benchmarks/fmnist_seeds.sh --carry
fi
echo $$ >runs/pending/group  # setsid made this process its group's leader
lane() {
  for i in "${!jobs[@]}"; do
    job=${jobs[$i]//$'\n'/ } done=runs/pending/$i.done
    [ -e "$done" ] && continue
    flock -n -E 75 "runs/pending/$i.lock" bash -c "[ -e $done ] || ($job) && touch $done" && status=0 || status=$?
    [ "$status" = 75 ] && continue  # another lane holds it
    echo "$(date -u +%FT%TZ) lane $1 job $i exit $status: $job"
  done
}
for n in $(seq "${LANES:-2}"); do
  lane "$n" &
  sleep 5
done
wait; exit  # parsed with the wait: a script edited while it runs is not read on
