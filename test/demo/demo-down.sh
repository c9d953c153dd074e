#!/usr/bin/env bash
# `make demo-down`: removes what `make demo` made (mappings first, so the running controller releases their
# finalizers; then the release, the sample application and its DR copy) and stops the lab clusters.
set -uo pipefail
cd "$(dirname "$0")/../.."
LAB=test/lab/lab.sh
NS=dr-syncer
eval "$($LAB env)"
if [ -n "${KUBECONFIG_SOURCE:-}" ]; then
  kubectl --kubeconfig "$KUBECONFIG_SOURCE" -n "$NS" delete namespacemappings --all --timeout=60s 2>/dev/null
  test/demo/helm.py uninstall "$KUBECONFIG_SOURCE" "$NS"
  kubectl --kubeconfig "$KUBECONFIG_SOURCE" delete namespace shop "$NS" --ignore-not-found --wait=false
fi
[ -z "${KUBECONFIG_DR:-}" ] || kubectl --kubeconfig "$KUBECONFIG_DR" delete namespace shop-dr --ignore-not-found --wait=false
$LAB down source dr
echo "demo removed"
