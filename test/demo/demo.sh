#!/usr/bin/env bash
# `make demo`: replicate a small application from the lab's `source` cluster to its `dr` cluster.
#
# Starts the lab (when it is not running), installs the CRDs and the dr-syncer resources into the `dr` cluster, runs
# the controller locally until the first sync has finished, and shows the DR copy. The lab stays up afterwards
# (`make lab-down` stops it); the controller is stopped (`make run-dr` runs it in the foreground).
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=test/lab/lab.sh
RUN=${LAB_RUN:-$PWD/.lab}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

alive() { local pid; pid=$(cat "$RUN/$1/apiserver.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }
if alive source && alive dr; then
  say "lab clusters source and dr already running"
else
  say "starting lab clusters source and dr"
  $LAB up source dr
fi
eval "$($LAB env)"
ks() { kubectl --kubeconfig "$KUBECONFIG_SOURCE" "$@"; }
kd() { kubectl --kubeconfig "$KUBECONFIG_DR" "$@"; }

say "installing the CRDs and the dr-syncer resources into the dr cluster"
kd apply --server-side -f charts/dr-syncer/crds/ >/dev/null
kd wait --for condition=established --timeout=60s crd --all >/dev/null
kd create namespace dr-syncer --dry-run=client -o yaml | kd apply -f - >/dev/null
for c in source dr; do
  var="KUBECONFIG_${c^^}"
  kd -n dr-syncer create secret generic "$c-kubeconfig" --from-file=kubeconfig="${!var}" --dry-run=client -o yaml \
    | kd apply -f - >/dev/null
done
kd apply -f test/demo/dr-syncer.yaml

say "creating the application in the source cluster (namespace shop)"
ks apply -f test/demo/shop.yaml

say "building and starting the controller"
cargo build -q -p dr-syncer-controller
log="$RUN/demo-controller.log"
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
"$target/debug/dr-syncer-controller" --kubeconfig "$KUBECONFIG_DR" --namespace dr-syncer \
  --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 >"$log" 2>&1 &
ctl=$!
trap 'kill "$ctl" 2>/dev/null; wait "$ctl" 2>/dev/null || true' EXIT
echo "controller PID $ctl, log $log"

say "waiting for the first sync (a new mapping syncs at once)"
deadline=$((SECONDS + 120))
until [ -n "$(kd -n dr-syncer get nsm shop -o jsonpath='{.status.lastSuccessfulSyncTime}' 2>/dev/null)" ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "no successful sync within 120 s; status and controller log:" >&2
    kd -n dr-syncer get nsm shop -o yaml >&2 || true
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 1
done

say "dr-syncer resources"
kd -n dr-syncer get dr-syncer
say "the DR copy (namespace shop-dr in the dr cluster): Deployments parked at 0 replicas"
kd -n shop-dr get deploy,svc,ingress,configmap,secret
echo
echo "web: replicas=$(kd -n shop-dr get deploy web -o jsonpath='{.spec.replicas}') (source: $(ks -n shop get deploy web -o jsonpath='{.spec.replicas}')), dr-syncer.io/original-replicas=$(kd -n shop-dr get deploy web -o jsonpath='{.metadata.annotations.dr-syncer\.io/original-replicas}')"
echo "DATABASE_HOST in DR: $(kd -n shop-dr get configmap shop-settings -o jsonpath='{.data.DATABASE_HOST}')"
say "sync status and the recovery-point metric"
kd -n dr-syncer get nsm shop -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
curl -s 127.0.0.1:18080/metrics | grep -E '^dr_syncer_(last_successful_sync_timestamp_seconds|syncs_total)' || true
say "demo done: the lab is still running (make lab-down stops it); make run-dr runs the controller in the foreground"
