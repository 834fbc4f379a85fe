#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying and testing biqa's cluster path (docs/cluster.md):
#   scripts/slurm_cluster.sh up      install the Debian packages when missing, start munge, MariaDB + slurmdbd,
#                                    slurmctld and slurmd (nothing happens to what already runs)
#   scripts/slurm_cluster.sh down    stop them all
#   scripts/slurm_cluster.sh status  which daemons run, and sinfo
# Partitions: `low` (the default) whose jobs a `high` job pre-empts: Slurm sends SIGTERM, waits GraceTime,
# kills the job and requeues it. Run as root (the daemons, MariaDB's files and /etc/slurm/slurm.conf).
# Everything the cluster writes lives in BIQA_SLURM_DIR (default /var/tmp/biqa-slurm); the only file outside
# it are the link /etc/slurm/slurm.conf, so that sbatch, squeue, ... find the cluster without SLURM_CONF, and
# munge's socket in /run/munge.
set -euo pipefail

STATE=${BIQA_SLURM_DIR:-/var/tmp/biqa-slurm}
DB_PORT=${BIQA_SLURM_DB_PORT:-3307}  # not 3306: a MariaDB of the machine may own that one
GRACE_SECONDS=10
CLIENT_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET=/run/munge/munge.socket.2
HOST=$(hostname -s)
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
# The daemons' environment: slurmdbd finds slurmdbd.conf next to the slurm.conf it is pointed at.
export SLURM_CONF=$STATE/slurm.conf

log() { echo "slurm_cluster: $*" >&2; }

running() {  # running NAME: the daemon whose pid file is $STATE/run/NAME.pid is alive
    # By its name too: after a reboot or a killed session the pid file may name another process.
    local pid_file=$STATE/run/$1.pid
    [[ -s $pid_file && $(cat "/proc/$(cat "$pid_file")/comm" 2>/dev/null) == "$1" ]]
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
    local seconds=$1 description=$2
    shift 2
    for _ in $(seq "$((seconds * 5))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$description did not come up in ${seconds}s; its log is in $STATE/log"
    return 1
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

write_configs() {
    mkdir -p "$STATE"/{run,log,spool/ctld,spool/d,munge,mysql}
    chmod 700 "$STATE/munge"
    local memory_mb cpus
    cpus=$(nproc)
    # What a job may ask for: the machine's memory less 1 GiB for the daemons.
    memory_mb=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
    cat >"$STATE/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: a one-node cluster on $HOST.
ClusterName=biqa
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=30
KillWait=$GRACE_SECONDS
# Partition pre-emption: a pending job of a higher PriorityTier requeues the low partition's running jobs.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=low Nodes=$HOST Default=YES MaxTime=INFINITE PriorityTier=1 PreemptMode=REQUEUE GraceTime=$GRACE_SECONDS State=UP
PartitionName=high Nodes=$HOST MaxTime=INFINITE PriorityTier=10 State=UP
EOF
    cat >"$STATE/slurmdbd.conf" <<EOF
# Written by scripts/slurm_cluster.sh: accounting (sacct) in the MariaDB under $STATE/mysql.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=biqa
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/slurmdbd.conf"
}

link_client_config() {
    if [[ -e $CLIENT_CONF && ! -L $CLIENT_CONF ]]; then
        log "$CLIENT_CONF is another cluster's configuration: not replaced; use SLURM_CONF=$STATE/slurm.conf"
        return
    fi
    mkdir -p "$(dirname "$CLIENT_CONF")"
    ln -sfn "$STATE/slurm.conf" "$CLIENT_CONF"
}

start_munge() {
    running munged && return
    [[ -s $STATE/munge/munge.key ]] || mungekey --create --keyfile="$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"
    # The socket is munge's default one: Slurm's clients (sacctmgr's connection to slurmdbd) look only there.
    # --force: munged refuses a key under a world-writable folder such as /var/tmp otherwise.
    mkdir -p "$(dirname "$MUNGE_SOCKET")"
    munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/seed"
    wait_for 10 munged munge --socket="$MUNGE_SOCKET" -n
}

mysql_client() { timeout 30 mariadb --socket="$STATE/mysql.sock" --user=root "$@"; }

start_mariadb() {
    if ! running mariadbd; then
        [[ -d $STATE/mysql/mysql ]] || mariadb-install-db --user=root --datadir="$STATE/mysql" \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
        setsid mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/mysql.sock" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" --log-error="$STATE/log/mariadb.log" \
            --innodb-buffer-pool-size=64M --skip-name-resolve >/dev/null 2>&1 &
        wait_for 60 MariaDB mysql_client -e "SELECT 1"
    fi
    mysql_client -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'biqa';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
    if ! running slurmdbd; then
        slurmdbd
        wait_for 60 slurmdbd timeout 10 sacctmgr --noheader list cluster
    fi
    # Accounting knows only registered clusters, accounts and users.
    sacctmgr --noheader list cluster format=cluster | grep -qw biqa || sacctmgr -i add cluster biqa >/dev/null
    running slurmctld || slurmctld
    wait_for 60 slurmctld timeout 10 scontrol ping
    running slurmd || slurmd
    wait_for 60 "slurmd ($HOST idle)" node_ready
}

node_ready() { timeout 10 sinfo --noheader --nodes="$HOST" --format=%t | grep -Eq '^(idle|mix|alloc)'; }

up() {
    [[ $(id -u) == 0 ]] || { log "run as root (sudo make slurm-up): it starts system daemons"; exit 1; }
    install_packages
    write_configs
    link_client_config
    start_munge
    start_mariadb
    start_slurm
    sinfo
}

stop() {  # stop NAME: end the daemon of $STATE/run/NAME.pid and wait for it
    running "$1" || return 0
    local pid
    pid=$(cat "$STATE/run/$1.pid")
    kill "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    log "$1 ($pid) did not stop in 30 s: killed"
    kill -KILL "$pid" 2>/dev/null || true
}

down() {
    # Jobs first, so that no job outlives its slurmd.
    if running slurmctld; then scancel --full --quiet --user="$(id -un)" 2>/dev/null || true; fi
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do stop "$daemon"; done
    [[ -L $CLIENT_CONF && $(readlink "$CLIENT_CONF") == "$STATE/slurm.conf" ]] && rm -f "$CLIENT_CONF"
    log "stopped; its state stays in $STATE (delete that folder for a fresh cluster)"
}

status() {
    for daemon in munged mariadbd slurmdbd slurmctld slurmd; do
        if running "$daemon"; then echo "$daemon running"; else echo "$daemon stopped"; fi
    done
    running slurmctld && sinfo
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (state in BIQA_SLURM_DIR, default /var/tmp/biqa-slurm)" >&2; exit 2 ;;
esac
