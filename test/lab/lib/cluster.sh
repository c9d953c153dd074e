#!/usr/bin/env bash
# cluster.sh start NAME [--fresh] [--no-kcm] [--node] | stop NAME [--release] | status NAME
#
# One lab cluster: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, with its own ports (from a slot
# allocated under a lock), data directory, PKI and kubeconfig in $LAB_RUN/NAME. With --node it also gets
# kube-scheduler and one node (containerd, kubelet, kube-proxy in its own network namespace; see node.sh), and the
# apiserver is advertised on the lab bridge (10.250.0.1) for pods; it still listens on 127.0.0.1 only.
# Every process is started in the background with its PID recorded in NAME/<component>.pid; stop signals only those
# PIDs, after checking each still runs the binary it was started as. `start` refuses when any component is alive.
# `stop --release` also gives back the node number and deletes the cluster's host-path volumes.
#
# Components are started in the order of COMPONENTS and stopped in reverse.
set -euo pipefail
. "$(dirname "$0")/common.sh"

CMD=${1:?usage: cluster.sh start|stop|status NAME}
NAME=${2:?cluster name}
shift 2
[[ $NAME =~ ^[a-z][a-z0-9-]{0,30}$ ]] || lab_die "cluster name '$NAME' must be lowercase letters, digits and dashes"
D=$LAB_RUN/$NAME
PKI=$D/pki
ALL_COMPONENTS=(etcd apiserver kcm scheduler containerd kubelet proxy)
COMPONENTS=(etcd apiserver kcm)
. "$(dirname "$0")/node.sh"
with_node() { [ -f "$D/node-number" ]; }

# ---- slots and ports ------------------------------------------------------------------------------------------------
slot_ports() { # slot_ports SLOT -> sets ETCD_PORT PEER_PORT API_PORT
  local base=$((LAB_PORT_BASE + $1 * LAB_PORT_STRIDE))
  ETCD_PORT=$base PEER_PORT=$((base + 1)) API_PORT=$((base + 2))
}

allocate_slot() {
  mkdir -p "$LAB_RUN"
  exec 7>"$LAB_RUN/.slots.lock"
  flock 7
  if [ -f "$D/slot" ]; then
    SLOT=$(cat "$D/slot")
    slot_ports "$SLOT"
    # Another lab (another LAB_RUN) may have taken these ports while this cluster was down.
    if ! { lab_port_free "$ETCD_PORT" && lab_port_free "$PEER_PORT" && lab_port_free "$API_PORT"; }; then
      lab_log "ports of slot $SLOT are in use; choosing another slot for $NAME"
      rm -f "$D/slot"
      SLOT=""
    fi
  fi
  if [ -z "${SLOT:-}" ]; then
    local used=" " s n
    for n in $(lab_cluster_names); do used="$used$(cat "$LAB_RUN/$n/slot") "; done
    for s in $(seq 0 63); do
      [[ $used == *" $s "* ]] && continue
      slot_ports "$s"
      if lab_port_free "$ETCD_PORT" && lab_port_free "$PEER_PORT" && lab_port_free "$API_PORT"; then
        SLOT=$s
        break
      fi
    done
    [ -n "${SLOT:-}" ] || lab_die "no free port slot for cluster $NAME"
    mkdir -p "$D"
    echo "$SLOT" >"$D/slot"
  fi
  flock -u 7
  slot_ports "$SLOT"
}

# ---- process bookkeeping --------------------------------------------------------------------------------------------
# pid_is_ours PIDFILE BINARY: the PID is alive and still runs BINARY (guards against PID reuse).
pid_is_ours() {
  local pid exe
  lab_pid_alive "$1" || return 1
  pid=$(cat "$1")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $exe == *"$2"* ]]
}

component_binary() {
  case $1 in
    etcd) echo etcd ;;
    apiserver) echo kube-apiserver ;;
    kcm) echo kube-controller-manager ;;
    scheduler) echo kube-scheduler ;;
    containerd) echo containerd ;;
    kubelet) echo kubelet ;;
    proxy) echo kube-proxy ;;
  esac
}

