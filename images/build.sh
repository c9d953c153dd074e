#!/usr/bin/env bash
# build.sh [OUT_DIR]: the dr-syncer container images, from the release binaries, without a registry or a daemon.
#
#   localhost/dr-syncer/controller:<tag>   the operator (dr-syncer-controller), user 65532
#   localhost/dr-syncer/agent:<tag>        dr-syncer-agent (bastion, rsync pod server) with rsync and the OpenSSH client
#
# Every image is the minimal Debian root filesystem of rootfs.sh plus its binaries, packed by mkimage.sh as an image
# archive (OUT_DIR/<name>.tar, default target/images). The tag is the workspace version plus the first 10 hex digits
# of a hash over the images' binaries, so a changed binary always gets a new tag (never `latest`); OUT_DIR/tag holds
# it. The images are labelled with the rsync and OpenSSH client versions they carry (io.dr-syncer.rsync-version,
# io.dr-syncer.openssh-client-version). Environment: CARGO_TARGET_DIR, IMAGE_PREFIX (default localhost/dr-syncer),
# IMAGE_TAG (overrides the tag).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-target/images}")
TARGET=${CARGO_TARGET_DIR:-target}
PREFIX=${IMAGE_PREFIX:-localhost/dr-syncer}
mkdir -p "$OUT"
cargo build --release -q -p dr-syncer-controller -p dr-syncer-agent
ROOTFS=$(images/rootfs.sh)
BIN=$TARGET/release
VERSION=$(cargo metadata --no-deps --format-version 1 | python3 -c \
  'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="dr-syncer-controller"))')
HASH=$(cat "$BIN/dr-syncer-controller" "$BIN/dr-syncer-agent" "$ROOTFS.versions" images/*.sh | sha256sum | cut -c1-10)
version_of() { awk -v p="$1" '$1 == p { print $2 }' "$ROOTFS.versions"; }
LABELS=$(printf '{"io.dr-syncer.rsync-version":"%s","io.dr-syncer.openssh-client-version":"%s"}' \
  "$(version_of rsync)" "$(version_of openssh-client)")
TAG=${IMAGE_TAG:-$VERSION-$HASH}

W=$(mktemp -d "${TMPDIR:-/tmp}/dr-syncer-images.XXXXXX")
trap 'rm -rf "$W"' EXIT
# image NAME ENTRYPOINT_JSON USER [BINARY...]: copy the shared root filesystem, add the binaries, pack.
image() {
  local name=$1 ep=$2 user=$3 b
  shift 3
  cp -a "$ROOTFS" "$W/$name"
  for b in "$@"; do install -D -m 0755 "$BIN/$b" "$W/$name/usr/local/bin/$b"; done
  images/mkimage.sh "$W/$name" "$PREFIX/$name:$TAG" "$OUT/$name.tar" "$ep" "$user" "$LABELS"
  rm -rf "${W:?}/$name"
  printf '%-48s %s (%s MB)\n' "$PREFIX/$name:$TAG" "$OUT/$name.tar" "$(($(stat -c %s "$OUT/$name.tar") / 1048576))"
}
image controller '["/usr/local/bin/dr-syncer-controller"]' 65532:65532 dr-syncer-controller
image agent '["/usr/local/bin/dr-syncer-agent"]' 65532:65532 dr-syncer-agent
echo "$TAG" >"$OUT/tag"
