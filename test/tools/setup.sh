#!/usr/bin/env bash
# Prepares a machine (Debian bookworm with a Rust toolchain) for dr-syncer's workflows; idempotent and quick when
# everything is in place. Used by `.ci/run` and `make demo`.
#
#  1. Debian packages: etcd and Go (to build the lab's Kubernetes binaries), kubectl, openssl, rsync and the
#     OpenSSH client (data-path tests), make; the lab nodes' runtime (containerd, runc, CNI plugins, iptables,
#     conntrack), debootstrap and a static C toolchain for the images; and promtool, extracted from Debian's
#     prometheus package (never installed as a service).
#  2. Python packages: the Helm SDK (helm-python-sdk) and PyYAML, for the chart tests and `make demo`.
#  3. Rust components rustfmt and clippy.
#  4. The lab's Kubernetes v1.20.2 binaries and pause image, and the images' Debian root filesystem, built once and
#     cached in ~/.cache/dr-syncer (keyed by version).
set -euo pipefail
cd "$(dirname "$0")/../.."
start=${start:-$SECONDS}
step() { printf '\n==> [%ss] %s\n' "$((SECONDS - start))" "$*"; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
export DR_SYNCER_CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}

step "Debian packages"
# kubectl: Debian's kubernetes-client matches the lab's v1.20 servers; any kubectl already on PATH is kept.
PKGS="etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync openssh-client jq curl openssl git"
PKGS="$PKGS containerd runc containernetworking-plugins iptables conntrack debootstrap gcc libc6-dev python3-pip libwrap0"
command -v kubectl >/dev/null || PKGS="$PKGS kubernetes-client"
# shellcheck disable=SC2086
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi
# The rsync pods' sender runs with --confine-root (rsync 3.5, from the security suite): upgrade an older rsync.
if ! rsync --help 2>/dev/null | grep -q -- --confine-root; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --only-upgrade rsync >/dev/null
fi
test/tools/ensure-tools.sh

step "Python packages (Helm SDK)"
python3 -c 'import helm_python, yaml' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check helm-python-sdk==0.2.2 PyYAML 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check --break-system-packages helm-python-sdk==0.2.2 PyYAML

step "Rust toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "Lab binaries (Kubernetes v1.20.2 from Debian's source package) and pause image"
test/lab/lab.sh build

step "The images' Debian root filesystem"
images/rootfs.sh >/dev/null
