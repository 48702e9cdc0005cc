#!/usr/bin/env bash
# Single-node SLURM test cluster for stsflow (Debian's slurm-wlm + munge).
#
# Usage: profiles/admin/slurm_cluster.sh {install|start|stop|status|env}
#
#   install  apt-get update && apt-get install -y slurm-wlm munge (non-interactive,
#            services are NOT started by the package scripts)
#   start    write munge key + slurm.conf under $SLURM_STATE_DIR, launch munged,
#            slurmctld and slurmd, wait (bounded) until the node is idle, and record
#            the PIDs it started in $SLURM_STATE_DIR/pids
#   stop     cancel the test cluster's jobs and kill only the processes recorded by
#            `start` (idempotent: a second stop, or a stop without start, is a no-op)
#   status   show recorded daemons, sinfo and squeue
#   env      print `export SLURM_CONF=...` for clients (eval "$(... env)")
#
# Cluster layout: one node (this host, real CPU topology from `slurmd -C`, memory a
# bit below the real amount), partitions `cpu` (default) and `gpu` on the same node.
# The node declares FAKE count-only GPUs (Gres=gpu:N, no device files) so that jobs
# asking for `--gpus=1` / `--gres=gpu:1` are scheduled; no CUDA device is visible to
# them. No accounting (no slurmdbd): `sacct` does not work, use `squeue`.
# No cgroups / systemd needed: proctrack/pgid, task/none, runs as root in containers.
#
# Environment:
#   SLURM_STATE_DIR            state, config and logs   (default /tmp/stsflow-slurm)
#   STSFLOW_SLURM_FAKE_GPUS    fake GPUs on the node    (default 2; 0 disables gres)
#   STSFLOW_SLURMCTLD_PORT     slurmctld port           (default 6817)
#   STSFLOW_SLURMD_PORT        slurmd port              (default 6818)
#   STSFLOW_SLURM_WAIT_S       bounded wait for idle    (default 60)
#   STSFLOW_SLURM_DEBUG        daemon log level         (default info; e.g. debug2)
#   STSFLOW_SLURM_LINK_ETC     1 (default): if /etc/slurm/slurm.conf does not exist,
#                              symlink it to the generated config so plain `sinfo`,
#                              `sbatch` ... work without SLURM_CONF; `stop` removes the
#                              link again. 0: never touch /etc (then export SLURM_CONF).
set -euo pipefail

STATE_DIR="${SLURM_STATE_DIR:-/tmp/stsflow-slurm}"
FAKE_GPUS="${STSFLOW_SLURM_FAKE_GPUS:-2}"
CTLD_PORT="${STSFLOW_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${STSFLOW_SLURMD_PORT:-6818}"
WAIT_S="${STSFLOW_SLURM_WAIT_S:-60}"
LINK_ETC="${STSFLOW_SLURM_LINK_ETC:-1}"
ETC_CONF=/etc/slurm/slurm.conf

CONF_DIR="$STATE_DIR/etc"
CONF="$CONF_DIR/slurm.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
LOG_DIR="$STATE_DIR/log"
PIDS_FILE="$STATE_DIR/pids"
ETC_LINK_MARK="$STATE_DIR/etc_link_created"

die() { echo "slurm_cluster.sh: ERROR: $*" >&2; exit 1; }
log() { echo "slurm_cluster.sh: $*" >&2; }

need_root() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (slurmd needs root; munged/slurmctld run as root here)"
}

need_bins() {
    local b missing=()
    for b in munged slurmctld slurmd sinfo squeue scancel scontrol; do
        command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || missing+=("$b")
    done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}; run: $0 install"
}

export PATH="$PATH:/usr/sbin:/sbin"

# Clients use our config (the daemons get it via -f).
export SLURM_CONF="$CONF"

cmd_install() {
    need_root
    local created_policy=0
    # Keep package maintainer scripts from starting munge/slurm services.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local rc=0
    {
        apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                slurm-wlm munge
    } || rc=$?
    if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    ((rc == 0)) || die "apt-get failed (rc=$rc)"
    log "installed: $(slurmd -V 2>/dev/null || echo '?'), $(munged -V 2>&1 | head -1 || echo '?')"
}

# ---- pid bookkeeping -------------------------------------------------------------
# $PIDS_FILE lines: "<name> <pid> <starttime-ticks>"; a pid is only ours if its comm
# and its start time (field 22 of /proc/PID/stat) still match.

