# shellcheck shell=bash
# Shared settings for the lab scripts. Sourced, never executed.
#
# Layout
#   $LAB_CACHE/k8s-v$K8S_VERSION-r$LAB_RECIPE_REV/bin   built binaries (kept across runs, keyed by version)
#   $LAB_RUN/<cluster>/                              one directory per running cluster (pids, logs, pki, kubeconfig)
#
# Everything listens on 127.0.0.1 only. Processes are tracked by PID files and only those are ever signalled.

K8S_VERSION=1.20.2
# Bump when the build recipe changes in a way that changes the binaries.
LAB_RECIPE_REV=1
LAB_CACHE=${LAB_CACHE:-${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}}
LAB_BIN=${LAB_BIN:-$LAB_CACHE/k8s-v$K8S_VERSION-r$LAB_RECIPE_REV/bin}
LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$LAB_ROOT/../.." && pwd)
LAB_RUN=${LAB_RUN:-$REPO_ROOT/.lab}
# The token every lab apiserver accepts as system:masters (used only for readiness polling).
LAB_ADMIN_TOKEN=lab-admin-token
# First port of the block used by slot 0; each slot gets LAB_PORT_STRIDE consecutive ports.
LAB_PORT_BASE=${LAB_PORT_BASE:-24100}
LAB_PORT_STRIDE=10

lab_log() { printf '[lab] %s\n' "$*" >&2; }
lab_die() { printf '[lab] error: %s\n' "$*" >&2; exit 1; }

# lab_tail_log FILE: print the end of a component log, for failures.
lab_tail_log() {
  local f=$1
  if [ -f "$f" ]; then
    printf '[lab] ---- last 30 lines of %s ----\n' "$f" >&2
    tail -n 30 "$f" >&2
    printf '[lab] ---- end of %s ----\n' "$f" >&2
  fi
}

# lab_pid_alive PIDFILE: true when the file names a live process.
lab_pid_alive() {
  local pf=$1 pid
  [ -f "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# lab_port_free PORT: true when nothing listens on 127.0.0.1:PORT.
lab_port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# lab_cluster_names: names of clusters that have a run directory.
lab_cluster_names() {
  local d
  [ -d "$LAB_RUN" ] || return 0
  for d in "$LAB_RUN"/*/; do
    [ -f "$d/slot" ] && basename "$d"
  done
  return 0
}
