#!/usr/bin/env bash
# Start a loopback-only Slurm cluster with two nodes (n1, n2) on this one machine.
#
# Usage (as root, Debian 12):   tests/slurm/start_cluster.sh [STATE_DIR]
#                               tests/slurm/stop_cluster.sh  [STATE_DIR]
# STATE_DIR defaults to /tmp/spline-nas-slurm. It contains the spool directories, logs,
# PID files and the MariaDB data directory for accounting. The configuration goes to
# /etc/slurm/slurm.conf (plus slurmdbd.conf) so that plain `sbatch`, `squeue` and
# submitit find it; the script refuses to overwrite a slurm.conf it did not write.
#
# What it does:
#   1. apt-get installs slurmctld slurmd slurm-client munge slurmdbd mariadb-server if a
#      binary is missing (after an `apt-get update`).
#   2. Checks that `hostname` resolves to a 127.x address. Both fake nodes use that name
#      with NodeAddr=127.0.0.1, and CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
#      binds every Slurm listener to that address instead of 0.0.0.0.
#   3. Starts munged (unix socket), mariadbd (--skip-networking, unix socket only),
#      slurmdbd, slurmctld and one `slurmd -N nX` per node, without systemd.
#   4. Waits (bounded) until both nodes are idle; on failure prints the log tails.
# Running it again while the daemons are up starts nothing new.
#
# Measured behaviour of this setup (Slurm 22.05.8 from Debian 12, 2-core VM):
#   - start to both nodes idle takes about 10 to 25 s (package installation excluded);
#   - Slurm checks time limits about every 30 s and delivers --signal up to about 20 s
#     early, so tests that rely on timeouts or pre-timeout signals need that slack;
#   - a plain `scontrol requeue` sends SIGTERM and no pre-timeout signal, so a job keeps
#     its progress only if it checkpoints on SIGTERM as well;
#   - AuthInfo=cred_expire=10 and sched_interval=2,bf_interval=2 bring the restart of a
#     requeued job down from about 180 s to about 12 s.
# There are no cgroups here: proctrack/pgid, task/none and jobacct_gather/none.
# NOTE: proctrack/linuxproc loses srun when a requeue kills the batch shell first; the
# orphaned srun then cancelled the next run's step (same step id 0) about 20 s after the
# restart. proctrack/pgid kills the whole process group, srun included.
set -euo pipefail

STATE_DIR="${1:-/tmp/spline-nas-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by spline-nas tests/slurm/start_cluster.sh"
CLUSTER=splinenas
CTLD_PORT=6817
DBD_PORT=6819
NODE_PORTS=(6821 6822)
NODES=(n1 n2)
WAIT_S="${SPLINE_NAS_SLURM_WAIT_S:-120}"