proc_starttime() { # pid -> start time in clock ticks, or empty
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    # strip "pid (comm) " (comm may contain spaces/parens) then take field 20 (= 22 overall)
    stat="${stat##*) }"
    awk '{print $20}' <<<"$stat"
}

proc_comm() { cat "/proc/$1/comm" 2>/dev/null || true; }

is_ours() { # name pid starttime
    local name=$1 pid=$2 st=$3
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    [[ "$(proc_comm "$pid")" == "$name" ]] || return 1
    [[ "$(proc_starttime "$pid")" == "$st" ]] || return 1
}

record_pid() { # name pidfile
    local name=$1 pidfile=$2 pid="" i
    for ((i = 0; i < 100; i++)); do # the daemon writes its pid file after forking
        if [[ -s "$pidfile" ]]; then
            pid="$(tr -dc '0-9' <"$pidfile")"
            if [[ -n "$pid" && "$(proc_comm "$pid")" == "$name" ]]; then break; fi
        fi
        pid=""
        sleep 0.1
    done
    [[ -n "$pid" ]] || return 1
    echo "$name $pid $(proc_starttime "$pid")" >>"$PIDS_FILE"
    log "started $name (pid $pid)"
}

ours_alive() { # name -> true if the recorded daemon of that name is still ours
    local name pid st
    [[ -s "$PIDS_FILE" ]] || return 1
    while read -r name pid st; do
        [[ "$name" == "$1" ]] && is_ours "$name" "$pid" "$st" && return 0
    done <"$PIDS_FILE"
    return 1
}

all_ours_alive() {
    [[ -s "$PIDS_FILE" ]] || return 1
    local name pid st n=0
    while read -r name pid st; do
        is_ours "$name" "$pid" "$st" || return 1
        n=$((n + 1))
    done <"$PIDS_FILE"
    ((n == 3))
}

# ---- config -----------------------------------------------------------------------

write_config() {
    local hw node cpus boards sockets cores threads realmem mem
    hw="$(slurmd -C 2>/dev/null | head -1)" || true
    [[ "$hw" == NodeName=* ]] || die "'slurmd -C' gave no hardware line: $hw"
    get() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$hw"; }
    node="$(get NodeName)"
    cpus="$(get CPUs)"
    boards="$(get Boards)"
    sockets="$(get SocketsPerBoard)"
    cores="$(get CoresPerSocket)"
    threads="$(get ThreadsPerCore)"
    realmem="$(get RealMemory)"
    [[ -n "$node" && -n "$cpus" && -n "$realmem" ]] || die "cannot parse 'slurmd -C': $hw"
    # a bit below the real memory: 90 %, at least 512 MB headroom
    mem=$((realmem * 9 / 10))
    ((realmem - mem >= 512)) || mem=$((realmem - 512))
    ((mem > 0)) || die "node memory too small: $realmem MB"

    local gres_line="" node_gres=""
    if ((FAKE_GPUS > 0)); then
        gres_line="GresTypes=gpu"
        node_gres="Gres=gpu:$FAKE_GPUS"
        # Slurm 22.05 drops file-less GPUs ("Removing file-less GPU"), even with
        # Flags=CountOnly, and wants character/block devices, so File= points at
        # symlinks to /dev/null. Nothing is bound (task/none, no cgroups); jobs get
        # CUDA_VISIBLE_DEVICES set but see no CUDA device.
        mkdir -p "$STATE_DIR/dev"
        local g
        for ((g = 0; g < FAKE_GPUS; g++)); do ln -sfn /dev/null "$STATE_DIR/dev/fakegpu$g"; done
        echo "NodeName=$node Name=gpu File=$STATE_DIR/dev/fakegpu[0-$((FAKE_GPUS - 1))]" >"$CONF_DIR/gres.conf"
    else
        : >"$CONF_DIR/gres.conf"
    fi

    cat >"$CONF" <<EOF
# Generated by stsflow profiles/admin/slurm_cluster.sh -- single-node TEST cluster.
ClusterName=stsflow
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# squeue-based status polling (snakemake slurm plugin) needs finished jobs to stay
# visible longer than its max. polling interval (180 s).
MinJobAge=600
ReturnToService=2
InactiveLimit=0
KillWait=10
SlurmdTimeout=120
SlurmctldTimeout=60
StateSaveLocation=$STATE_DIR/state/slurmctld
SlurmdSpoolDir=$STATE_DIR/spool/slurmd
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=${STSFLOW_SLURM_DEBUG:-info}
SlurmdDebug=${STSFLOW_SLURM_DEBUG:-info}
$gres_line
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
    echo "$node" >"$STATE_DIR/node"
}

