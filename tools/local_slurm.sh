#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, with two fake GPUs, to try the Slurm targets without a cluster.
#
#   sudo tools/local_slurm.sh start|stop|status
#
# Needs root and the Debian/Ubuntu packages slurmctld, slurmd, slurm-client and munge
# (apt-get install -y slurmctld slurmd slurm-client munge). `start` writes /etc/slurm/slurm.conf and gres.conf
# (refusing to replace a configuration it did not write), starts munged, slurmctld and slurmd, and waits until the
# node is idle. The partition is PARTITION (default gpu, the Makefile's default), with all CPUs and memory of this
# machine, MAX_TIME (default 1:00:00) and 2 GPUs backed by /dev/null and /dev/zero: a job asking --gres=gpu:1 runs
# with CUDA_VISIBLE_DEVICES=0. Logs go to /var/log/slurm-local/. `stop` ends slurmctld and slurmd and removes the files (munged keeps running).
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local
MARK="# written by oid-tsd tools/local_slurm.sh"
PARTITION=${PARTITION:-gpu}
MAX_TIME=${MAX_TIME:-1:00:00}
NODE=$(hostname -s)

die() { echo "error: $*" >&2; exit 2; }

need_root() {
    [ "$(id -u)" = 0 ] || die "local_slurm.sh $1 must run as root (sudo $0 $1)"
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] ||
            die "$cmd not found: apt-get install -y slurmctld slurmd slurm-client munge"
    done
}

write_config() {
    if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qxF "$MARK" "$CONF_DIR/slurm.conf"; then
        die "$CONF_DIR/slurm.conf exists and was not written by this script; not replacing it"
    fi
    local memory
    memory=$(/usr/sbin/slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS"
    cat > "$CONF_DIR/slurm.conf" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SchedulerType=sched/backfill
MpiDefault=none
NodeName=$NODE CPUs=$(nproc) RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=$MAX_TIME State=UP
EOF
    printf '%s\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n' "$MARK" > "$CONF_DIR/gres.conf"
}

start_munge() {
    pgrep -u munge -x munged >/dev/null && return
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# A daemon writes its state files while it shuts down: removing $STATE before it has exited races with it.
wait_gone() {
    local deadline=$((SECONDS + 30))
    while running "$1"; do
        [ $SECONDS -lt $deadline ] || die "$1 (pid $(cat "$STATE/$1.pid")) did not exit within 30 s of SIGTERM"
        sleep 0.2
    done
}

wait_idle() {
    local state
    local deadline=$((SECONDS + 60))
    while [ $SECONDS -lt $deadline ]; do
        state=$(timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        case "$state" in idle*|mix*|alloc*) echo "local Slurm up: partition $PARTITION, node $NODE ($state)"; return;; esac
        sleep 1
    done
    die "node $NODE did not become idle (state '${state:-unknown}'); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

case "${1:-}" in
    start)
        need_root start
        write_config
        start_munge
        running slurmctld || /usr/sbin/slurmctld
        running slurmd || /usr/sbin/slurmd
        wait_idle
        ;;
    stop)
        need_root stop
        for daemon in slurmd slurmctld; do
            if running "$daemon"; then kill "$(cat "$STATE/$daemon.pid")"; fi
        done
        wait_gone slurmd
        wait_gone slurmctld
        if [ -f "$CONF_DIR/slurm.conf" ] && grep -qxF "$MARK" "$CONF_DIR/slurm.conf"; then
            rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
        fi
        rm -rf "$STATE"
        echo "local Slurm stopped"
        ;;
    status)
        sinfo -N -o "%P %N %t %c %m %G" || exit 1
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
