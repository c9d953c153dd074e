#!/usr/bin/env bash
# mkimage.sh ROOTFS REF OUT.tar ENTRYPOINT_JSON [USER] [LABELS_JSON]: pack a directory as a single-layer image archive in the
# `docker save` format, which `ctr images import` (and `docker load`) accept. No registry and no daemon involved.
# The layer is reproducible for a given directory: fixed mtimes are not forced, but owners are numeric and the
# config carries a fixed creation time, so the image ID only changes when the files do.
set -euo pipefail
ROOT=${1:?rootfs dir} REF=${2:?image ref} OUT=${3:?output tar} EP=${4:?entrypoint json} USER_ID=${5:-} LABELS=${6:-"{}"}
W=$(mktemp -d "${TMPDIR:-/tmp}/mkimage.XXXXXX")
trap 'rm -rf "$W"' EXIT
tar --numeric-owner --xattrs --sort=name -C "$ROOT" -cf "$W/layer.tar" .
DIFF=$(sha256sum "$W/layer.tar" | cut -d' ' -f1)
python3 - "$W" "$REF" "$DIFF" "$EP" "$USER_ID" "$LABELS" <<'PY'
import hashlib, json, os, sys
work, ref, diff, entrypoint, user, labels = sys.argv[1:]
config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2026-01-01T00:00:00Z",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Entrypoint": json.loads(entrypoint),
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.source": "dr-syncer", "org.opencontainers.image.ref.name": ref},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]},
    "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "dr-syncer images/mkimage.sh"}],
}
if user:
    config["config"]["User"] = user
config["config"]["Labels"].update(json.loads(labels))
blob = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
digest = hashlib.sha256(blob).hexdigest()
with open(os.path.join(work, digest + ".json"), "wb") as f:
    f.write(blob)
with open(os.path.join(work, "manifest.json"), "w") as f:
    json.dump([{"Config": digest + ".json", "RepoTags": [ref], "Layers": ["layer.tar"]}], f)
PY
tar -C "$W" -cf "$OUT.tmp" manifest.json "$(cd "$W" && ls ./*.json | grep -v manifest | sed 's|^\./||')" layer.tar
mv "$OUT.tmp" "$OUT"
