#!/usr/bin/env bash
# Predict on a Slurm cluster: an array of SHARDS jobs, job k running `python -m pipeline.infer ... --shard k/SHARDS`
# on one GPU; waits for the array, then checks that OUT/merged holds the complete shard set for `make ensemble`.
#
#   tools/slurm_infer.sh PARTITION SHARDS OUT CONFIG CHECKPOINT [pipeline.infer arguments...]
#
# Only the shards missing from OUT/merged are submitted, so calling it again after a failure or a cancel reruns just
# those (an interrupted shard resumes at its first unfinished chunk). A request the partition can never run (CPUs,
# GPUs, memory, time, partition) stops at once with both named, leaving no job queued. While the array runs, a line
# per change: shards done of N, running, pending, failed ones with their log (OUT/logs/shard-K-of-N.log).
# Settings (environment or make variables), defaults in brackets:
#   CPUS_PER_TASK [5]   GRES [gpu]: one GPU of that kind per shard, e.g. gpu:a100 (--gres=gpu:a100:1); none: no GPU
#   MEM [the cluster's default], e.g. 32G
#   TIME [the partition's default], e.g. 12:00:00   SBATCH_ARGS, SRUN_ARGS: passed to sbatch / srun as they are
#   POLL_S [10]: seconds between progress checks
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
GRES=${GRES:-gpu}
POLL_S=${POLL_S:-10}
PYTHON=${PYTHON:-python}
case "$SHARDS" in ''|*[!0-9]*|0) echo "error: SHARDS must be a positive integer, got '$SHARDS'" >&2; exit 2;; esac

cd "$(dirname "$0")/.."
of=$(printf -- '-of-%03d' "$SHARDS")
shard_file() { printf '%s/merged/shard-%03d%s.parquet' "$OUT" "$1" "$of"; }
shard_log() { printf '%s/logs/shard-%03d%s.log' "$OUT" "$1" "$of"; }
missing_shards() { for ((k = 0; k < SHARDS; k++)); do [ -f "$(shard_file "$k")" ] || echo "$k"; done; }

mapfile -t todo < <(missing_shards)
if [ ${#todo[@]} -eq 0 ]; then
    echo "complete: ${SHARDS} shards in ${OUT}/merged (nothing to run)"
    exit 0
fi
[ "$GRES" = none ] || gres="--gres=${GRES}:1"
request=(--partition="$PARTITION" ${gres:-} --ntasks=1 --cpus-per-task="$CPUS_PER_TASK"
         ${MEM:+--mem="$MEM"} ${TIME:+--time="$TIME"})
asked="${request[*]}${SBATCH_ARGS:+ $SBATCH_ARGS}"
partition_has() {
    sinfo -h -p "$PARTITION" -o "%D nodes of %c CPUs, %m MB, gres %G, time limit %l" 2>/dev/null | sort -u |
        paste -sd ';' | sed 's/^$/no nodes/'
}
unschedulable() {
    echo "error: partition '$PARTITION' can never run this request ($1): asked ${asked}; it has $(partition_has)" >&2
    exit 2
}

array=$(IFS=,; echo "${todo[*]}")
if ! why=$(sbatch --test-only "${request[@]}" ${SBATCH_ARGS:-} --array="$array" --wrap=true 2>&1); then
    unschedulable "$(echo "$why" | grep -v '^sbatch: Job' | tr '\n' ' ' | sed 's/ *$//')"
fi

mkdir -p "${OUT}/logs"
printf -v args '%q ' "$CONFIG" "$CHECKPOINT" --out "$OUT" "$@"
job=$(sbatch --parsable "${request[@]}" --job-name="infer-$(basename "$(dirname "${OUT}")")" --array="$array" \
    --output="${OUT}/logs/shard-%3a${of}.log" ${SBATCH_ARGS:-} \
    --wrap="srun ${SRUN_ARGS:-} ${PYTHON} -u -m pipeline.infer ${args} --shard \${SLURM_ARRAY_TASK_ID}/${SHARDS}")
job=${job%%;*}
trap 'scancel "$job" 2>/dev/null; echo "cancelled job array $job" >&2; exit 130' INT TERM
echo "submitted job array ${job}: shards ${array} of ${SHARDS} (logs in ${OUT}/logs)"

# pending reasons that no waiting resolves: the request exceeds what the partition (or its QOS/account) allows
never_runs='PartitionTimeLimit|PartitionNodeLimit|PartitionConfig|BadConstraints|InvalidQOS|InvalidAccount|QOSMax.*PerJob.*|AssocMax.*PerJob.*'
last=""
while :; do
    queue=$(squeue -h -r -j "$job" -o '%K|%t|%r' 2>/dev/null || true)
    blocked=$(echo "$queue" | awk -F'|' -v re="^(${never_runs})$" '$2 == "PD" && $3 ~ re {print $3; exit}')
    if [ -n "$blocked" ]; then
        scancel "$job"
        unschedulable "pending reason $blocked"
    fi
    unset queued
    declare -A queued=()
    while IFS='|' read -r k _ _; do [ -n "$k" ] && queued[$k]=1; done <<< "$queue"
    done_count=$((SHARDS - $(missing_shards | wc -l)))
    running=$(echo "$queue" | grep -c '|R|' || true)
    pending=$(echo "$queue" | grep -c '|PD|' || true)
    failed=()
    for k in "${todo[@]}"; do
        [ -n "${queued[$k]:-}" ] || [ -f "$(shard_file "$k")" ] || failed+=("shard $k ($(shard_log "$k"))")
    done
    line="infer-slurm: ${done_count}/${SHARDS} shards done, ${running} running, ${pending} pending"
    [ ${#failed[@]} -eq 0 ] || line+=", failed: ${failed[*]}"
    [ "$line" = "$last" ] || { echo "$line"; last=$line; }
    [ -n "$queue" ] || break
    sleep "$POLL_S"
done

mapfile -t missing < <(missing_shards)
if [ ${#missing[@]} -gt 0 ]; then
    logs=$(for k in "${missing[@]:0:5}"; do printf '%s ' "$(shard_log "$k")"; done)
    echo "error: ${#missing[@]} of ${SHARDS} shards missing in ${OUT}/merged; see ${logs% }; rerun to predict only those" >&2
    exit 1
fi
echo "complete: ${SHARDS} shards in ${OUT}/merged"
