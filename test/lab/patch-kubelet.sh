#!/usr/bin/env bash
# patch-kubelet.sh TREE: small, idempotent source patches that let several v1.20.2 kubelets share one machine.
# Each patch only changes behaviour when its environment variable is set, so binaries built from the patched tree
# behave like upstream otherwise (apart from 3, which only removes a wait for a Docker daemon that never exists here).
#
#  1. KUBELET_POD_LOGS_DIR replaces the hard-coded /var/log/pods. Without it, each kubelet's container GC deletes the
#     other kubelets' pod log directories (it removes every directory whose pod it does not know), so `kubectl logs`
#     of a pod on the other node turns empty after about a minute.
#  2. KUBELET_CONTAINER_GC_PERIOD (Go duration) replaces the fixed 1 min container GC period; pod and namespace
#     deletion wait for it.
#  3. cadvisor's Docker probe: no 5 x 1 s retries at start-up looking for a Docker daemon.
#  4. KUBELET_STATUS_SYNC_PERIOD (Go duration) replaces the status manager's fixed 10 s batch sync; a deleted pod's
#     API object is only removed on that tick.
#
# Edits are written to a temporary file and renamed, so a hard-linked copy of a tree never changes its source.
set -euo pipefail
T=${1:?usage: patch-kubelet.sh KUBERNETES_SOURCE_TREE}
cd "$T"

# edit FILE OLD NEW [OLD NEW...]: replace each OLD (which must occur exactly once) with NEW, unless already done.
edit() {
  python3 - "$@" <<'PY'
import os, sys
path, pairs = sys.argv[1], sys.argv[2:]
text = open(path).read()
for old, new in zip(pairs[::2], pairs[1::2]):
    done = (new and new in text) or (not new and old not in text)
    if done:
        continue
    if text.count(old) != 1:
        sys.exit(f"patch-kubelet: expected exactly one match in {path} for:\n{old}")
    text = text.replace(old, new)
tmp = path + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.chmod(tmp, 0o644)
os.replace(tmp, path)
PY
}

edit pkg/kubelet/kuberuntime/kuberuntime_manager.go \
'	// The root directory for pod logs
	podLogsRootDirectory = "/var/log/pods"
' '' \
'var (
	// ErrVersionNotSupported' \
'// podLogsRootDirectory is the root directory for pod logs (dr-syncer lab patch: KUBELET_POD_LOGS_DIR overrides it).
var podLogsRootDirectory = func() string {
	if d := os.Getenv("KUBELET_POD_LOGS_DIR"); d != "" {
		return d
	}
	return "/var/log/pods"
}()

var (
	// ErrVersionNotSupported'

edit pkg/kubelet/kubelet.go \
'	}, ContainerGCPeriod, wait.NeverStop)' \
'	}, containerGCPeriod(), wait.NeverStop)' \
'// Run starts the kubelet reacting to config updates' \
'// containerGCPeriod is ContainerGCPeriod unless KUBELET_CONTAINER_GC_PERIOD is set (dr-syncer lab patch).
func containerGCPeriod() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("KUBELET_CONTAINER_GC_PERIOD")); err == nil && d > 0 {
		return d
	}
	return ContainerGCPeriod
}

// Run starts the kubelet reacting to config updates'

edit vendor/github.com/google/cadvisor/container/docker/factory.go \
'const rootDirRetries = 5' \
'const rootDirRetries = 0 // dr-syncer lab patch: was 5; there is no Docker daemon'

edit pkg/kubelet/status/status_manager.go \
'	"fmt"
	"sort"' \
'	"fmt"
	"os"
	"sort"' \
'	syncTicker := time.Tick(syncPeriod)' \
'	syncTicker := time.Tick(statusSyncPeriod())' \
'const syncPeriod = 10 * time.Second' \
'const syncPeriod = 10 * time.Second

// statusSyncPeriod is syncPeriod unless KUBELET_STATUS_SYNC_PERIOD is set (dr-syncer lab patch).
func statusSyncPeriod() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("KUBELET_STATUS_SYNC_PERIOD")); err == nil && d > 0 {
		return d
	}
	return syncPeriod
}'
