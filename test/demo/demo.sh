#!/usr/bin/env bash
# `make demo`: dr-syncer as users run it, on the local two-cluster lab.
#
# Starts the lab (clusters `source` and `dr`, one real node each) unless it runs, builds the images and loads them
# into both nodes, installs the Helm chart into `source` (two replicas, one leader), deploys a sample application
# in `source`/shop with data in its volume, creates the RemoteClusters (agents on in `source`), ClusterMapping and
# NamespaceMapping (PVC data copied), waits for the objects and the volume's data to be replicated to `dr`/shop-dr
# and prints a report. Idempotent: a second run upgrades the release and syncs again.
# `make demo-down` removes everything again and stops the lab.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=test/lab/lab.sh
RUN=${LAB_RUN:-$PWD/.lab}
NS=dr-syncer
say() { printf '\n\033[1m==> [%ss] %s\033[0m\n' "$SECONDS" "$*"; }

alive() { local pid; pid=$(cat "$RUN/$1/kubelet.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }
if alive source && alive dr; then
  say "lab clusters source and dr already running"
else
  say "starting lab clusters source and dr (one node each)"
  $LAB down source dr >/dev/null 2>&1 || true
  $LAB up source dr
fi
eval "$($LAB env)"
ks() { kubectl --kubeconfig "$KUBECONFIG_SOURCE" "$@"; }
kd() { kubectl --kubeconfig "$KUBECONFIG_DR" "$@"; }

say "building the images and loading them into both nodes"
images/build.sh
$LAB load target/images/*.tar
TAG=$(cat target/images/tag)

say "installing the Helm chart into the source cluster (namespace $NS)"
test/demo/helm.py install "$KUBECONFIG_SOURCE" "$NS" "$TAG"

say "deploying the sample application in the source cluster (namespace shop)"
ks apply -f test/demo/shop.yaml
ks -n shop rollout status deploy/web --timeout=120s

say "writing demo data into the uploads volume (its host-path directory on the lab node)"
pv_dir() { # pv_dir CLUSTER NAMESPACE PVC: the host directory of the lab volume bound to the PVC
  local k=ks pv
  [ "$1" = dr ] && k=kd
  pv=$($k -n "$2" get pvc "$3" -o jsonpath='{.spec.volumeName}')
  $k get pv "$pv" -o jsonpath='{.spec.hostPath.path}'
}
until [ "$(ks -n shop get pvc uploads -o jsonpath='{.status.phase}')" = Bound ]; do sleep 1; done
UPLOADS=$(pv_dir source shop uploads)
mkdir -p "$UPLOADS/images/2026" "$UPLOADS/invoices"
head -c $((16 << 20)) /dev/urandom >"$UPLOADS/images/2026/banner.bin"
for i in $(seq 1 50); do echo "invoice $i: $(date -u +%FT%TZ)" >"$UPLOADS/invoices/$i.txt"; done
ln -sf images/2026/banner.bin "$UPLOADS/latest-banner"
echo "  $(find "$UPLOADS" -type f | wc -l) files, $(du -sh "$UPLOADS" | cut -f1) in $UPLOADS"

say "creating the RemoteClusters (agents on in source), ClusterMapping and NamespaceMapping (with PVC data)"
# The kubeconfigs with the lab bridge address work from pods (and from this machine).
for c in source dr; do
  ks -n "$NS" create secret generic "$c-kubeconfig" --from-file=kubeconfig="$RUN/$c/kubeconfig-lab" \
    --dry-run=client -o yaml | ks apply -f - >/dev/null
done
ks apply -f test/demo/dr-syncer.yaml


say "waiting for the sync"
asked=$(date -u +%s)
ks -n "$NS" annotate --overwrite nsm shop dr-syncer.io/sync-now="demo-$asked" >/dev/null
deadline=$((SECONDS + 180))
synced() {
  local last pending
  pending=$(ks -n "$NS" get nsm shop -o jsonpath='{.metadata.annotations.dr-syncer\.io/sync-now}')
  last=$(ks -n "$NS" get nsm shop -o jsonpath='{.status.lastSuccessfulSyncTime}')
  [ -z "$pending" ] && [ -n "$last" ] && [ "$(date -u -d "$last" +%s)" -ge "$asked" ]
}
until synced; do
  if [ $SECONDS -ge $deadline ]; then
    echo "no successful sync within 180 s; the mapping and the controller logs:" >&2
    ks -n "$NS" get nsm shop -o yaml >&2 || true
    ks -n "$NS" logs -l app.kubernetes.io/component=controller --tail=30 >&2 || true
    exit 1
  fi
  sleep 1
done

say "waiting for the PVC data copy (agents installed in source, copy Job in dr)"
deadline=$((SECONDS + 300))
copied() {
  local phase start
  phase=$(ks -n "$NS" get nsm shop -o jsonpath='{.status.dataSync.pvcs[?(@.name=="uploads")].phase}')
  start=$(ks -n "$NS" get nsm shop -o jsonpath='{.status.dataSync.pvcs[?(@.name=="uploads")].lastStartTime}')
  [ "$phase" = Succeeded ] && [ -n "$start" ] && [ "$(date -u -d "$start" +%s)" -ge "$((asked - 1))" ] &&
    [ "$(ks -n "$NS" get remotecluster source -o jsonpath='{.status.pvcSync.phase}')" = Ready ]
}
until copied; do
  if [ $SECONDS -ge $deadline ]; then
    echo "the uploads volume was not copied within 300 s; status.dataSync, the agents and the controller logs:" >&2
    ks -n "$NS" get nsm shop -o jsonpath='{.status.dataSync}' >&2 || true
    ks -n "$NS" get remotecluster source -o jsonpath='{.status.pvcSync}' >&2 || true
    ks -n "$NS" logs -l app.kubernetes.io/component=controller --tail=30 >&2 || true
    exit 1
  fi
  sleep 2
done

API=$(cat "$RUN/source/api-port")
METRICS=/api/v1/namespaces/$NS/services/dr-syncer-metrics:metrics/proxy/metrics
say "report"
echo "controller: $(ks -n "$NS" get deploy dr-syncer -o jsonpath='{.status.readyReplicas}')/2 replicas ready; leader $(ks -n "$NS" get lease dr-syncer -o jsonpath='{.spec.holderIdentity}')"
echo
echo "replicated into dr/shop-dr:"
kd -n shop-dr get deploy,svc,ingress,configmap,secret,pvc | sed 's/^/  /'
echo
echo "web: $(kd -n shop-dr get deploy web -o jsonpath='{.spec.replicas}') replicas in DR (parked), $(ks -n shop get deploy web -o jsonpath='{.spec.replicas}') in source; dr-syncer.io/original-replicas=$(kd -n shop-dr get deploy web -o jsonpath='{.metadata.annotations.dr-syncer\.io/original-replicas}')"
echo
echo "mapping shop:"
ks -n "$NS" get nsm shop -o jsonpath='  phase={.status.phase} lastSuccessfulSyncTime={.status.lastSuccessfulSyncTime}{"\n"}{range .status.conditions[*]}  {.type}={.status} ({.reason}): {.message}{"\n"}{end}'
echo
echo "PVC data (uploads):"
ks -n "$NS" get nsm shop -o jsonpath='{range .status.dataSync.pvcs[*]}  {.namespace}/{.name} -> {.destinationNamespace}: {.phase}, {.bytesTransferred} bytes in {.filesTransferred} files, last success {.lastSuccessTime} ({.lastDuration}){"\n"}{end}'
ks -n "$NS" get nsm shop -o jsonpath='  SSH certificate authority generation {.status.dataSync.key.generation} {.status.dataSync.key.fingerprint}, next rotation {.status.dataSync.key.nextRotation}{"\n"}'
if diff -r --no-dereference "$UPLOADS" "$(pv_dir dr shop-dr uploads)" >/dev/null; then
  echo "  the DR volume equals the source volume (diff -r of both host directories)"
else
  echo "  the DR volume differs from the source volume" >&2
  exit 1
fi
echo "  agents: $(ks -n "$NS" get remotecluster source -o jsonpath='{.status.pvcSync.phase}'); ClusterMapping agent check: $(ks -n "$NS" get clustermapping source-to-dr -o jsonpath='{.status.connectionStatus.connectedAgents}/{.status.connectionStatus.totalSourceAgents}') agents answered from the DR cluster"
echo
echo "metrics: https://127.0.0.1:$API$METRICS"
echo "  (with the lab's admin credentials: kubectl --kubeconfig $KUBECONFIG_SOURCE get --raw $METRICS)"
ks get --raw "$METRICS" | grep -E '^dr_syncer_(leader|syncs_total|last_successful_sync_timestamp_seconds|data_last_successful_sync_timestamp_seconds)' | sed 's/^/  /' || true
say "demo ready in ${SECONDS} s; the lab keeps running (make demo-down removes the demo and stops it)"
