#!/usr/bin/env bash
# build-k8s.sh [COMPONENT...]: build Kubernetes v1.20.2 components offline from Debian bookworm's `kubernetes`
# source package with Debian's Go 1.19, into $LAB_BIN (default ~/.cache/dr-syncer/k8s-v1.20.2-rN/bin).
#
# Default components: the control plane (kube-apiserver, kube-controller-manager, kube-scheduler) and the node
# (kubelet, kube-proxy). Components already built are skipped, so a second run does nothing. Safe to run
# concurrently (flock on the cache directory). kubelet is built from a tree patched by patch-kubelet.sh.
#
# Recipe and the reasons for each fix: ../../docs/lab.md ("How the lab binaries are built").
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

COMPONENTS=("$@")
[ ${#COMPONENTS[@]} -gt 0 ] || COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

missing=()
for c in "${COMPONENTS[@]}"; do
  [ -x "$LAB_BIN/$c" ] || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  lab_log "k8s v$K8S_VERSION binaries present in $LAB_BIN (${COMPONENTS[*]})"
  exit 0
fi

mkdir -p "$LAB_BIN"
exec 8>"$LAB_BIN/.build.lock"
flock 8
# Another run may have built them while we waited for the lock.
missing=()
for c in "${COMPONENTS[@]}"; do
  [ -x "$LAB_BIN/$c" ] || missing+=("$c")
done
[ ${#missing[@]} -gt 0 ] || exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
PKGS="etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync"
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # The source packages come from the mirror this machine's apt already uses for bookworm (no host is named here).
  site=$(apt-get indextargets --format '$(SITE) $(RELEASE) $(TARGET_OF) $(IDENTIFIER)' 2>/dev/null |
    awk '$2 == "bookworm" && $3 == "deb" && $4 == "Packages" { print $1; exit }')
  [ -n "$site" ] || { echo "build-k8s.sh: this machine's apt has no bookworm source to add deb-src for" >&2; exit 1; }
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$site" \
    | $SUDO tee /etc/apt/sources.list.d/dr-syncer-lab-src.sources >/dev/null
  $SUDO apt-get update -qq
fi
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $PKGS >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dr-syncer-k8s-build.XXXXXX")
cleanup() { [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
start=$(date +%s)
lab_log "building ${missing[*]} from Debian's kubernetes source package in $WORK"
mkdir -p "$WORK/gopath/src/k8s.io"
cd "$WORK"
apt-get source --download-only -qq kubernetes >/dev/null 2>&1 || lab_die "apt-get source kubernetes failed (is a deb-src entry configured?)"
# "cannot verify inline signature" is harmless: apt checked the hashes against the signed Release file.
dpkg-source -x kubernetes_*.dsc gopath/src/k8s.io/kubernetes >/dev/null 2>&1
cd gopath/src/k8s.io/kubernetes
# Go >= 1.18 crashes in the vendored reflect2 v1.0.1 map iteration: use Debian's v1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
cp -a /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod
# v1.20 builds in GOPATH mode only.
export PATH=/usr/lib/go-1.19/bin:$PATH GOTOOLCHAIN=local GO111MODULE=off GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
  GOPATH=$WORK/gopath GOCACHE=$WORK/gocache
# pkg/generated/openapi is not shipped in the tarball.
make gen_openapi >"$WORK/gen_openapi.log" 2>&1 || { lab_tail_log "$WORK/gen_openapi.log"; lab_die "make gen_openapi failed"; }
# Several kubelets on one machine need the lab patches (they change nothing unless their variables are set).
"$LAB_ROOT/patch-kubelet.sh" "$PWD"
V=""
for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  V="$V -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean"
done
for c in "${missing[@]}"; do
  lab_log "go build $c"
  go build -ldflags "-s -w $V" -o "$LAB_BIN/$c.tmp" "./cmd/$c"
  mv "$LAB_BIN/$c.tmp" "$LAB_BIN/$c"
done
"$LAB_BIN/kube-apiserver" --version >&2 2>/dev/null || true
lab_log "built ${missing[*]} in $(( $(date +%s) - start )) s"
