#!/usr/bin/env bash
# Train on a Slurm cluster: one requeueable batch job of GPUS tasks, one GPU each, every task running
# `python -m pipeline.train ... --launcher slurm`; waits for the job, requeues included, and exits 0 when it
# completed.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR GPUS [pipeline.train arguments...]
#
# GPUS_PER_NODE (default min(GPUS, 8)) tasks and GPUs go on each node; a larger GPUS spans GPUS / GPUS_PER_NODE
# nodes (a multiple of it), so WORK_DIR and the data must be on a filesystem every node sees.
# Overrides: CPUS_PER_TASK (5), GRES (gpu; gpu:a100 asks --gres=gpu:a100:N; none asks no GPUs), MEM (per node,
# sbatch --mem; default the partition's), TIME (sbatch --time; default the partition's), REQUEUE_BEFORE_S (300),
# SBATCH_ARGS and SRUN_ARGS (passed through), POLL_S (2: seconds between checks of the job's state).
# Preemption, a failed node or `scontrol requeue` requeue the job (--requeue); REQUEUE_BEFORE_S seconds before its
# time limit it requeues itself. A restarted job resumes from WORK_DIR's last complete checkpoint by itself.
# A request the partition can never run stops at once (sbatch --test-only). Job output: WORK_DIR/slurm-JOBID.out
# (its last lines are shown when the job fails).
set -euo pipefail

die() { echo "error: $*" >&2; exit 2; }

if [ "${1:-}" = --in-job ]; then  # the batch script itself, on the job's first node
    shift
    requeue() { echo "job ${SLURM_JOB_ID}: time limit near, requeueing it" >&2; scontrol requeue "${SLURM_JOB_ID}"; }
    trap requeue USR1
    resume=()
    if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
        resume=(--resume)
        echo "job ${SLURM_JOB_ID}: restart ${SLURM_RESTART_COUNT}, resuming from the last checkpoint" >&2
    fi
    # srun in the background: the USR1 trap runs while `wait` waits
    srun --kill-on-bad-exit=1 ${SRUN_ARGS:-} "$@" "${resume[@]}" &
    wait $! || status=$?
    wait || true
    exit "${status:-0}"
fi

[ $# -ge 5 ] || die "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR GPUS [pipeline.train arguments...]"
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 WORK_DIR=$4 GPUS=$5
shift 5
count() { [[ "$2" =~ ^[0-9]+$ ]] && (( 10#$2 > 0 )) || die "$1=$2: must be a positive integer"; }
count GPUS "${GPUS}"
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
count GPUS_PER_NODE "${GPUS_PER_NODE}"
(( GPUS <= GPUS_PER_NODE || GPUS % GPUS_PER_NODE == 0 )) ||
    die "GPUS=${GPUS} spans several nodes, so it must be a multiple of GPUS_PER_NODE=${GPUS_PER_NODE}"
TASKS_PER_NODE=$(( GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE ))
NODES=$(( GPUS / TASKS_PER_NODE ))
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES:-gpu}
PYTHON=${PYTHON:-python}

SCRIPT=$(realpath "$0")
cd "$(dirname "${SCRIPT}")/.."
options=(--partition="${PARTITION}" --job-name="${JOB_NAME}" --nodes="${NODES}"
         --ntasks-per-node="${TASKS_PER_NODE}" --cpus-per-task="${CPUS_PER_TASK}" --requeue
         --signal="B:USR1@${REQUEUE_BEFORE_S:-300}" --open-mode=append --output="${WORK_DIR}/slurm-%j.out")
[ "${GRES}" = none ] || options+=(--gres="${GRES}:${TASKS_PER_NODE}")
[ -z "${MEM:-}" ] || options+=(--mem="${MEM}")
[ -z "${TIME:-}" ] || options+=(--time="${TIME}")
# shellcheck disable=SC2206  # SBATCH_ARGS is a list of options
options+=(${SBATCH_ARGS:-})
job=("${SCRIPT}" --in-job "${PYTHON}" -u -m pipeline.train "${CONFIG}" --work-dir "${WORK_DIR}" --launcher slurm "$@")

if ! answer=$(sbatch --test-only "${options[@]}" "${job[@]}" 2>&1); then
    answer=${answer//sbatch: error: /}
    die "partition ${PARTITION} cannot run ${NODES} node(s) x ${TASKS_PER_NODE} tasks of ${CPUS_PER_TASK} CPUs" \
        "and GRES ${GRES} (CPUS_PER_TASK, GPUS_PER_NODE, GRES, MEM, TIME): ${answer//$'\n'/; }"
fi
mkdir -p "${WORK_DIR}"
id=$(sbatch --parsable "${options[@]}" "${job[@]}")
id=${id%%;*}
echo "job ${id}: training on ${NODES} node(s) x ${TASKS_PER_NODE} tasks; output in ${WORK_DIR}/slurm-${id}.out"
trap 'echo "job ${id} goes on without this command (scancel ${id} stops it)" >&2; exit 130' INT TERM
# wait for the job by its state (sbatch --wait may end at a requeue): a state that could still turn into a
# requeue counts once it stays for POLL_S seconds
state_of() { scontrol show job -o "${id}" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
previous=
while sleep "${POLL_S:-2}"; do
    state=$(state_of)
    case "${state}" in
        COMPLETED) echo "job ${id}: completed"; exit 0 ;;
        PENDING | CONFIGURING | RUNNING | COMPLETING | REQUEUED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | \
            SUSPENDED | SIGNALING | STAGE_OUT) previous= ;;
        *) if [ "${state}" = "${previous}" ]; then
               tail -n 20 "${WORK_DIR}/slurm-${id}.out" 2>/dev/null | sed "s/^/job ${id}: /" >&2 || true
               die "job ${id} ended ${state:-UNKNOWN (no longer listed by scontrol)}: see ${WORK_DIR}/slurm-${id}.out"
           fi
           previous=${state} ;;
    esac
done
