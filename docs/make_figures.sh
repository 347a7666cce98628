#!/usr/bin/env bash
# The tutorial's figures drawn from data, remade from scratch: four smoke-preset runs (a tiny
# 2-layer BERT on the synthetic task, each ~10-60 s on a CPU; the random control keeps LTP's
# shares), then report.py draws
#   docs/figures/kept_tokens.svg   share of tokens per layer, one line per run, with each run's
#                                  accuracy and speedup, and the share of keywords (dotted)
#   docs/figures/case_study.html   the Transkimmer run's dev sentences, each token coloured by
#                                  the layer before which it was skimmed
# The hand-drawn figures (skim_loop.svg, packing.svg, trbert_stages.svg) are not made here.
#
#   bash docs/make_figures.sh [RUNS]     RUNS: where the runs go (default runs/docs; kept after)
#
# A run folder that already holds a run is replaced (--overwrite).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/docs}
figures=docs/figures
mkdir -p "$figures"

for method in transkimmer trbert ltp; do
    python train.py --method "$method" --preset smoke --out-dir "$runs/$method" --overwrite
done
python train.py --method random --preset smoke --keep-shares-from "$runs/ltp" \
    --out-dir "$runs/random" --overwrite

# one run: report.py draws its curve and its case study; keep the case study
python report.py "$runs/transkimmer" --out "$runs/report-transkimmer"
cp "$runs/report-transkimmer/case_study.html" "$figures/case_study.html"
# several runs: one chart with a curve each (named by the run folders)
python report.py "$runs/transkimmer" "$runs/trbert" "$runs/ltp" "$runs/random" --out "$figures"
