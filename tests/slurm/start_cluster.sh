#!/usr/bin/env bash
# Brings up a one-node SLURM cluster on this machine for tests/test_slurm.py: munged,
# slurmctld and slurmd from Debian's packages (slurm-wlm, munge), started by hand (no
# systemd). Needs root. Idempotent: it writes the config, and when that is unchanged, the
# daemons run and the node takes jobs, it only reports; otherwise it (re)starts them.
#
# The node is this machine with its real CPU count, and one stand-in GPU: a GRES `gpu`
# backed by /dev/null, so that profiles/slurm's requests (`sbatch --gpus=1` for the model
# stages) are scheduled as on a GPU cluster, one model job at a time, while the embedded
# model runs on the CPUs. Partitions `cpu` and `gpu` (both this node) carry the names
# profiles/slurm uses. Without slurmdbd there is no accounting database: Snakemake polls
# job states with squeue (MinJobAge keeps finished jobs visible), and every finished job
# is written to $JOBCOMP (jobcomp/filetxt), which the test reads.
#
# Environment: SLURM_TEST_MEM_MB, the memory the node declares (default: the larger of
# its real memory and 33000, so that the model stages' `mem_mb` of 16000 * attempt can
# be submitted on a small CI runner; the tiny run uses a fraction of it).
set -euo pipefail

CONF_DIR=/etc/slurm # the executor's job step drops SLURM_CONF: it must be the default
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
JOBCOMP=$LOG_DIR/jobcomp.log
SPOOL=/var/spool/slurm
NODE=$(hostname -s)

fail() {
    echo "start_cluster.sh: $1" >&2
    timeout 10 sinfo -N -l >&2 || true
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 1
}

wait_for() {
    # wait_for SECONDS COMMAND...: whether COMMAND succeeds within SECONDS.
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# slurmctld and slurmd daemonise; their pid files are how this script finds them.
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stopped() { ! running "$1"; }
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_up() { running /run/slurmctld.pid && timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; }

node_ready() {
    # The node answers and can take jobs (idle, mixed or allocated; not down or drained).
    local state
    state=$(timeout 10 sinfo --noheader --node "$NODE" --format=%T 2>/dev/null | head -n1)
    case "$state" in
    idle* | mix* | alloc* | completing*) return 0 ;;
    *) return 1 ;;
    esac
}

if [ "$(id -u)" != 0 ]; then
    echo "start_cluster.sh: needs root (it starts munged, slurmctld and slurmd)" >&2
    exit 1
fi
for cmd in munged slurmctld slurmd sbatch squeue scontrol; do
    if ! command -v "$cmd" >/dev/null; then
        echo "start_cluster.sh: '$cmd' not found; install it with: apt-get install slurm-wlm munge" >&2
        exit 1
    fi
done

# --- munge ---------------------------------------------------------------------------
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! munge_works; then
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munge_works || fail "munged did not start"
fi

# --- configuration -------------------------------------------------------------------
CPUS=$(nproc)
REAL_MB=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM_MB=${SLURM_TEST_MEM_MB:-$((REAL_MB > 33000 ? REAL_MB : 33000))}
mkdir -p "$CONF_DIR" "$LOG_DIR" "$SPOOL/ctld" "$SPOOL/d"
touch "$JOBCOMP"

changed=0
install_conf() {
    # Moves $1.new into place; notes whether it differs from what the daemons run with.
    if cmp -s "$1.new" "$1"; then
        rm "$1.new"
    else
        mv "$1.new" "$1"
        changed=1
    fi
}

cat >"$CONF.new" <<EOF
# Written by tests/slurm/start_cluster.sh: a one-node test cluster, not a production config.
ClusterName=critical-windows-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track processes by parent id, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
SwitchType=switch/none
MpiDefault=none
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that give no --mem take 500 MB per CPU, not the whole node, so they share it.
DefMemPerCPU=500
# Finished jobs stay visible to squeue (Snakemake's status command here) for 10 minutes.
MinJobAge=600
# The node declares MEM_MB even where it has less: see the header.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
install_conf "$CONF"
cat >"$CONF_DIR/gres.conf.new" <<EOF
# Written by tests/slurm/start_cluster.sh: a stand-in GPU with no device behind it.
Name=gpu File=/dev/null
EOF
install_conf "$CONF_DIR/gres.conf"

# --- daemons -------------------------------------------------------------------------
if [ "$changed" = 0 ] && ctld_up && running /run/slurmd.pid && node_ready; then
    echo "cluster already up: node $NODE $(sinfo --noheader --node "$NODE" --format=%T)"
    exit 0
fi
if [ "$changed" = 1 ]; then
    # A new config: stop what runs with the old one (running jobs survive in the state).
    for pid in /run/slurmd.pid /run/slurmctld.pid; do
        if running "$pid"; then
            kill "$(cat "$pid")"
            wait_for 20 stopped "$pid" || fail "could not stop the daemon of $pid"
        fi
    done
fi
running /run/slurmctld.pid || slurmctld
wait_for 30 ctld_up || fail "slurmctld did not start"
running /run/slurmd.pid || slurmd
if ! wait_for 30 node_ready; then
    # A node left down or drained by an earlier run: return it to service.
    scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    wait_for 15 node_ready || fail "node $NODE did not come up"
fi
echo "cluster up: node $NODE $(sinfo --noheader --node "$NODE" --format=%T)," \
    "$CPUS CPUs, $MEM_MB MB, 1 stand-in GPU"