stop_component() {
  local c=$1 pf=$D/$1.pid pid i
  [ -f "$pf" ] || return 0
  if pid_is_ours "$pf" "$(component_binary "$c")"; then
    pid=$(cat "$pf")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      lab_log "$NAME/$c (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$pf"
}

fail_with_log() { # fail_with_log COMPONENT MESSAGE
  lab_tail_log "$D/$1.log"
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[$i]}"; done
  lab_die "$NAME: $2"
}

# wait_for WHAT COMPONENT SECONDS CHECK...: poll CHECK every 0.1 s; fail with the component's log if it dies.
wait_for() {
  local what=$1 comp=$2 secs=$3 i
  shift 3
  for i in $(seq 1 $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    lab_pid_alive "$D/$comp.pid" || fail_with_log "$comp" "$comp exited while waiting for $what"
    sleep 0.1
  done
  fail_with_log "$comp" "$what not reached after ${secs} s"
}

api_ok() { curl -sf --max-time 2 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $LAB_ADMIN_TOKEN" "https://127.0.0.1:$API_PORT$1"; }

# ---- components -----------------------------------------------------------------------------------------------------
start_etcd() {
  local data=$D/etcd-data
  [ -d "$data" ] || mkdir -p "$data"
  etcd --name "$NAME" --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "$NAME=http://127.0.0.1:$PEER_PORT" --listen-metrics-urls="" \
    --logger=zap --log-level=warn >"$D/etcd.log" 2>&1 &
  echo $! >"$D/etcd.pid"
  wait_for "etcd health" etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  local mode=(--advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  if with_node; then
    # Pods reach it through the `kubernetes` Service, whose endpoint is the bridge address (DNAT to loopback).
    mode=(--advertise-address="$LAB_BRIDGE_IP" --enable-admission-plugins=NodeRestriction
      --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key"
      --kubelet-preferred-address-types=InternalIP)
    net_api_rule add "$API_PORT"
  fi
  "$LAB_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 "${mode[@]}" --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --cert-dir="$D/certs" --profiling=false >"$D/apiserver.log" 2>&1 &
  echo $! >"$D/apiserver.pid"
  wait_for "apiserver /readyz" apiserver 60 api_ok /readyz
}

start_kcm() {
  "$LAB_BIN/kube-controller-manager" --kubeconfig="$D/kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=false --controllers='*' --enable-hostpath-provisioner="$(with_node && echo true || echo false)" \
    >"$D/kcm.log" 2>&1 &
  echo $! >"$D/kcm.pid"
  # The service-account controller creating `default` proves the controllers run (namespace deletion needs them).
  wait_for "default ServiceAccount from the controller manager" kcm 30 \
    api_ok /api/v1/namespaces/default/serviceaccounts/default
}

start_scheduler() {
  "$LAB_BIN/kube-scheduler" --kubeconfig="$D/kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
    >"$D/scheduler.log" 2>&1 &
  echo $! >"$D/scheduler.pid"
}

# ---- commands ---------------------------------------------------------------------------------------------------------
start() {
  local fresh="" with_kcm=1 node="" c
  for a in "$@"; do
    case $a in
      --fresh) fresh=1 ;;
      --no-kcm) with_kcm="" ;;
      --node) node=1 ;;
      *) lab_die "unknown option $a" ;;
    esac
  done
  [ -n "$with_kcm" ] || COMPONENTS=(etcd apiserver)
  for c in "${ALL_COMPONENTS[@]}"; do
    if lab_pid_alive "$D/$c.pid"; then
      lab_die "cluster $NAME is already running ($c pid $(cat "$D/$c.pid")); run 'make lab-down' or 'test/lab/lab.sh down $NAME' first"
    fi
    rm -f "$D/$c.pid"
  done
  [ -x "$LAB_BIN/kube-apiserver" ] || lab_die "no kube-apiserver in $LAB_BIN; run 'make lab-build' first"
  command -v etcd >/dev/null || lab_die "etcd not installed; run 'make lab-build' (installs etcd-server)"
  allocate_slot
  SERVICE_CIDR="10.96.$SLOT.0/24"
  [ -z "$fresh" ] || rm -rf "$D/etcd-data" "$D/certs" "$D/node"
  if [ -n "$node" ]; then
    [ "$(id -u)" -eq 0 ] || lab_die "a lab node needs root (network namespaces, iptables, cgroups); use LAB_NODES=0"
    [ -x "$LAB_BIN/kubelet" ] || lab_die "no kubelet in $LAB_BIN; run 'make lab-build' first"
    command -v containerd >/dev/null || lab_die "containerd not installed; run test/tools/setup.sh"
    [ -f "$LAB_IMAGE_DIR/pause.tar" ] || lab_die "no pause image in $LAB_IMAGE_DIR; run 'make lab-build'"
    node_vars allocate
    COMPONENTS+=(scheduler containerd kubelet proxy)
  else
    rm -f "$D/node-number"
  fi
  "$LAB_ROOT/lib/pki.sh" "$PKI" "IP:10.96.$SLOT.1" "IP:$LAB_BRIDGE_IP"
  [ -z "$node" ] || NODE_NAME=$NODE_NAME "$LAB_ROOT/lib/pki.sh" "$PKI"
  "$LAB_ROOT/lib/kubeconfig.sh" "$D/kubeconfig" "$NAME" "https://127.0.0.1:$API_PORT" "$PKI"
  # The same credentials through the bridge address: works on this machine and inside the lab's pods.
  "$LAB_ROOT/lib/kubeconfig.sh" "$D/kubeconfig-lab" "$NAME" "https://$LAB_BRIDGE_IP:$API_PORT" "$PKI"
  local t0=$SECONDS
  for c in "${COMPONENTS[@]}"; do "start_$c"; done
  echo "$API_PORT" >"$D/api-port"
  lab_log "cluster $NAME ready on https://127.0.0.1:$API_PORT in $((SECONDS - t0)) s$(with_node && echo " with node $NODE_NAME ($NODE_IP)") (kubeconfig $D/kubeconfig)"
}

