#!/usr/bin/env bash
# pause-image.sh: the lab's pod sandbox image (localhost/dr-syncer-lab/pause:3.2), a static C program that sleeps
# until SIGINT/SIGTERM and reaps orphaned children, packed by images/mkimage.sh into $LAB_CACHE/images/pause.tar.
# No image is ever pulled in the lab, so containerd's sandbox_image must be this local one.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
OUT=$LAB_CACHE/images
[ -f "$OUT/pause.tar" ] && exit 0
command -v gcc >/dev/null || lab_die "gcc not installed; run test/tools/setup.sh"
mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/lab-pause.XXXXXX")
trap 'rm -rf "$W"' EXIT
cat >"$W/pause.c" <<'EOC'
/* Pod sandbox process for the dr-syncer lab: holds the pod's namespaces until it is told to stop. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, 0);
  sigaction(SIGTERM, &sa, 0);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, 0);
  for (;;) pause();
}
EOC
mkdir -p "$W/rootfs"
gcc -Os -static -s -o "$W/rootfs/pause" "$W/pause.c"
"$REPO_ROOT/images/mkimage.sh" "$W/rootfs" localhost/dr-syncer-lab/pause:3.2 "$OUT/pause.tar" '["/pause"]'
lab_log "built the lab's pause image ($OUT/pause.tar)"
