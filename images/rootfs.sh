#!/usr/bin/env bash
# rootfs.sh: print the path of the minimal Debian bookworm root filesystem every dr-syncer image starts from,
# making it first if needed: debootstrap minbase + the data path's tools (rsync, the OpenSSH client) and CA
# certificates, then upgraded from the release's -updates and -security suites, so the images carry the current
# security releases (rsync's fixes on the data path above all).
#
# Mirrors and proxy come from this machine's own apt configuration (`apt-get indextargets`, `apt-config`); no mirror
# host is written here. DEBIAN_MIRROR overrides the release suite's mirror.
#
# Cache: $DR_SYNCER_CACHE/images/rootfs-bookworm-r$ROOTFS_REV-<hash of the package versions inside>, with
# `<...>.versions` (package version per line). A cached one is reused only while every package in it is at the
# version this machine's apt would install now (`images/check-packages.sh`); a new security release builds a new
# one. Documentation, man pages, locales and apt's lists are removed (~100 MB left).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS_REV=2
SUITE=bookworm
PACKAGES=rsync,openssh-client,ca-certificates
CACHE=${DR_SYNCER_CACHE:-$HOME/.cache/dr-syncer}/images
PREFIX=$CACHE/rootfs-$SUITE-r$ROOTFS_REV
fail() { echo "rootfs.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root"
command -v debootstrap >/dev/null || fail "debootstrap not installed (run test/tools/setup.sh)"
mkdir -p "$CACHE"
exec 8>"$CACHE/.rootfs.lock"
flock 8

# This machine's package lists, refreshed when older than an hour, are what "current" means.
lists=/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -1)" ]; then
  apt-get update -qq >/dev/null 2>&1 || echo "rootfs.sh: apt-get update failed; using the lists as they are" >&2
fi

# The newest cached root filesystem, if nothing in it has a newer version available.
if [ -L "$PREFIX.current" ]; then
  current=$(readlink -f "$PREFIX.current")
  if [ -f "$current.complete" ] && images/check-packages.sh "$current.versions" >&2; then
    echo "$current"
    exit 0
  fi
fi

# The mirror of each suite, as apt is configured here.
site_of() {
  apt-get indextargets --format '$(SITE) $(RELEASE) $(TARGET_OF) $(IDENTIFIER)' 2>/dev/null |
    awk -v suite="$1" '$2 == suite && $3 == "deb" && $4 == "Packages" { print $1; exit }'
}
MAIN=${DEBIAN_MIRROR:-$(site_of "$SUITE")}
UPDATES=$(site_of "$SUITE-updates")
SECURITY=$(site_of "$SUITE-security")
[ -n "$MAIN" ] || fail "this machine's apt has no $SUITE source (set DEBIAN_MIRROR)"
[ -n "$SECURITY" ] || fail "this machine's apt has no $SUITE-security source: the images would miss security fixes"

T=$PREFIX.tmp
cleanup() { umount "$T/proc" 2>/dev/null || true; }
trap cleanup EXIT
rm -rf "$T"
echo "rootfs.sh: debootstrap $SUITE minbase + $PACKAGES from $MAIN, upgraded from $SUITE-updates and $SUITE-security" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$T" "$MAIN" >"$CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
{
  echo "deb $MAIN $SUITE main"
  [ -z "$UPDATES" ] || echo "deb $UPDATES $SUITE-updates main"
  echo "deb $SECURITY $SUITE-security main"
} >"$T/etc/apt/sources.list"
# The machine's proxy settings, for the upgrade only.
apt-config dump | grep -i -E '^Acquire::[a-z]+::Proxy' >"$T/etc/apt/apt.conf.d/00dr-syncer-proxy" || true
cp /etc/resolv.conf "$T/etc/resolv.conf"
mount -t proc proc "$T/proc"
chroot "$T" apt-get update -qq >>"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
chroot "$T" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade \
  >>"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
chroot "$T" dpkg-query -W -f '${Package} ${Version}\n' | sort >"$T.versions"
umount "$T/proc"
rm -f "$T/etc/apt/apt.conf.d/00dr-syncer-proxy"
: >"$T/etc/resolv.conf"
rm -rf "$T"/var/cache/apt/archives/*.deb "$T"/var/cache/apt/*.bin "$T"/var/lib/apt/lists/* "$T"/usr/share/doc/* \
  "$T"/usr/share/man/* "$T"/usr/share/locale/* "$T"/usr/share/info/* "$T"/var/log/*.log "$T"/var/log/apt/* \
  "$T"/var/cache/debconf/*-old
# The image user of every dr-syncer container (matches the chart's runAsUser).
echo 'dr-syncer:x:65532:65532:dr-syncer:/nonexistent:/usr/sbin/nologin' >>"$T/etc/passwd"
echo 'dr-syncer:x:65532:' >>"$T/etc/group"

OUT=$PREFIX-$(sha256sum <"$T.versions" | cut -c1-12)
rm -rf "$OUT" "$OUT.complete"
mv "$T" "$OUT"
mv "$T.versions" "$OUT.versions"
touch "$OUT.complete"
ln -sfn "$(basename "$OUT")" "$PREFIX.current"
# Older root filesystems of this revision are not used again.
for old in "$PREFIX"-*; do
  case $old in "$OUT" | "$OUT".*) ;; *) rm -rf "$old" ;; esac
done
echo "rootfs.sh: $(grep -E '^(rsync|openssh-client) ' "$OUT.versions" | tr '\n' ' ')" >&2
echo "$OUT"
