#!/usr/bin/env bash
# Predict on a Slurm cluster: an array of SHARDS jobs, job k running `python -m pipeline.infer ... --shard k/SHARDS`
# on one GPU; waits for the array, then checks that OUT/merged holds the complete shard set for `make ensemble`.
#
#   tools/slurm_infer.sh PARTITION SHARDS OUT CONFIG CHECKPOINT [pipeline.infer arguments...]
#
# A failed or cancelled shard is rerun by calling the script again: finished shards are skipped, an interrupted one
# resumes at its first unfinished chunk. Extra sbatch options go in SBATCH_ARGS (e.g. "--time=4:00:00");
# CPUS_PER_TASK defaults to 5.
set -euo pipefail

if [ $# -lt 5 ]; then
    echo "usage: $0 PARTITION SHARDS OUT CONFIG CHECKPOINT [pipeline.infer arguments...]" >&2
    exit 2
fi
PARTITION=$1
SHARDS=$2
OUT=$3
CONFIG=$4
CHECKPOINT=$5
shift 5
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PYTHON=${PYTHON:-python}
case "$SHARDS" in ''|*[!0-9]*|0) echo "error: SHARDS must be a positive integer, got '$SHARDS'" >&2; exit 2;; esac

cd "$(dirname "$0")/.."
mkdir -p "${OUT}/logs"
printf -v args '%q ' "$@"
sbatch --wait --partition="${PARTITION}" --job-name="infer-$(basename "$(dirname "${OUT}")")" \
    --array="0-$((SHARDS - 1))" --gres=gpu:1 --ntasks=1 --cpus-per-task="${CPUS_PER_TASK}" \
    --output="${OUT}/logs/shard-%a.log" ${SBATCH_ARGS:-} \
    --wrap="${PYTHON} -u -m pipeline.infer ${CONFIG} ${CHECKPOINT} --out ${OUT} --shard \${SLURM_ARRAY_TASK_ID}/${SHARDS} ${args}"

missing=()
for ((k = 0; k < SHARDS; k++)); do
    shard=$(printf 'shard-%03d-of-%03d.parquet' "$k" "$SHARDS")
    [ -f "${OUT}/merged/${shard}" ] || missing+=("$shard")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "error: ${#missing[@]} of ${SHARDS} shards missing in ${OUT}/merged (${missing[*]:0:5}); see ${OUT}/logs" >&2
    exit 1
fi
echo "complete: ${SHARDS} shards in ${OUT}/merged"
