#!/usr/bin/env bash
# Submit latentbids to SLURM: a participant array (one subject per task), then the group level on a
# GPU node that starts only when every participant task succeeded (--dependency=afterok).  With
# FOLD_JOBS=1 the cross-validation folds train as an array of their own in between (one GPU job per
# fold), and the group job merges them and runs the analysis.
#
#   scripts/slurm/submit.sh BIDS_DIR OUTPUT_DIR WORK_DIR [participant options] [--group group options]
#
# Environment (docs/cluster.md):
#   LATENTBIDS     the command that runs latentbids on a compute node (default: latentbids), e.g.
#                  "apptainer run --nv --cleanenv -B /data -B /scratch /images/latentbids-0.1.0-cuda.sif"
#   SUBJECTS       subject labels to process (default: every sub-* folder of BIDS_DIR)
#   MAX_PARALLEL   array tasks running at once (default 20)
#   SBATCH_ARGS    extra sbatch options for every job, e.g. "--account=lab --partition=batch"
#   GROUP_SBATCH_ARGS   extra sbatch options for the group (and fold) jobs, e.g. "--partition=gpu"
#   FOLD_JOBS      1: one job per fold (as many as --n-folds among the group options, default 5)
# Prints the job ids.  Outputs go to OUTPUT_DIR; SLURM logs to WORK_DIR/slurm/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -lt 3 ]; then
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 64
fi
BIDS_DIR=$(realpath "$1")
OUTPUT_DIR=$(realpath -m "$2")
WORK_DIR=$(realpath -m "$3")
shift 3
participant=() group=() target=participant
for arg in "$@"; do
    if [ "$arg" = "--group" ]; then target=group; continue; fi
    if [ "$target" = participant ]; then participant+=("$arg"); else group+=("$arg"); fi
done
if [ ! -f "$BIDS_DIR/dataset_description.json" ]; then
    echo "submit.sh: $BIDS_DIR has no dataset_description.json: pass the root of a BIDS dataset" >&2
    exit 66
fi

mkdir -p "$WORK_DIR/slurm" "$OUTPUT_DIR"
SUBJECTS_FILE="$WORK_DIR/slurm/subjects.txt"
if [ -n "${SUBJECTS:-}" ]; then
    printf '%s\n' $SUBJECTS | sed 's/^sub-//' >"$SUBJECTS_FILE"
else
    find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' | sed 's/^sub-//' | sort >"$SUBJECTS_FILE"
fi
n=$(grep -c . "$SUBJECTS_FILE" || true)
if [ "$n" -eq 0 ]; then
    echo "submit.sh: no subject to process in $BIDS_DIR" >&2
    exit 18
fi

PARTICIPANT_ARGS=$(printf '%q ' "${participant[@]+"${participant[@]}"}")
GROUP_ARGS=$(printf '%q ' "${group[@]+"${group[@]}"}")
export BIDS_DIR OUTPUT_DIR WORK_DIR SUBJECTS_FILE PARTICIPANT_ARGS GROUP_ARGS
export LATENTBIDS=${LATENTBIDS:-latentbids}
read -r -a common <<<"${SBATCH_ARGS:-}"
read -r -a group_only <<<"${GROUP_SBATCH_ARGS:-}"

array=$(sbatch --parsable --export=ALL "${common[@]+"${common[@]}"}" --array="1-$n%${MAX_PARALLEL:-20}" \
    --output="$WORK_DIR/slurm/%x_%A_%a.log" "$here/participant_array.sbatch")
array=${array%%;*}  # --parsable prints "jobid[;cluster]"
before_group=$array
if [ "${FOLD_JOBS:-0}" = 1 ]; then
    folds=5  # RunConfig's n_folds; --n-folds among the group options overrides it
    for ((i = 0; i < ${#group[@]}; i++)); do
        case "${group[$i]}" in
            --n-folds=*) folds=${group[$i]#--n-folds=} ;;
            --n-folds) folds=${group[$((i + 1))]:-$folds} ;;
        esac
    done
    fold_array=$(sbatch --parsable --export=ALL "${common[@]+"${common[@]}"}" "${group_only[@]+"${group_only[@]}"}" \
        --array="1-$folds" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
        --output="$WORK_DIR/slurm/%x_%A_%a.log" "$here/fold_array.sbatch")
    fold_array=${fold_array%%;*}
    before_group=$fold_array
fi
group_job=$(sbatch --parsable --export=ALL "${common[@]+"${common[@]}"}" "${group_only[@]+"${group_only[@]}"}" \
    --dependency="afterok:$before_group" --kill-on-invalid-dep=yes --output="$WORK_DIR/slurm/%x_%j.log" \
    "$here/group_gpu.sbatch")
group_job=${group_job%%;*}
echo "participant array job $array ($n subjects: $SUBJECTS_FILE); group job $group_job runs after every task succeeded"
if [ -n "${fold_array:-}" ]; then
    echo "fold array job $fold_array ($folds folds, one job each) runs between them; the group job merges the folds"
fi
