#!/usr/bin/env bash
# rootfs.sh: print the path of the minimal Debian bookworm root filesystem every dr-syncer image starts from,
# making it first if needed (debootstrap minbase + the data path's tools: rsync, the OpenSSH client; plus CA
# certificates). Cached in $DR_SYNCER_CACHE/images/rootfs-bookworm-r$ROOTFS_REV; bump the revision when the package
# list changes. Documentation, man pages, locales and apt's lists are removed (~100 MB left).
set -euo pipefail
ROOTFS_REV=1
PACKAGES=rsync,openssh-client,ca-certificates
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}/images
OUT=$CACHE/rootfs-bookworm-r$ROOTFS_REV
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$OUT/usr/bin/rsync" ] && [ -f "$OUT.complete" ]; then
  echo "$OUT"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap not installed (run test/tools/setup.sh)" >&2; exit 1; }
mkdir -p "$CACHE"
exec 8>"$CACHE/.rootfs.lock"
flock 8
if [ ! -f "$OUT.complete" ]; then
  rm -rf "$OUT.tmp"
  echo "rootfs.sh: debootstrap bookworm minbase + $PACKAGES from $MIRROR" >&2
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$OUT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  R=$OUT.tmp
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* "$R"/usr/share/man/* \
    "$R"/usr/share/locale/* "$R"/usr/share/info/* "$R"/var/log/*.log "$R"/var/cache/debconf/*-old
  # The image user of every dr-syncer container (matches the chart's runAsUser).
  echo 'dr-syncer:x:65532:65532:dr-syncer:/nonexistent:/usr/sbin/nologin' >>"$R/etc/passwd"
  echo 'dr-syncer:x:65532:' >>"$R/etc/group"
  rm -rf "$OUT"
  mv "$OUT.tmp" "$OUT"
  touch "$OUT.complete"
fi
echo "$OUT"
