#!/usr/bin/env bash
# The main job end to end on cohorts the tool makes itself (no data from anywhere):
#   1. participant level: latentbids-simulate writes 6 T1w head scans and latentbids segments and
#      registers every one (--sloppy: minutes, not hours);
#   2. group level on a planted cohort: 120 simulated GM maps (60 CN, 60 AD) with 25 % GM loss planted in
#      six medial temporal regions; the autoencoder trains in 3 folds and the latent space is read with
#      family-wise tests: the report should name the six planted regions and no other;
#   3. its null twin: the same 120 subjects without the loss: the report should support no claim about
#      CN vs AD.
# Usage: scripts/demo.sh [DEMO_DIR]   (make demo calls it inside the project's .venv)
set -euo pipefail
DEMO_DIR=${1:-demo_out}
BIN=${LATENTBIDS_BIN:-$(dirname "$0")/../.venv/bin}
PY=${LATENTBIDS_PYTHON:-$BIN/python}
CONFIG=$(cd "$(dirname "$0")" && pwd)/demo.toml
N_SUBJECTS=${DEMO_SUBJECTS:-6}
N_COHORT=${DEMO_COHORT:-120}
NPROCS=${DEMO_NPROCS:-$(nproc)}
EFFECT=Hippocampus_L,Hippocampus_R,ParaHippocampal_L,ParaHippocampal_R,Amygdala_L,Amygdala_R:25
GRID=MNI152NLin2009aSym:res-nilearn4
mkdir -p "$DEMO_DIR"

section() { echo; echo "== $1 ($(date +%H:%M:%S))"; }

# 1. the participant level on T1w scans
BIDS="$DEMO_DIR/bids"
OUT="$BIDS/derivatives/latentbids"
section "participant level: $N_SUBJECTS simulated T1w scans"
if [ ! -f "$BIDS/dataset_description.json" ]; then
  "$BIN/latentbids-simulate" "$BIDS" --n-subjects "$N_SUBJECTS" --seed 20261125 \
      --effect Hippocampus_L,Hippocampus_R,ParaHippocampal_L,ParaHippocampal_R:20
fi
"$BIN/latentbids" "$BIDS" "$OUT" participant -w "$DEMO_DIR/work" --nprocs "$NPROCS" --omp-nthreads 1 --sloppy

# 2-3. the group level on a planted cohort of GM maps and on its null twin (same subjects, no loss)
group() {  # NAME [simulate options...]
  local name=$1; shift
  local root="$DEMO_DIR/$name"
  section "group level: $name cohort of $N_COHORT GM maps"
  if [ ! -f "$root/dataset_description.json" ]; then
    "$BIN/latentbids-simulate" "$root" --n-subjects "$N_COHORT" --seed 7 --gm-only --group-ready \
        --resolution 4 --gm-variability 0.02 "$@"
  fi
  "$BIN/latentbids" "$root" "$root/derivatives/latentbids" group -w "$DEMO_DIR/work-$name" \
      --skip-bids-validation --output-spaces "$GRID" --config-file "$CONFIG" --nprocs "$NPROCS"
}
group planted --effect "$EFFECT"
group null

section "what the reports say"
for name in planted null; do
  "$PY" "$(dirname "$0")/demo_summary.py" "$name" "$DEMO_DIR/$name/derivatives/latentbids"
done
echo
echo "Demo finished. Participant outputs: $OUT; group reports: $DEMO_DIR/planted/derivatives/latentbids/group_ae-K16.html"
echo "and $DEMO_DIR/null/derivatives/latentbids/group_ae-K16.html (claims in group/ae-K16/analysis.json)."
