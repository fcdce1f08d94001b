#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on this machine, for `make test-slurm` (tests/test_slurm.py).
#
#   eval "$(tests/slurm/start_cluster.sh)"    # prints `export SLURM_CONF=...`; the daemons keep running
#   ...sbatch / srun / w2s -m hydra/launcher=slurm ...
#   tests/slurm/stop_cluster.sh
#
# Needs root (the daemons run as root; packages install from Debian's slurm-wlm and munge when
# missing). Everything it writes lives in $W2S_SLURM_DIR (default /tmp/w2s-slurm): its own munge key,
# socket and slurm.conf, so it never reads or touches /etc/slurm or a munge key already on the
# machine. The node gets every CPU of the machine (`nproc`) and its real memory; no accounting
# database, so `sacct` answers nothing (submitit then reads each job's result file instead).
set -euo pipefail
DIR=${W2S_SLURM_DIR:-/tmp/w2s-slurm}
PORT=${W2S_SLURM_PORT:-6917}  # slurmctld; slurmd on PORT+1 (not the default 6817/6818 of a real cluster)
say() { echo "start_cluster: $*" >&2; }

if [ "$(id -u)" != 0 ]; then  # the daemons run as root; jobs run as whoever submits them
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -n -E "$0" "$@"; fi
  say "needs root or password-less sudo (it starts munged, slurmctld and slurmd)"; exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends slurm-wlm munge >&2; }
fi

"$(dirname "$0")/stop_cluster.sh" >/dev/null 2>&1 || true  # a cluster left over from a killed run
rm -rf "$DIR" && mkdir -p "$DIR/spool" "$DIR/state" && chmod 755 "$DIR"  # clients reach the munge socket here
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge.key" status=none && chmod 400 "$DIR/munge.key"
munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
  --log-file="$DIR/munged.log" --seed-file="$DIR/munge.seed"

cat > "$DIR/slurm.conf" <<CONF
ClusterName=w2s-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job may start again 21 s after its requeue (default 121 s); the hold is
# what keeps its new run clear of the old one's exit, so the tests wait for it instead of skipping it
AuthInfo=socket=$DIR/munge.socket,cred_expire=20
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=600
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$DIR/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$NODE"

for _ in $(seq 60); do  # the node registers within a few seconds
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  if [ "$state" = idle ]; then
    say "node $NODE idle ($CPUS CPUs, ${MEM_MB} MB) in $DIR"
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
say "node $NODE not idle after 60 s (state: ${state:-none}); logs in $DIR/slurmctld.log and $DIR/slurmd.log"
tail -5 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