link_etc_conf() {
    [[ "$LINK_ETC" == 1 ]] || return 0
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]; then
        touch "$ETC_LINK_MARK"
    elif [[ ! -e "$ETC_CONF" && ! -L "$ETC_CONF" ]]; then
        mkdir -p "$(dirname "$ETC_CONF")"
        ln -s "$CONF" "$ETC_CONF"
        touch "$ETC_LINK_MARK"
        log "linked $ETC_CONF -> $CONF"
    else
        log "NOTE: $ETC_CONF exists and is not ours; clients need: export SLURM_CONF=$CONF"
    fi
}

unlink_etc_conf() {
    if [[ -e "$ETC_LINK_MARK" ]]; then
        if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]; then
            rm -f "$ETC_CONF"
        fi
        rm -f "$ETC_LINK_MARK"
    fi
}

log_tails() {
    local f
    for f in "$LOG_DIR"/munged.log "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log \
        "$LOG_DIR"/slurmctld.stderr "$LOG_DIR"/slurmd.stderr "$LOG_DIR"/munged.stderr; do
        [[ -s "$f" ]] || continue
        echo "----- tail -n 25 $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

fail_start() {
    echo "slurm_cluster.sh: ERROR: $*" >&2
    log_tails
    log "stopping what was started ..."
    cmd_stop >&2 || true
    exit 1
}

node_state() {
    sinfo -h -N -n "$(cat "$STATE_DIR/node")" -o '%t' 2>/dev/null | head -1 || true
}

cmd_start() {
    need_root
    need_bins
    if all_ours_alive; then
        log "already running (pids in $PIDS_FILE)"
        case "$(node_state)" in idle* | mix* | alloc*) return 0 ;; esac
        die "daemons are running but the node is not idle: '$(node_state)'; run '$0 stop' first"
    fi
    if [[ -s "$PIDS_FILE" ]]; then
        log "stale state from a previous start; stopping it first"
        cmd_stop
    fi

    mkdir -p "$STATE_DIR"
    chmod 755 "$STATE_DIR"
    mkdir -p "$CONF_DIR" "$MUNGE_DIR" "$LOG_DIR" "$STATE_DIR/run" \
        "$STATE_DIR/state/slurmctld" "$STATE_DIR/spool/slurmd"
    chmod 755 "$MUNGE_DIR" "$CONF_DIR" "$LOG_DIR"
    : >"$PIDS_FILE"

    # munge key (kept across restarts of the same state dir)
    if [[ ! -s "$MUNGE_KEY" ]]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chmod 400 "$MUNGE_KEY"

    write_config
    link_etc_conf

    # --- munged ---
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$STATE_DIR/run/munged.pid"
    munged --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE_DIR/run/munged.pid" --log-file="$LOG_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        </dev/null >"$LOG_DIR/munged.stderr" 2>&1 ||
        fail_start "munged failed to start"
    record_pid munged "$STATE_DIR/run/munged.pid" || fail_start "munged did not write its pid file"
    local i
    for ((i = 0; i < 50; i++)); do [[ -S "$MUNGE_SOCKET" ]] && break; sleep 0.1; done
    [[ -S "$MUNGE_SOCKET" ]] || fail_start "munge socket $MUNGE_SOCKET did not appear"
    if command -v munge >/dev/null 2>&1; then
        munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
            fail_start "munge/unmunge round trip failed"
    fi

    # --- slurmctld (-c: start from a clean job state) ---
    rm -f "$STATE_DIR/run/slurmctld.pid"
    slurmctld -f "$CONF" -c </dev/null >"$LOG_DIR/slurmctld.stderr" 2>&1 ||
        fail_start "slurmctld failed to start"
    record_pid slurmctld "$STATE_DIR/run/slurmctld.pid" ||
        fail_start "slurmctld did not write its pid file (crashed?)"

    # --- slurmd ---
    rm -f "$STATE_DIR/run/slurmd.pid"
    slurmd -f "$CONF" -N "$(cat "$STATE_DIR/node")" </dev/null >"$LOG_DIR/slurmd.stderr" 2>&1 ||
        fail_start "slurmd failed to start"
    record_pid slurmd "$STATE_DIR/run/slurmd.pid" ||
        fail_start "slurmd did not write its pid file (crashed?)"

    # --- bounded wait for an idle node ---
    local deadline=$((SECONDS + WAIT_S)) st=""
    while ((SECONDS < deadline)); do
        all_ours_alive || fail_start "a daemon died during startup"
        st="$(node_state)"
        case "$st" in
        idle*) break ;;
        down* | drain* | drng* | fail* | inval*)
            # ReturnToService=2 normally clears this; nudge once it registered.
            scontrol update NodeName="$(cat "$STATE_DIR/node")" State=RESUME >/dev/null 2>&1 || true
            ;;
        esac
        sleep 1
    done
    [[ "$st" == idle* ]] || fail_start "node not idle after ${WAIT_S}s (state: '${st:-no answer}')"
    log "cluster up in state dir $STATE_DIR; node $(cat "$STATE_DIR/node") idle"
    sinfo -o '%P %a %D %t %c %m %G' >&2 || true
    if [[ ! -L "$ETC_CONF" || "$(readlink "$ETC_CONF")" != "$CONF" ]]; then
        log "clients need: export SLURM_CONF=$CONF"
    fi
}

