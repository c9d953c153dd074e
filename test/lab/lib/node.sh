# shellcheck shell=bash
# The node half of a lab cluster: one node with its own network namespace, containerd, kubelet and kube-proxy.
# Sourced by cluster.sh (which defines NAME, D, PKI, API_PORT, SLOT, wait_for, fail_with_log), never executed.
#
# Network (see net.sh): namespace drlab<N> with eth0 10.250.0.<10+N>/24 on the host bridge, pods in 10.97.<N>.0/24
# behind the CNI bridge drcni<N>, masqueraded to the node address when they leave the node. The namespace rejects
# every destination outside LAB_ALLOWED_RANGES (chain DRLAB-EGRESS, first in OUTPUT and FORWARD), so neither the node
# nor its pods can send a packet off this machine, and pods get no DNS server.
#
# kubelet, containerd's stream server and kube-proxy listen on the namespace's loopback; the apiserver reaches the
# kubelet through a DNAT from <node address>:10250.
. "$(dirname "${BASH_SOURCE[0]}")/net.sh"

LAB_IMAGE_DIR=${LAB_IMAGE_DIR:-$LAB_CACHE/images}
LAB_PAUSE_IMAGE=localhost/dr-syncer-lab/pause:3.2
KUBELET_PORT=10250

# node_vars [allocate]: the node's names and addresses; `allocate` takes a machine-wide node number first.
node_vars() {
  if [ "${1:-}" = allocate ]; then
    NODE_NUM=$(net_node_number "$D") || lab_die "could not allocate a node number for $NAME"
    [ -n "$NODE_NUM" ] || lab_die "could not allocate a node number for $NAME"
    echo "$NODE_NUM" >"$D/node-number"
  else
    NODE_NUM=$(cat "$D/node-number")
  fi
  NODE_NAME=$NAME-node
  NODE_NS=drlab$NODE_NUM
  NODE_IP=10.250.0.$((10 + NODE_NUM))
  POD_CIDR=10.97.$NODE_NUM.0/24
  ND=$D/node
  CONTAINERD_SOCK=$ND/containerd/containerd.sock
  IN_NS=(nsenter "--net=/run/netns/$NODE_NS")
}

# ---- network namespace ------------------------------------------------------------------------------------------------
node_netns_up() {
  local host_end=drvh$NODE_NUM r
  net_lock
  net_host_up
  net_unlock
  if [ ! -e "/run/netns/$NODE_NS" ]; then
    ip link del "$host_end" 2>/dev/null || true
    ip netns add "$NODE_NS"
    ip link add "$host_end" type veth peer name eth0 netns "$NODE_NS"
    ip link set "$host_end" master "$LAB_BRIDGE" up
    ip -n "$NODE_NS" addr add "$NODE_IP/24" dev eth0
    ip -n "$NODE_NS" link set lo up
    ip -n "$NODE_NS" link set eth0 up
    ip -n "$NODE_NS" route add default via "$LAB_BRIDGE_IP"
  fi
  # The apiserver (proxy, `kubectl get --raw .../proxy/`) reaches pods through the node.
  ip route replace "$POD_CIDR" via "$NODE_IP" dev "$LAB_BRIDGE"
  "${IN_NS[@]}" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.eth0.route_localnet=1
  modprobe br_netfilter 2>/dev/null || true
  "${IN_NS[@]}" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  # Egress: only the lab's own ranges; TCP is refused at once, everything else gets an ICMP error.
  "${IN_NS[@]}" iptables -N DRLAB-EGRESS 2>/dev/null || "${IN_NS[@]}" iptables -F DRLAB-EGRESS
  for r in $LAB_ALLOWED_RANGES; do "${IN_NS[@]}" iptables -A DRLAB-EGRESS -d "$r" -j RETURN; done
  "${IN_NS[@]}" iptables -A DRLAB-EGRESS -p tcp -j REJECT --reject-with tcp-reset
  "${IN_NS[@]}" iptables -A DRLAB-EGRESS -j REJECT --reject-with icmp-net-prohibited
  for chain in OUTPUT FORWARD; do
    "${IN_NS[@]}" iptables -C "$chain" -j DRLAB-EGRESS 2>/dev/null || "${IN_NS[@]}" iptables -I "$chain" -j DRLAB-EGRESS
  done
  # The kubelet listens on the namespace's loopback; the apiserver dials the node address.
  "${IN_NS[@]}" iptables -t nat -C PREROUTING -i eth0 -d "$NODE_IP" -p tcp --dport $KUBELET_PORT \
    -j DNAT --to-destination "127.0.0.1:$KUBELET_PORT" 2>/dev/null ||
    "${IN_NS[@]}" iptables -t nat -A PREROUTING -i eth0 -d "$NODE_IP" -p tcp --dport $KUBELET_PORT \
      -j DNAT --to-destination "127.0.0.1:$KUBELET_PORT"
}

node_netns_down() {
  ip route del "$POD_CIDR" 2>/dev/null || true
  # The host end first: a lingering socket can keep a deleted namespace, and so the veth pair, alive for minutes.
  ip link del "drvh$NODE_NUM" 2>/dev/null || true
  ip netns del "$NODE_NS" 2>/dev/null || true
}

