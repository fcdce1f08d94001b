#!/usr/bin/env bash
# Stops what tests/slurm/start_cluster.sh started (its jobs, slurmd, slurmctld, munged); leaves the
# logs in $W2S_SLURM_DIR for a look after a failed run.
DIR=${W2S_SLURM_DIR:-/tmp/w2s-slurm}
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -n -E "$0" "$@"; fi
if [ -f "$DIR/slurm.conf" ]; then SLURM_CONF=$DIR/slurm.conf scancel --user=root >/dev/null 2>&1 || true; fi
for daemon in slurmd slurmctld munged; do
  pid_file=$DIR/$daemon.pid
  [ -f "$pid_file" ] || continue
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pid_file"
done