log() { echo "start_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

tail_logs() {
    local file
    for file in "$STATE_DIR"/log/*.log; do
        [ -f "$file" ] || continue
        echo "----- last lines of $file -----" >&2
        tail -n 20 "$file" >&2
    done
}

# Return 0 if the PID file exists and names a live process.
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Poll a command until it succeeds or the bounded wait ends.
wait_for() {
    local what="$1" limit_s="$2"
    shift 2
    local waited=0
    until "$@" >/dev/null 2>&1; do
        if [ "$waited" -ge "$limit_s" ]; then
            tail_logs
            die "$what did not come up within ${limit_s} s (log tails above)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

[ "$(id -u)" -eq 0 ] || die "run as root: the daemons need root to start and to switch users"

# -- 1. packages ----------------------------------------------------------------------
missing=0
for binary in slurmctld slurmd slurmdbd sbatch munged mariadbd; do
    command -v "$binary" >/dev/null 2>&1 || missing=1
done
if [ "$missing" -eq 1 ]; then
    log "installing Slurm, munge and MariaDB packages"
    # A fresh machine may have no package lists yet.
    apt-get update -q >&2 || die "apt-get update failed; check the output above"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        slurmctld slurmd slurm-client munge slurmdbd mariadb-server >&2 \
        || die "apt-get install failed; run 'apt-get update' first and check the output above"
fi

# -- 2. loopback checks and configuration ---------------------------------------------
HOST="$(hostname)"
HOST_ADDR="$(getent ahostsv4 "$HOST" | awk 'NR == 1 {print $1}')"
case "$HOST_ADDR" in
    127.*) ;;
    *) die "host name '$HOST' resolves to '${HOST_ADDR:-nothing}', not a 127.x address;" \
           "the cluster must listen on loopback only, so add '127.0.1.1 $HOST' to /etc/hosts" ;;
esac

if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; move it away to use the test cluster"
fi

mkdir -p "$STATE_DIR"/{log,run,spool/ctld,mysql}
for node in "${NODES[@]}"; do mkdir -p "$STATE_DIR/spool/$node"; done
chmod 755 "$STATE_DIR"
NODE_CPUS=2
NODE_MEM_MB=2000

mkdir -p "$CONF_DIR"
cat >"$CONF.tmp" <<EOF
$MARKER
# State directory: $STATE_DIR. Two fake nodes on host $HOST ($HOST_ADDR), loopback only.
ClusterName=$CLUSTER
SlurmctldHost=$HOST($HOST_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CryptoType=crypto/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd-%n.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
# Finished jobs leave squeue after 30 s, so tests also exercise the sacct path.
MinJobAge=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
NodeName=n1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NODE_PORTS[0]} CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB State=UNKNOWN
NodeName=n2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NODE_PORTS[1]} CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=UNLIMITED State=UP
EOF
mv "$CONF.tmp" "$CONF"

cat >"$CONF_DIR/slurmdbd.conf.tmp" <<EOF
$MARKER
DbdHost=$HOST
DbdAddr=$HOST_ADDR
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
AuthType=auth/munge
PidFile=$STATE_DIR/run/slurmdbd.pid
LogFile=$STATE_DIR/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageLoc=slurm_acct_db
StorageUser=root
StorageHost=localhost
EOF
# MariaDB runs with --skip-networking. With StorageHost=localhost the client library
# connects through a unix socket, and slurmdbd 22.05 has no option for its path, so
# MYSQL_UNIX_PORT (exported below, before slurmdbd starts) names it.
chmod 600 "$CONF_DIR/slurmdbd.conf.tmp"
mv "$CONF_DIR/slurmdbd.conf.tmp" "$CONF_DIR/slurmdbd.conf"
cp "$CONF" "$CONF_DIR/slurmdbd.conf" "$STATE_DIR/"

# -- 3. daemons -----------------------------------------------------------------------
# munged: unix socket only. Reuse a munged that already responds.
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 0700 /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid \
        --log-file=/var/log/munge/munged.log
    cp /run/munge/munged.pid "$STATE_DIR/run/munged.pid"
    wait_for "munged" 20 bash -c 'munge -n | unmunge'
fi

# mariadbd: own data directory, no TCP listener.
MYSQL_SOCKET="$STATE_DIR/run/mysqld.sock"
if ! pid_alive "$STATE_DIR/run/mysqld.pid"; then
    chown mysql:mysql "$STATE_DIR/mysql"
    if [ ! -d "$STATE_DIR/mysql/mysql" ]; then
        log "initializing the MariaDB data directory"
        mariadb-install-db --user=mysql --datadir="$STATE_DIR/mysql" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$STATE_DIR/log/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$STATE_DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    touch "$STATE_DIR/log/mariadb.log"
    chown mysql:mysql "$STATE_DIR/log/mariadb.log" "$STATE_DIR/run"
    # setsid: its own session, so that killing the caller's process group (as a shell
    # job control or a test harness does) leaves the database running.
    setsid mariadbd --user=mysql --datadir="$STATE_DIR/mysql" --skip-networking \
        --socket="$MYSQL_SOCKET" --pid-file="$STATE_DIR/run/mysqld.pid" \
        --log-error="$STATE_DIR/log/mariadb.log" >/dev/null 2>&1 &
    wait_for "mariadbd" 60 mariadb --socket="$MYSQL_SOCKET" -e "SELECT 1"
fi
export MYSQL_UNIX_PORT="$MYSQL_SOCKET"

if ! pid_alive "$STATE_DIR/run/slurmdbd.pid"; then
    slurmdbd
    wait_for "slurmdbd" 60 sacctmgr -n show cluster
fi
if ! sacctmgr -n -P show cluster format=Cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

if ! pid_alive "$STATE_DIR/run/slurmctld.pid"; then
    slurmctld
    wait_for "slurmctld" 60 scontrol ping
fi
for node in "${NODES[@]}"; do
    if ! pid_alive "$STATE_DIR/run/slurmd-$node.pid"; then
        slurmd -N "$node"
    fi
done

# -- 4. wait for both nodes ------------------------------------------------------------
nodes_idle() {
    local states
    states="$(sinfo -h -N -p debug -o '%N %T' | sort -u)"
    [ "$(grep -cE '^n[12] idle$' <<<"$states")" -eq 2 ]
}
# A node left DOWN by an earlier run returns to service only after State=RESUME.
sleep 2
for node in "${NODES[@]}"; do
    if sinfo -h -n "$node" -o '%T' | grep -qE 'down|drain'; then
        scontrol update NodeName="$node" State=RESUME || true
    fi
done
wait_for "nodes n1 and n2 (idle)" "$WAIT_S" nodes_idle

# -- 5. every TCP listener of these daemons must be on loopback -------------------------
exposed="$(ss -ltnpH | grep -E '"(slurmctld|slurmd|slurmdbd|mariadbd|mysqld|munged)"' \
    | awk '$4 !~ /^127\./' || true)"
if [ -n "$exposed" ]; then
    echo "$exposed" >&2
    "$(dirname "$0")/stop_cluster.sh" "$STATE_DIR" || true
    die "a daemon listens on a non-loopback address (lines above); the cluster was stopped"
fi
log "cluster '$CLUSTER' is up: nodes n1, n2 idle in partition debug; config $CONF"
echo "export SLURM_CONF=$CONF"