our_job_ids() {
    squeue -h -o '%A' 2>/dev/null || true
}

cmd_stop() {
    if [[ ! -s "$PIDS_FILE" ]]; then
        unlink_etc_conf
        log "not running (no $PIDS_FILE)"
        return 0
    fi
    local name pid st
    # Cancel the test cluster's jobs while slurmctld is still up (everything in this
    # cluster was submitted against it), so slurmstepd/job processes go away cleanly.
    if ours_alive munged && ours_alive slurmctld; then
        local ids
        ids="$(our_job_ids | tr '\n' ' ')"
        if [[ -n "${ids// /}" ]]; then
            log "cancelling jobs: $ids"
            # shellcheck disable=SC2086
            scancel $ids >/dev/null 2>&1 || true
            local i
            for ((i = 0; i < 30; i++)); do
                [[ -z "$(squeue -h -t R,CG,PD,CF -o '%A' 2>/dev/null || true)" ]] && break
                sleep 1
            done
        fi
    fi
    # slurmstepd processes that belong to our slurmd (children while it lives)
    local stepds=()
    while read -r name pid st; do
        if [[ "$name" == slurmd ]] && is_ours "$name" "$pid" "$st"; then
            local p
            for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
                # slurmstepd (daemonized, ppid 1) of OUR slurmd: cwd is our log dir and
                # it holds our slurmd.log open
                local fds
                fds="$(ls -l "/proc/$p/fd" 2>/dev/null || true)"
                if [[ "$(readlink "/proc/$p/cwd" 2>/dev/null || true)" == "$STATE_DIR/"* ||
                    "$fds" == *"-> $STATE_DIR/"* ]]; then
                    stepds+=("$p $(proc_starttime "$p")")
                fi
            done
        fi
    done <"$PIDS_FILE"
    # stop in reverse start order: slurmd, slurmctld, munged
    local lines=()
    mapfile -t lines < <(tac "$PIDS_FILE")
    local l
    for l in "${lines[@]}"; do
        read -r name pid st <<<"$l"
        stop_one "$name" "$pid" "$st"
    done
    for l in "${stepds[@]}"; do
        read -r pid st <<<"$l"
        stop_one slurmstepd "$pid" "$st"
    done
    rm -f "$PIDS_FILE"
    unlink_etc_conf
    log "stopped"
}

stop_one() { # name pid starttime
    local name=$1 pid=$2 st=$3 i
    if ! is_ours "$name" "$pid" "$st"; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        is_ours "$name" "$pid" "$st" || { log "stopped $name (pid $pid)"; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_ours "$name" "$pid" "$st" || return 0
        sleep 0.1
    done
    echo "slurm_cluster.sh: ERROR: could not kill $name (pid $pid)" >&2
    return 1
}

cmd_status() {
    local name pid st rc=0
    if [[ ! -s "$PIDS_FILE" ]]; then
        echo "not running (no $PIDS_FILE)"
        return 3
    fi
    while read -r name pid st; do
        if is_ours "$name" "$pid" "$st"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: NOT running (recorded pid $pid)"
            rc=3
        fi
    done <"$PIDS_FILE"
    echo "SLURM_CONF=$CONF"
    sinfo -o '%P %a %D %t %c %m %G' || rc=3
    squeue || rc=3
    return "$rc"
}

cmd_env() {
    echo "export SLURM_CONF=$(printf '%q' "$CONF")"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {install|start|stop|status|env}" >&2
    exit 2
    ;;
esac