stop() {
  local i release="" volumes=""
  [ "${1:-}" != --release ] || release=1
  if with_node; then
    node_vars
    # Host-path volumes live in /tmp/hostpath_pv, shared by every lab cluster: delete only this cluster's.
    if [ -n "$release" ] && lab_pid_alive "$D/apiserver.pid"; then
      volumes=$(kubectl --kubeconfig="$D/kubeconfig" --request-timeout=5s get pv \
        -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null || true)
    fi
  fi
  for ((i = ${#ALL_COMPONENTS[@]} - 1; i >= 0; i--)); do
    [ "${ALL_COMPONENTS[$i]}" != containerd ] || ! with_node || stop_node_containers
    stop_component "${ALL_COMPONENTS[$i]}"
  done
  if with_node; then
    node_cleanup
    [ ! -f "$D/api-port" ] || net_api_rule del "$(cat "$D/api-port")"
    local v
    for v in $volumes; do case $v in /tmp/hostpath_pv/?*) rm -rf "$v" ;; esac; done
    [ -z "$release" ] || { net_release "$D"; rm -f "$D/node-number"; }
  fi
}

status() {
  local c state
  for c in "${ALL_COMPONENTS[@]}"; do
    [ -f "$D/$c.pid" ] || case $c in etcd | apiserver | kcm) ;; *) continue ;; esac
    if lab_pid_alive "$D/$c.pid"; then state="running (pid $(cat "$D/$c.pid"))"; else state=stopped; fi
    printf '%-10s %-10s %s\n' "$NAME" "$c" "$state"
  done
}

case $CMD in
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status ;;
  *) lab_die "unknown command $CMD" ;;
esac