# ---- containerd -------------------------------------------------------------------------------------------------------
write_containerd_config() {
  local c=$ND/containerd
  mkdir -p "$c/root" "$c/state" "$ND/cni/net.d" "$ND/cni/ipam"
  cat >"$c/config.toml" <<EOT
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$LAB_PAUSE_IMAGE"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (as in this VM) runc cannot set the negative oom_score_adj kubelet asks for.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni/net.d"
    max_conf_num = 1
EOT
  cat >"$ND/cni/net.d/10-$NODE_NS.conflist" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "$NODE_NS",
  "plugins": [
    { "type": "bridge", "bridge": "drcni$NODE_NUM", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$ND/cni/ipam",
                "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOT
}

ctr_node() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

start_containerd() {
  node_netns_up
  write_containerd_config
  "${IN_NS[@]}" containerd --config "$ND/containerd/config.toml" >"$D/containerd.log" 2>&1 &
  echo $! >"$D/containerd.pid"
  wait_for "containerd socket" containerd 20 ctr --address "$CONTAINERD_SOCK" version
  local img
  for img in "$LAB_IMAGE_DIR"/pause.tar "$LAB_RUN"/images/*.tar; do
    [ -f "$img" ] || continue
    ctr_node images import "$img" >/dev/null || fail_with_log containerd "could not import $img"
  done
}

# ---- kubelet ----------------------------------------------------------------------------------------------------------
start_kubelet() {
  local cg=/drlab-$NODE_NUM s
  # A cgroup root per node in every v1 hierarchy, so two kubelets never share /kubepods.
  for s in /sys/fs/cgroup/*/; do
    case $s in */unified/) continue ;; esac
    mkdir -p "$s$cg"
  done
  if [ -d /sys/fs/cgroup/cpuset$cg ]; then
    cp /sys/fs/cgroup/cpuset/cpuset.cpus "/sys/fs/cgroup/cpuset$cg/cpuset.cpus"
    cp /sys/fs/cgroup/cpuset/cpuset.mems "/sys/fs/cgroup/cpuset$cg/cpuset.mems"
  fi
  "$LAB_ROOT/lib/kubeconfig.sh" "$ND/kubelet.kubeconfig" "$NAME" "https://$LAB_BRIDGE_IP:$API_PORT" "$PKI" "node-$NODE_NAME"
  mkdir -p "$ND/kubelet" "$ND/pod-logs"
  # No nameserver: pods must not resolve (or reach) anything outside the lab.
  printf 'options ndots:1\n' >"$ND/resolv.conf"
  cat >"$ND/kubelet-config.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: $cg
failSwapOn: false
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
nodeStatusUpdateFrequency: 2s
clusterDomain: cluster.local
resolvConf: $ND/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
EOT
  # KUBELET_* variables are read by the lab patches (test/lab/patch-kubelet.sh).
  "${IN_NS[@]}" env KUBELET_POD_LOGS_DIR="$ND/pod-logs" KUBELET_CONTAINER_GC_PERIOD=10s KUBELET_STATUS_SYNC_PERIOD=2s \
    "$LAB_BIN/kubelet" --config="$ND/kubelet-config.yaml" --kubeconfig="$ND/kubelet.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
    --pod-infra-container-image="$LAB_PAUSE_IMAGE" --root-dir="$ND/kubelet" --cert-dir="$ND/kubelet/pki" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1 >"$D/kubelet.log" 2>&1 &
  echo $! >"$D/kubelet.pid"
}

start_proxy() {
  "${IN_NS[@]}" "$LAB_BIN/kube-proxy" --kubeconfig="$D/kubeconfig-lab" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$POD_CIDR" --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 >"$D/proxy.log" 2>&1 &
  echo $! >"$D/proxy.pid"
  wait_for "node $NODE_NAME Ready" kubelet 90 node_ready
  # Dynamic provisioning: the controller manager's host-path provisioner behind a default StorageClass.
  kubectl --kubeconfig="$D/kubeconfig" apply -f - >/dev/null <<EOT || fail_with_log kcm "could not create the StorageClass"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: lab-hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOT
}

node_ready() {
  api_ok "/api/v1/nodes/$NODE_NAME" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}

# ---- stop -------------------------------------------------------------------------------------------------------------
# stop_node_containers: kill every container of this node and delete it, so no shim or mount outlives the node.
stop_node_containers() {
  [ -S "$CONTAINERD_SOCK" ] && lab_pid_alive "$D/containerd.pid" || return 0
  local id i
  for id in $(ctr_node containers ls -q 2>/dev/null); do rm -f /var/lib/cni/results/*-"$id"-*; done
  for id in $(ctr_node tasks ls -q 2>/dev/null); do ctr_node tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  for id in $(ctr_node tasks ls -q 2>/dev/null); do
    for i in 1 2 3 4 5; do ctr_node tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.3; done
  done
  ctr_node containers ls -q 2>/dev/null | xargs -r ctr --address "$CONTAINERD_SOCK" -n k8s.io containers delete >/dev/null 2>&1 || true
}

# node_cleanup: after the node's processes stopped: leftover shims, mounts, namespace, cgroups, CNI cache.
node_cleanup() {
  local c a p m s
  for c in /proc/[0-9]*/cmdline; do
    a=$({ tr '\0' ' ' <"$c"; } 2>/dev/null) || continue
    case $a in *containerd-shim*"-address $CONTAINERD_SOCK"*)
      p=${c#/proc/}
      kill -9 "${p%/cmdline}" 2>/dev/null || true
      ;;
    esac
  done
  awk -v d="$ND/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  node_netns_down
  rm -f /var/lib/cni/results/"$NODE_NS"-* 2>/dev/null || true
  find /var/log/containers -maxdepth 1 -type l -lname "$ND/*" -delete 2>/dev/null || true
  for s in /sys/fs/cgroup/*/drlab-$NODE_NUM; do
    [ -d "$s" ] && find "$s" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}
