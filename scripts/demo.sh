#!/usr/bin/env bash
# The main job end to end on a cohort the tool makes itself (no data from anywhere):
#   1. latentbids-simulate writes a small BIDS dataset with a planted hippocampal GM loss;
#   2. the participant level segments and registers every T1w;
#   3. the group level trains the autoencoder, writes the latent outputs, reads the latent space
#      (projections, LRCP, SHAP, statistical-agnostic tests) and writes the group report.
# Usage: scripts/demo.sh [DEMO_DIR]   (make demo calls it inside the project's .venv)
set -euo pipefail
DEMO_DIR=${1:-demo_out}
BIN=${LATENTBIDS_BIN:-$(dirname "$0")/../.venv/bin}
N_SUBJECTS=${DEMO_SUBJECTS:-12}
NPROCS=${DEMO_NPROCS:-$(nproc)}
BIDS="$DEMO_DIR/bids"
OUT="$BIDS/derivatives/latentbids"
WORK="$DEMO_DIR/work"

if [ ! -f "$BIDS/dataset_description.json" ]; then
  "$BIN/latentbids-simulate" "$BIDS" --n-subjects "$N_SUBJECTS" --seed 20261125 \
      --effect Hippocampus_L,Hippocampus_R,ParaHippocampal_L,ParaHippocampal_R:20
fi
"$BIN/latentbids" "$BIDS" "$OUT" participant -w "$WORK" --nprocs "$NPROCS" --omp-nthreads 1 --sloppy
"$BIN/latentbids" "$BIDS" "$OUT" group -w "$WORK" --sloppy --n-folds 3
echo
echo "Demo finished. Outputs: $OUT"
ls "$OUT"
echo "Group report: $OUT/group_ae-K32.html; verdicts in $OUT/group/ae-K32/analysis.json"
