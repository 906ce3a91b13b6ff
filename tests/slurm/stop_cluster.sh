#!/usr/bin/env bash
# Stop the loopback Slurm cluster started by tests/slurm/start_cluster.sh.
#
# Usage (as root):   tests/slurm/stop_cluster.sh [STATE_DIR]   (default /tmp/spline-nas-slurm)
# Stops each daemon through the PID file start_cluster.sh left in STATE_DIR/run, in the
# reverse order of starting: slurmd n1/n2, slurmctld, slurmdbd, mariadbd, munged. munged
# is stopped only if start_cluster.sh started it (it then copies its PID file there).
# Running it again, or on a cluster that is not running, does nothing and exits 0.
# STATE_DIR, /etc/slurm/slurm.conf and the accounting database stay, so a later start
# continues with the same job ids and accounting history.
set -euo pipefail

STATE_DIR="${1:-/tmp/spline-nas-slurm}"
RUN_DIR="$STATE_DIR/run"

log() { echo "stop_cluster: $*" >&2; }

# Send SIGTERM to the process in the PID file and wait up to 30 s, then SIGKILL.
stop_pid_file() {
    local name="$1" file="$2" pid waited=0
    [ -f "$file" ] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$file"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge 30 ]; then
            log "$name (pid $pid) did not exit after 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$file"
}

if [ ! -d "$RUN_DIR" ]; then
    log "no state directory $RUN_DIR; nothing to stop"
    exit 0
fi
for node in n1 n2; do
    stop_pid_file "slurmd $node" "$RUN_DIR/slurmd-$node.pid"
done
stop_pid_file slurmctld "$RUN_DIR/slurmctld.pid"
stop_pid_file slurmdbd "$RUN_DIR/slurmdbd.pid"
stop_pid_file mariadbd "$RUN_DIR/mysqld.pid"
if [ -f "$RUN_DIR/munged.pid" ]; then
    stop_pid_file munged "$RUN_DIR/munged.pid"
    rm -f /run/munge/munged.pid
fi
log "stopped"
