#!/usr/bin/env bash
# lab.sh: real Kubernetes v1.20.2 control planes on 127.0.0.1 for dr-syncer's tests and demo.
#
#   lab.sh build                 build (or find cached) kube-apiserver and kube-controller-manager
#   lab.sh up [NAME...]          start clusters fresh, in parallel (default: source dr)
#   lab.sh start NAME [--no-kcm] start one cluster keeping its data (after `stop`)
#   lab.sh stop NAME...          stop clusters, keep their data
#   lab.sh down [--purge] [NAME...]  stop clusters and delete their data (default: every cluster);
#                                --purge also releases their port slots (for short-lived test clusters)
#   lab.sh env [NAME...]         print `export KUBECONFIG_<NAME>=...` for running clusters
#   lab.sh status                show every cluster's processes
#
# Options for up: --no-kcm (control plane without the controller manager).
# Environment: LAB_RUN (state directory, default <repo>/.lab), LAB_CACHE (binary cache, default ~/.cache/dr-syncer).
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
  "$LAB_ROOT/build-k8s.sh"
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
    "$CLUSTER" stop "$n"
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

cmd_status() {
  local n
  for n in $(lab_cluster_names); do "$CLUSTER" status "$n"; done
}

sub=${1:-}
[ $# -eq 0 ] || shift
case $sub in
  build) "$LAB_ROOT/build-k8s.sh" "$@" ;;
  up) cmd_up "$@" ;;
  start) "$CLUSTER" start "$@" ;;
  stop) for n in "$@"; do "$CLUSTER" stop "$n"; done ;;
  down) cmd_down "$@" ;;
  env) cmd_env "$@" ;;
  status) cmd_status ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
