#!/usr/bin/env bash
# ensure-tools.sh: test tools that are not plain apt installs, put in $TOOLS_BIN (default ~/.cache/dr-syncer/tools/bin).
#
#   promtool  extracted from Debian's `prometheus` package without installing it, so no Prometheus service is ever
#             set up or started on the machine (its init script would listen on 0.0.0.0:9090).
#   sshd      extracted from Debian's `openssh-server` package without installing it (its postinst would start a
#             service on 0.0.0.0:22); `make bench` runs it on loopback as the OpenSSH jump host it compares with.
#   kubectl   any kubectl on PATH is used; otherwise Debian's kubernetes-client (v1.20, matching the lab) is installed.
#   rustfmt, clippy  added with rustup when missing.
#   cargo-deny  built once from the default registry (cargo install --locked, version below) into $TOOLS/cargo-deny-<version>;
#             `make deny` checks the dependency graph against deny.toml.
#
# Idempotent: a second run does nothing. Prints the directory to add to PATH.
set -euo pipefail
TOOLS=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}/tools
TOOLS_BIN=$TOOLS/bin
mkdir -p "$TOOLS_BIN"

if [ ! -x "$TOOLS_BIN/promtool" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
    echo "ensure-tools: cannot download Debian's prometheus package (needs the Debian mirror)" >&2
    exit 1
  }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  install -m 0755 "$work/root/usr/bin/promtool" "$TOOLS_BIN/promtool.tmp"
  mv "$TOOLS_BIN/promtool.tmp" "$TOOLS_BIN/promtool"
  rm -rf "$work"
  echo "ensure-tools: promtool $("$TOOLS_BIN/promtool" --version 2>&1 | head -1 | awk '{print $3}') in $TOOLS_BIN" >&2
fi
if [ ! -x "$TOOLS_BIN/sshd" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download openssh-server >/dev/null 2>&1) || {
    echo "ensure-tools: cannot download Debian's openssh-server package (needs the Debian mirror)" >&2
    exit 1
  }
  dpkg-deb -x "$work"/openssh-server_*.deb "$work/root"
  install -m 0755 "$work/root/usr/sbin/sshd" "$TOOLS_BIN/sshd.tmp"
  mv "$TOOLS_BIN/sshd.tmp" "$TOOLS_BIN/sshd"
  rm -rf "$work"
  echo "ensure-tools: sshd in $TOOLS_BIN (not installed as a service)" >&2
fi
# sshd started as root needs its privilege-separation user (the package's postinst would add it the same way).
if [ "$(id -u)" -eq 0 ] && ! getent passwd sshd >/dev/null; then
  useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd
fi
if ! command -v kubectl >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "ensure-tools: installing kubectl (Debian kubernetes-client)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null ||
    { echo "ensure-tools: cannot install kubernetes-client" >&2; exit 1; }
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy >&2
fi
DENY_VERSION=0.20.2
if [ ! -x "$TOOLS/cargo-deny-$DENY_VERSION/bin/cargo-deny" ]; then
  echo "ensure-tools: building cargo-deny $DENY_VERSION (once)" >&2
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION" --root "$TOOLS/cargo-deny-$DENY_VERSION" \
    --target-dir "$TOOLS/cargo-deny-build" >&2
  rm -rf "$TOOLS/cargo-deny-build"
fi
ln -sfn "../cargo-deny-$DENY_VERSION/bin/cargo-deny" "$TOOLS_BIN/cargo-deny"
echo "$TOOLS_BIN"
