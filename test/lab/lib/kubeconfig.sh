#!/usr/bin/env bash
# kubeconfig.sh OUT NAME SERVER PKI_DIR [CERT]: write a kubeconfig with the cluster's CA and a client certificate
# (default: admin, in system:masters) embedded, so it works from any directory and can be copied into a Secret as is.
set -euo pipefail
OUT=${1:?out} NAME=${2:?name} SERVER=${3:?server} PKI=${4:?pki} CERT=${5:-admin}
b64() { base64 -w0 <"$1"; }
umask 077
cat >"$OUT.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: $SERVER
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $NAME-$CERT
  user:
    client-certificate-data: $(b64 "$PKI/$CERT.crt")
    client-key-data: $(b64 "$PKI/$CERT.key")
contexts:
- name: $NAME
  context:
    cluster: $NAME
    user: $NAME-$CERT
current-context: $NAME
EOF
mv "$OUT.tmp" "$OUT"
