"""The lab's network: pods reach the other cluster's node, and nothing in the lab reaches anything off this machine.

The VM's uplink accepts any TCP connection, so a connect proves nothing: reachability is shown by a payload (the
rsync daemon's greeting), unreachability by a refused connection and no payload.
"""

import unittest

from labkit import apply, eventually, exec_in, image, kubectl, lab_kubeconfig, node_ip, pod_ready

NS = "lab-network-test"
PORT = 8730
# Outside addresses: documentation range, public DNS, the cloud metadata address.
OUTSIDE = [("198.51.100.7", 80), ("1.1.1.1", 443), ("8.8.8.8", 53), ("169.254.169.254", 80)]


def namespace(kubeconfig):
    apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n", kubeconfig)


class Network(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.src, cls.dr = lab_kubeconfig("source"), lab_kubeconfig("dr")
        for k in (cls.src, cls.dr):
            namespace(k)
        rsync = image("agent")
        # A server on the dr node's hostPort, and a client pod in source.
        apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: rsyncd, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: rsyncd
    image: {rsync}
    imagePullPolicy: IfNotPresent
    command: [bash, -c, 'printf "[data]\\npath = /tmp\\n" >/tmp/rsyncd.conf; exec rsync --daemon --no-detach --port={PORT} --config=/tmp/rsyncd.conf']
    ports: [{{containerPort: {PORT}, hostPort: {PORT}, protocol: TCP}}]
""", cls.dr)
        apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: {rsync}
    imagePullPolicy: IfNotPresent
    command: [sleep, infinity]
""", cls.src)
        eventually("rsyncd pod Ready", lambda: pod_ready(NS, "rsyncd", cls.dr), timeout=90)
        eventually("client pod Ready", lambda: pod_ready(NS, "client", cls.src), timeout=90)

    @classmethod
    def tearDownClass(cls):
        for k in (cls.src, cls.dr):
            kubectl("delete", "namespace", NS, "--wait=false", "--ignore-not-found", kubeconfig=k, check=False)

    def test_pod_reaches_the_other_clusters_node_when_a_hostport_serves(self):
        ip = node_ip(self.dr)
        script = f"exec 3<>/dev/tcp/{ip}/{PORT} && head -c 8 <&3"
        out = eventually(
            "rsync greeting from the dr node",
            lambda: (lambda rc_out: rc_out[1] if rc_out[0] == 0 and "@RSYNCD:" in rc_out[1] else None)(
                exec_in(NS, "client", script, self.src)),
            timeout=30,
        )
        self.assertIn("@RSYNCD:", out)

    def test_pod_cannot_reach_outside_addresses_when_egress_is_closed(self):
        for host, port in OUTSIDE:
            script = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && echo CONNECTED && timeout 2 head -c 1 <&3 | od -c'"
            rc, out = exec_in(NS, "client", script, self.src)
            self.assertNotEqual(rc, 0, f"{host}:{port}: {out}")
            self.assertNotIn("CONNECTED", out, f"{host}:{port}")
            self.assertIn("refused", out.lower(), f"{host}:{port} should be refused at once: {out}")

    def test_pod_has_no_dns_server_when_resolving_outside_names(self):
        # A name only the cluster's DNS would know: with no DNS server in the pod it does not resolve.
        rc, out = exec_in(NS, "client", "getent hosts kubernetes.default.svc.cluster.local", self.src)
        self.assertNotEqual(rc, 0, out)
        rc, out = exec_in(NS, "client", "grep -c '^nameserver' /etc/resolv.conf || true", self.src)
        self.assertEqual(out.strip(), "0", out)


if __name__ == "__main__":
    unittest.main()
