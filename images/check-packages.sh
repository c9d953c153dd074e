#!/usr/bin/env bash
# check-packages.sh VERSIONS|IMAGE.tar: fails (exit 1) when a Debian package in a root filesystem is older than what
# this machine's apt would install now, i.e. when the image misses an update or a security release. The argument is
# either a `<package> <version>` list (rootfs.sh writes one beside each root filesystem) or an image archive made by
# build.sh, whose dpkg database is read from its layer. Prints the rsync and OpenSSH client versions it found, and
# every pending upgrade. Uses this machine's package lists as they are (rootfs.sh refreshes them).
set -euo pipefail
SOURCE=${1:?usage: check-packages.sh VERSIONS|IMAGE.tar}
W=$(mktemp -d "${TMPDIR:-/tmp}/check-packages.XXXXXX")
trap 'rm -rf "$W"' EXIT
case $SOURCE in
  *.tar)
    tar -xOf "$SOURCE" layer.tar | tar -xO ./var/lib/dpkg/status >"$W/status"
    python3 - "$W/status" >"$W/versions" <<'PY'
import sys
package = None
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("Package: "):
        package = line.split()[1]
    elif line.startswith("Version: ") and package:
        print(package, line.split()[1])
        package = None
PY
    ;;
  *) cp "$SOURCE" "$W/versions" ;;
esac
[ -s "$W/versions" ] || { echo "check-packages.sh: no packages found in $SOURCE" >&2; exit 1; }
# shellcheck disable=SC2046
apt-cache policy $(cut -d' ' -f1 "$W/versions") >"$W/policy" 2>/dev/null
python3 - "$W/versions" "$W/policy" "$SOURCE" <<'PY'
import subprocess, sys
versions = dict(line.split(maxsplit=1) for line in open(sys.argv[1]) if line.strip())
versions = {k: v.strip() for k, v in versions.items()}
candidates, package = {}, None
for line in open(sys.argv[2]):
    if not line.startswith(" "):
        package = line.strip().rstrip(":")
    elif line.strip().startswith("Candidate:") and package:
        candidates[package] = line.split(":", 1)[1].strip()
pending = []
for name, have in sorted(versions.items()):
    want = candidates.get(name)
    if not want or want == "(none)" or want == have:
        continue
    # Only a newer candidate is a pending upgrade.
    newer = subprocess.run(["dpkg", "--compare-versions", want, "gt", have]).returncode == 0
    if newer:
        pending.append(f"{name} {have} -> {want}")
found = ", ".join(f"{n} {versions[n]}" for n in ("rsync", "openssh-client") if n in versions)
print(f"check-packages.sh: {sys.argv[3]}: {len(versions)} packages; {found}")
for line in pending:
    print(f"  pending upgrade: {line}")
if pending:
    print(f"check-packages.sh: {len(pending)} packages are older than this machine's apt would install", file=sys.stderr)
    sys.exit(1)
PY
