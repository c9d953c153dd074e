#!/usr/bin/env bash
# lab.sh: real Kubernetes v1.20.2 clusters on this machine for dr-syncer's tests and demo.
#
#   lab.sh build                 build (or find cached) the Kubernetes binaries and the lab's pause image
#   lab.sh up [NAME...]          start clusters fresh, in parallel (default: source dr), each with one node
#   lab.sh start NAME [--no-kcm] start one cluster keeping its data (after `stop`)
#   lab.sh load TAR...           import image archives into every running node (and into nodes started later)
#   lab.sh stop NAME...          stop clusters, keep their data
#   lab.sh down [--purge] [NAME...]  stop clusters and delete their data (default: every cluster);
#                                --purge also releases their port slots (for short-lived test clusters)
#   lab.sh env [NAME...]         print `export KUBECONFIG_<NAME>=...` for running clusters
#   lab.sh status                show every cluster's processes
#
# Options for up: --no-kcm (control plane without the controller manager).
# Environment: LAB_NODES=0 (control planes only: fast, no root needed), LAB_RUN (state directory, default
# <repo>/.lab), LAB_CACHE (binary cache, default ~/.cache/dr-syncer).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
CLUSTER="$LAB_ROOT/lib/cluster.sh"
DEFAULT_CLUSTERS=(source dr)

running() { lab_pid_alive "$LAB_RUN/$1/apiserver.pid"; }

cmd_up() {
  local names=() opts=() pids=() n i rc=0 t0=$SECONDS
  for a in "$@"; do
    case $a in --*) opts+=("$a") ;; *) names+=("$a") ;; esac
  done
  [ ${#names[@]} -gt 0 ] || names=("${DEFAULT_CLUSTERS[@]}")
  [ "${LAB_NODES:-1}" = 0 ] || opts+=(--node)
  cmd_build
  for n in "${names[@]}"; do
    "$CLUSTER" start "$n" --fresh "${opts[@]}" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { rc=1; lab_log "cluster ${names[$i]} failed to start"; }
  done
  if [ $rc -ne 0 ]; then
    for n in "${names[@]}"; do "$CLUSTER" stop "$n"; done
    exit 1
  fi
  lab_log "up: ${names[*]} in $((SECONDS - t0)) s"
}

cmd_down() {
  local names=() n purge=""
  for a in "$@"; do
    case $a in --purge) purge=1 ;; *) names+=("$a") ;; esac
  done
  [ ${#names[@]} -gt 0 ] || mapfile -t names < <(lab_cluster_names)
  for n in "${names[@]}"; do
    [ -d "$LAB_RUN/$n" ] || continue
    "$CLUSTER" stop "$n" --release
    if [ -n "$purge" ]; then
      rm -rf "${LAB_RUN:?}/$n"
    else
      # Keep the slot file so the cluster gets the same ports next time; drop data, logs and credentials.
      find "$LAB_RUN/$n" -mindepth 1 -maxdepth 1 ! -name slot -exec rm -rf {} +
    fi
    lab_log "cluster $n stopped and removed"
  done
}

cmd_env() {
  local names=("$@") n var
  [ ${#names[@]} -gt 0 ] || mapfile -t names < <(lab_cluster_names)
  for n in "${names[@]}"; do
    running "$n" || continue
    var=KUBECONFIG_$(echo "$n" | tr 'a-z-' 'A-Z_')
    echo "export $var=$LAB_RUN/$n/kubeconfig"
  done
}

cmd_build() {
  "$LAB_ROOT/build-k8s.sh"
  "$LAB_ROOT/pause-image.sh"
}

# cmd_load TAR...: keep the archives in $LAB_RUN/images (nodes import them at start) and import them into every
# running node now.
cmd_load() {
  local t n
  mkdir -p "$LAB_RUN/images"
  for t in "$@"; do
    [ -f "$t" ] || lab_die "no image archive $t"
    cp -f "$t" "$LAB_RUN/images/"
  done
  for n in $(lab_cluster_names); do
    [ -f "$LAB_RUN/$n/node-number" ] && lab_pid_alive "$LAB_RUN/$n/containerd.pid" || continue
    for t in "$@"; do
      ctr --address "$LAB_RUN/$n/node/containerd/containerd.sock" -n k8s.io images import "$t" >/dev/null ||
        lab_die "could not import $t into $n"
    done
    lab_log "loaded $# image(s) into $n"
  done
}

cmd_status() {
  local n
  for n in $(lab_cluster_names); do "$CLUSTER" status "$n"; done
}

sub=${1:-}
[ $# -eq 0 ] || shift
case $sub in
  build) cmd_build ;;
  up) cmd_up "$@" ;;
  start)
    n=${1:?cluster name}
    if [ -f "$LAB_RUN/$n/node-number" ]; then "$CLUSTER" start "$@" --node; else "$CLUSTER" start "$@"; fi
    ;;
  load) cmd_load "$@" ;;
  stop) for n in "$@"; do "$CLUSTER" stop "$n"; done ;;
  down) cmd_down "$@" ;;
  env) cmd_env "$@" ;;
  status) cmd_status ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
