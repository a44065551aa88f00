#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for the tests (tests/slurm.cmake) and
# for trying the batch scripts: Debian's slurmctld and slurmd (slurm-wlm) with
# their own munged, all run as root, no cgroups (proctrack/linuxproc,
# task/none), no accounting. Everything lives in one directory - the
# configuration, munge's key and socket, state, spool and logs - so nothing
# under /etc is touched, and the commands find the cluster through SLURM_CONF.
#   bash jobs/slurm_local.sh start    # configure and start (or find it running)
#   bash jobs/slurm_local.sh stop     # stop the daemons, cancel what still runs
#   bash jobs/slurm_local.sh status
#   export SLURM_CONF=$(bash jobs/slurm_local.sh conf)   # then sbatch, squeue, ...
# Environment: TADIST_SLURM_DIR (default /var/tmp/tadist-slurm),
# TADIST_SLURM_PORT (slurmctld's port, default 6817; slurmd uses the next one),
# TADIST_SLURM_CPUS (CPUs the node offers, default: the cores, at least 4, so
# that a 4-rank job fits on a small machine: ranks oversubscribe its cores).
# Needs root and the packages slurmctld, slurmd, slurm-client and munge
# (bash jobs/setup.sh installs them); exits 77 when they are missing.
set -euo pipefail
DIR=${TADIST_SLURM_DIR:-/var/tmp/tadist-slurm}
PORT=${TADIST_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
MUNGE_SOCKET=$DIR/munge/munge.socket

have_slurm() {
    for c in slurmctld slurmd munged sbatch scontrol sinfo; do
        command -v "$c" > /dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" > /dev/null 2>&1 ||
            return 1
    done
}
PATH=$PATH:/usr/sbin

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=${TADIST_SLURM_CPUS:-$(nproc)}
    [[ -n ${TADIST_SLURM_CPUS:-} ]] || ((cpus >= 4)) || cpus=4
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge" "$DIR/log"
    chmod 700 "$DIR/munge"
    cat > "$CONF" <<EOF
# Written by jobs/slurm_local.sh: one node on localhost, for tests.
ClusterName=tadist
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long (+1 s) before it may start again (default 120)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups: processes tracked by their parents, no binding, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# look at pending jobs every 2 s (defaults 60 s and 30 s): a requeued job
# starts as soon as it may
SchedulerParameters=sched_interval=2,bf_interval=2
# srun --mpi=pmix starts Open MPI's ranks (Slurm's PMIx v4 plugin)
MpiDefault=none
ReturnToService=2
# the configured CPUs, not the machine's, count (a 2-core CI runner offers 4)
SlurmdParameters=config_overrides
# a job's processes get SIGKILL this long after SIGTERM (time limit, scancel)
KillWait=30
JobRequeue=1
MailProg=/bin/true
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$DIR/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
    if [[ ! -s $DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
}

running() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -1; }

start() {
    have_slurm || { echo "slurm_local: slurmctld, slurmd, slurm-client or munge missing (bash jobs/setup.sh)" >&2; exit 77; }
    [[ $(id -u) -eq 0 ]] || { echo "slurm_local: must run as root" >&2; exit 1; }
    if [[ -e $CONF ]] && running && [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]; then
        echo "slurm_local: running ($CONF)"
        return 0
    fi
    stop quiet
    write_conf
    munged --force --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    slurmctld -c -f "$CONF" # -c: a clean start, no jobs from an earlier cluster
    slurmd -f "$CONF"
    local i
    for ((i = 0; i < 300; i++)); do
        [[ $(node_state) == idle ]] && break
        sleep 0.1
    done
    if [[ $(node_state) != idle ]]; then
        echo "slurm_local: the node did not come up ($(node_state)); logs in $DIR/log:" >&2
        tail -n 20 "$DIR"/log/*.log >&2
        exit 1
    fi
    echo "slurm_local: one node '$(hostname -s)' up; export SLURM_CONF=$CONF"
}

# kill_pidfile FILE NAME: SIGTERM to the daemon of FILE, SIGKILL after 10 s
kill_pidfile() {
    local f=$1 pid i
    [[ -s $f ]] || return 0
    pid=$(cat "$f")
    if [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "$2"* ]]; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

stop() {
    if [[ -e $CONF ]] && running; then
        scancel --full --quiet --state=RUNNING 2>/dev/null || true
        scancel --quiet --state=PENDING 2>/dev/null || true
    fi
    kill_pidfile "$DIR/slurmd.pid" slurmd
    kill_pidfile "$DIR/slurmctld.pid" slurmctld
    kill_pidfile "$DIR/munge/munged.pid" munged
    [[ ${1:-} == quiet ]] || echo "slurm_local: stopped"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) if running; then scontrol ping; sinfo; squeue; else echo "slurm_local: not running"; exit 1; fi ;;
conf) echo "$CONF" ;;
*) echo "usage: $0 start|stop|status|conf" >&2; exit 2 ;;
esac
