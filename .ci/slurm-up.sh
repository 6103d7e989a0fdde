#!/usr/bin/env bash
# Bring up a real single-node Slurm on this machine (Debian packages slurm-wlm + munge) for the workflow's
# Slurm test: one node with the machine's cores, 2 dummy GPUs as GRES (select/cons_tres, so both `--gpus=N`
# and `--gres=gpu:N` are accepted), no accounting database (the profile's `slurm-status-command: squeue`).
# Idempotent: a running, responsive controller is left alone.  Needs root (CI machines and dev containers).
#
#   bash .ci/slurm-up.sh            # install if missing, configure, start, wait for the node to be idle
#   bash .ci/slurm-up.sh --down     # stop the daemons
set -euo pipefail

if [[ "${1:-}" == "--down" ]]; then
    pkill -x slurmd || true
    pkill -x slurmctld || true
    pkill -x munged || true
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm-up: needs root to install and start slurmctld/slurmd/munged" >&2
    exit 2
fi

if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then
    echo "slurm-up: controller already up"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-up: installing slurm-wlm and munge from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

HOST=$(hostname -s)
NCPU=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
GPU_DIR=/run/hessdistill-fake-gpu
mkdir -p "$GPU_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/slurm
# dummy GPU device nodes (character devices like /dev/null): slurmd only needs them to exist
for i in 0 1; do
    [[ -e "$GPU_DIR/gpu$i" ]] || mknod "$GPU_DIR/gpu$i" c 1 3
done

cat > /etc/slurm/slurm.conf <<EOF
ClusterName=hessdistill-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# squeue must still see finished jobs when the executor polls (it falls back to sacct below 3x its interval), and
# tests/test_slurm.py reads every job back (scontrol show job) up to the end of the suite, which started it early
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MpiDefault=none
NodeName=$HOST CPUs=$NCPU RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

cat > /etc/slurm/gres.conf <<EOF
NodeName=$HOST Name=gpu File=$GPU_DIR/gpu[0-1]
EOF

# munge: key from the package (create one if missing), daemon as the munge user
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi

pkill -x slurmd || true
pkill -x slurmctld || true
sleep 1
/usr/sbin/slurmctld -c   # -c: start clean (no state from an earlier configuration)
/usr/sbin/slurmd

for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
        echo "slurm-up: node $HOST up ($NCPU CPUs, ${MEM_MB} MB, gres gpu:2)"
        sinfo -N -o "%N %T %c %m %G"
        exit 0
    fi
    # a node that registered as down/drained after an unclean stop is returned to service
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm-up: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
