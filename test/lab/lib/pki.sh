#!/usr/bin/env bash
# pki.sh DIR [EXTRA_SAN...]: a cluster's CA, apiserver serving certificate, admin client certificate (system:masters),
# service-account signing key pair and static token file; with NODE_NAME set, also the node's kubelet client
# certificate (system:node:NAME, for the Node authorizer) and the apiserver's client certificate for kubelets.
# Idempotent: an existing PKI is kept and only missing certificates are made.
# Certificates are proper X.509 v3 (CA:TRUE + keyCertSign on the CA, SAN IP:127.0.0.1 + serverAuth on the server
# certificate), which rustls requires.
set -euo pipefail
. "$(dirname "$0")/common.sh"

D=${1:?usage: pki.sh DIR [EXTRA_SAN...]}
shift
mkdir -p "$D"
cd "$D"
exec 9>.lock
flock 9
sans="IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
sans="$sans,DNS:kubernetes.default.svc.cluster.local"
for s in "$@"; do sans="$sans,$s"; done

sign() { # sign NAME SUBJECT EXTFILE_LINES...
  local name=$1 subj=$2
  shift 2
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 \
    -extfile <(printf '%s\n' "$@") 2>/dev/null
  rm -f "$name.csr"
  chmod 600 "$name.key"
}
client() { # client NAME SUBJECT
  sign "$1" "$2" "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE"
}

if [ -n "${NODE_NAME:-}" ] && [ -f tokens.csv ]; then
  [ -f "node-$NODE_NAME.crt" ] || client "node-$NODE_NAME" "/O=system:nodes/CN=system:node:$NODE_NAME"
  [ -f kubelet-client.crt ] || client kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  exit 0
fi
[ -f tokens.csv ] && exit 0

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=dr-syncer-lab-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null

sign apiserver "/CN=kube-apiserver" "subjectAltName=$sans" "extendedKeyUsage=serverAuth" \
  "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE"
client admin "/O=system:masters/CN=lab-admin"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
echo "$LAB_ADMIN_TOKEN,lab-admin,lab-admin-uid,system:masters" >tokens.csv.tmp
chmod 600 ./*.key tokens.csv.tmp
mv tokens.csv.tmp tokens.csv
