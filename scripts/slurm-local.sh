#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, for the tests and for trying the Slurm
# executor without a cluster. Everything lives under one folder (default /tmp/harness-slurm, env
# HARNESS_SLURM_DIR): its own slurm.conf (clients find it through SLURM_CONF), state, spool and log
# folders, and its own munge daemon, key and socket. It never touches a machine's real Slurm, and
# refuses to start where another slurmctld already runs.
#   scripts/slurm-local.sh start    install Debian's slurm packages if missing, start the daemons
#   scripts/slurm-local.sh status   exit 0 when the private cluster answers
#   scripts/slurm-local.sh stop     stop the daemons it started (the folder stays, for its logs)
#   scripts/slurm-local.sh env      print `export SLURM_CONF=...` (eval "$(scripts/slurm-local.sh env)")
set -euo pipefail

DIR=${HARNESS_SLURM_DIR:-/tmp/harness-slurm}
CONF=$DIR/slurm.conf
CTLD_PORT=${HARNESS_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 2; }

alive() {  # alive PIDFILE: the daemon named there runs (not a zombie left by a killed session,
  # not another program that reused the pid)
  local pid state
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] || return 1
  state=$(ps -o stat=,comm= -p "$pid" 2>/dev/null) || return 1
  case "$state" in Z*) return 1 ;; *munged*|*slurmctld*|*slurmd*) return 0 ;; esac
  return 1
}

live_slurmctld() {  # a slurmctld that is not a zombie runs on this machine
  ps -C slurmctld -o stat= 2>/dev/null | grep -qv '^Z'
}

install_packages() {
  local missing=()
  for pkg in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "Slurm is not installed and apt-get is not available: install ${missing[*]}"
  echo "slurm-local: installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # the packages' own services (started by systemd where there is one) are not ours: leave them be,
  # but a machine without systemd has none running, which is what `start` checks below
}

write_conf() {
  local node cpus mem user
  node=$(hostname -s)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # the cores, whatever threads the caller asks torch for
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  user=$(id -un)
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
  cat > "$CONF.tmp" <<EOF
# Written by scripts/slurm-local.sh: a private one-node cluster under $DIR
ClusterName=harness-local
SlurmctldHost=$node
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=60
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=2
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  alive "$DIR/munge/munged.pid" && return 0
  command -v munged >/dev/null || die "munged not found (package munge)"
  chmod 700 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 600 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start (see $DIR/log/munged.log)"
}

answers() { timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; }

node_ready() {
  timeout 10 sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

start() {
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && answers; then
    echo "slurm-local: already running (SLURM_CONF=$CONF)"
    return 0
  fi
  if live_slurmctld && ! alive "$DIR/slurmctld.pid"; then
    die "another slurmctld already runs on this machine; not starting a second one"
  fi
  install_packages
  command -v slurmctld >/dev/null || die "slurmctld not found (package slurmctld)"
  write_conf
  start_munge
  alive "$DIR/slurmctld.pid" || slurmctld -c -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
  alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || die "slurmd did not start (see $DIR/log/slurmd.log)"
  for _ in $(seq 60); do
    if answers && node_ready; then
      echo "slurm-local: running (SLURM_CONF=$CONF)"
      return 0
    fi
    sleep 0.5
  done
  die "the cluster did not come up within 30 s (see $DIR/log/)"
}

stop() {
  local f
  for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    if alive "$f"; then
      kill "$(cat "$f")"
      for _ in $(seq 50); do alive "$f" || break; sleep 0.2; done
    fi
  done
  echo "slurm-local: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if alive "$DIR/slurmctld.pid" && answers; then
      echo "slurm-local: running (SLURM_CONF=$CONF)"; sinfo
    else
      echo "slurm-local: not running"; exit 1
    fi ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: scripts/slurm-local.sh start|stop|status|env" >&2; exit 2 ;;
esac
