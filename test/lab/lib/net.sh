# shellcheck shell=bash
# Host side of the lab's node network. Sourced by cluster.sh, never executed.
#
#   bridge drlab0, 10.250.0.1/24     every lab node's network namespace hangs off it with one veth (10.250.0.<10+N>)
#   nat chain DRLAB-API              10.250.0.1:<apiserver port> -> 127.0.0.1:<port>, one rule per running cluster,
#                                    so pods and kubelets reach apiservers that only listen on loopback
#   filter chain DRLAB-FWD           the host never forwards between the bridge and anything else
#
# Node numbers N (1..99) are machine-wide: /run/dr-syncer-lab/nodes/N holds the directory of the cluster that owns
# it, so several labs (`make lab-up` and `make test`) can run side by side. The bridge and chains are removed when the
# last node number is released.

LAB_NET_STATE=/run/dr-syncer-lab
LAB_BRIDGE=drlab0
LAB_BRIDGE_IP=10.250.0.1
LAB_BRIDGE_CIDR=10.250.0.0/24
# Every address a lab packet may go to: loopback, the bridge, the service and pod ranges of every lab cluster.
LAB_ALLOWED_RANGES="127.0.0.0/8 $LAB_BRIDGE_CIDR 10.96.0.0/16 10.97.0.0/16"

net_lock() {
  mkdir -p "$LAB_NET_STATE/nodes"
  exec 6>"$LAB_NET_STATE/.lock"
  flock 6
}
net_unlock() { flock -u 6; }

# net_node_number DIR: print the node number owned by DIR, allocating one if needed.
net_node_number() {
  local dir=$1 n owner
  net_lock
  for n in $(seq 1 99); do
    owner=$(cat "$LAB_NET_STATE/nodes/$n" 2>/dev/null) || continue
    if [ "$owner" = "$dir" ]; then net_unlock; echo "$n"; return 0; fi
  done
  for n in $(seq 1 99); do
    owner=$(cat "$LAB_NET_STATE/nodes/$n" 2>/dev/null) || { echo "$dir" >"$LAB_NET_STATE/nodes/$n"; net_unlock; echo "$n"; return 0; }
    # An owner whose directory is gone (deleted clone, purged test lab) no longer needs its number.
    if [ ! -d "$owner" ]; then echo "$dir" >"$LAB_NET_STATE/nodes/$n"; net_unlock; echo "$n"; return 0; fi
  done
  net_unlock
  lab_die "no free lab node number (99 in use)"
}

# net_release DIR: give DIR's node number back; tear the host network down when no lab node is left.
net_release() {
  local dir=$1 f
  net_lock
  for f in "$LAB_NET_STATE"/nodes/*; do
    [ -f "$f" ] && [ "$(cat "$f")" = "$dir" ] && rm -f "$f"
  done
  if [ -z "$(ls -A "$LAB_NET_STATE/nodes")" ]; then
    net_host_down
  fi
  net_unlock
}

# net_host_up: the bridge, its sysctls and the host chains (idempotent; called under the lock).
net_host_up() {
  if ! ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
    ip link add "$LAB_BRIDGE" type bridge
    ip addr add "$LAB_BRIDGE_IP/24" dev "$LAB_BRIDGE"
  fi
  ip link set "$LAB_BRIDGE" up
  # Lets the DNAT to 127.0.0.1 apply to packets arriving on the bridge (and their replies leave through it).
  sysctl -qw "net.ipv4.conf.$LAB_BRIDGE.route_localnet=1"
  iptables -t nat -N DRLAB-API 2>/dev/null || true
  iptables -t nat -C PREROUTING -i "$LAB_BRIDGE" -d "$LAB_BRIDGE_IP" -j DRLAB-API 2>/dev/null ||
    iptables -t nat -A PREROUTING -i "$LAB_BRIDGE" -d "$LAB_BRIDGE_IP" -j DRLAB-API
  iptables -t nat -C OUTPUT -d "$LAB_BRIDGE_IP" -j DRLAB-API 2>/dev/null ||
    iptables -t nat -A OUTPUT -d "$LAB_BRIDGE_IP" -j DRLAB-API
  if ! iptables -N DRLAB-FWD 2>/dev/null; then iptables -F DRLAB-FWD; fi
  iptables -A DRLAB-FWD -i "$LAB_BRIDGE" -o "$LAB_BRIDGE" -j RETURN
  iptables -A DRLAB-FWD -i "$LAB_BRIDGE" -j REJECT
  iptables -A DRLAB-FWD -o "$LAB_BRIDGE" -j DROP
  iptables -C FORWARD -j DRLAB-FWD 2>/dev/null || iptables -I FORWARD -j DRLAB-FWD
}

net_host_down() {
  iptables -t nat -D PREROUTING -i "$LAB_BRIDGE" -d "$LAB_BRIDGE_IP" -j DRLAB-API 2>/dev/null || true
  iptables -t nat -D OUTPUT -d "$LAB_BRIDGE_IP" -j DRLAB-API 2>/dev/null || true
  iptables -t nat -F DRLAB-API 2>/dev/null && iptables -t nat -X DRLAB-API 2>/dev/null || true
  iptables -D FORWARD -j DRLAB-FWD 2>/dev/null || true
  iptables -F DRLAB-FWD 2>/dev/null && iptables -X DRLAB-FWD 2>/dev/null || true
  ip link del "$LAB_BRIDGE" 2>/dev/null || true
}

# net_api_rule add|del PORT: make 10.250.0.1:PORT reach the apiserver on 127.0.0.1:PORT.
net_api_rule() {
  local op=$1 port=$2 rule
  rule=(-p tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port")
  net_lock
  if [ "$op" = add ]; then
    net_host_up
    iptables -t nat -C DRLAB-API "${rule[@]}" 2>/dev/null || iptables -t nat -A DRLAB-API "${rule[@]}"
  else
    while iptables -t nat -D DRLAB-API "${rule[@]}" 2>/dev/null; do :; done
  fi
  net_unlock
}
