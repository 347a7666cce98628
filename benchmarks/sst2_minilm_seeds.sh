#!/usr/bin/env bash
# The README's main SST-2 rows over three seeds: baseline, Transkimmer from the pre-trained
# weights, Transkimmer from the baseline (the best row) and TR-BERT, each exactly as
# benchmarks/sst2_minilm.sh runs it, with --seed 43 and --seed 44 (runs/sst2-minilm-NAME-s43, ...).
# Seed 42 is the default: its runs are sst2_minilm.sh's own, linked as runs/sst2-minilm-NAME-s42.
# The two seeds run side by side (each train.py on one thread): 95 minutes on a 2-core CPU that
# also ran two other trainings.
#   bash benchmarks/sst2_minilm_seeds.sh [--overwrite]
#   python benchmarks/summarize.py --seeds runs/sst2-minilm-*-s4[234]     mean ± sd per row
set -euo pipefail
cd "$(dirname "$0")/.."
# in this order: the last two need the first. Other rows of sst2_minilm.sh, once the baseline's
# seeds exist: ROWS=trbert-authors-opt bash benchmarks/sst2_minilm_seeds.sh
ROWS=${ROWS:-baseline transkimmer transkimmer-ft trbert}
for name in $ROWS; do
  if [ ! -f "runs/sst2-minilm-$name/results.json" ]; then
    echo "error: runs/sst2-minilm-$name has no results: bash benchmarks/sst2_minilm.sh $name" >&2
    exit 1
  fi
  ln -sfn "sst2-minilm-$name" "runs/sst2-minilm-$name-s42"
done
pids=()
for seed in ${SEEDS:-43 44}; do
  (for name in $ROWS; do SEED=$seed bash benchmarks/sst2_minilm.sh "$name" "$@"; done) \
    >"runs/sst2-minilm-seed$seed.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" -eq 0 ] || echo "a seed failed: see runs/sst2-minilm-seed*.log" >&2
exit "$status"
