#!/usr/bin/env bash
# Train on a Slurm cluster: one task per GPU, each running `python -m pipeline.train ... --launcher slurm`.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [GPUS] [extra pipeline.train arguments...]
#
# GPUS defaults to 8 (GPUS_PER_NODE, default min(GPUS, 8), sets tasks per node; CPUS_PER_TASK defaults to 5).
# Extra srun options go in SRUN_ARGS, e.g. SRUN_ARGS="--quotatype=auto".
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [GPUS] [pipeline.train arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${5:-8}
shift $(( $# < 5 ? $# : 5 ))
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PYTHON=${PYTHON:-python}

cd "$(dirname "$0")/.."
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres="gpu:${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON}" -u -m pipeline.train "${CONFIG}" --work-dir "${WORK_DIR}" --launcher slurm "$@"
