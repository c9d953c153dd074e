"""Shared helpers of the chart and lab tests: rendering with the Helm SDK, kubectl with timeouts, polling."""

import json
import os
import subprocess
import time
from pathlib import Path

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dr-syncer"
VALUES = REPO / "test" / "chart" / "values"
SNAPSHOTS = REPO / "test" / "chart" / "snapshots"
RELEASE = "dr-syncer"
NAMESPACE = "dr-syncer"
KUBE_VERSION = "v1.20.2"
# Every kubectl call gets this many seconds (a hung API server fails the test instead of hanging it).
KUBECTL_TIMEOUT = 30


def value_sets():
    """Name -> values dict: `default` plus every file in values/."""
    sets = {"default": {}}
    for f in sorted(VALUES.glob("*.yaml")):
        sets[f.stem] = yaml.safe_load(f.read_text()) or {}
    return sets


def render(values, namespace=NAMESPACE):
    """Renders the chart offline; returns {template path: manifest text}."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        return chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    finally:
        chart.close()


def documents(rendered):
    """The rendered Kubernetes objects (NOTES.txt and empty templates left out), in template order."""
    docs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(rendered[path]) if d)
    return docs


def snapshot_text(rendered):
    """A stable text form of a rendering for snapshot comparison."""
    parts = []
    for path in sorted(rendered):
        text = rendered[path].strip()
        if text:
            parts.append(f"# Source: {path}\n{text}\n")
    return "---\n".join(parts)


def kubectl(*args, kubeconfig=None, input=None, check=True, timeout=KUBECTL_TIMEOUT):
    """Runs kubectl against `kubeconfig` (default: the lab's source cluster); returns stdout."""
    env = dict(os.environ, KUBECONFIG=kubeconfig or os.environ["KUBECONFIG_SOURCE"])
    proc = subprocess.run(
        ["kubectl", f"--request-timeout={timeout}s", *args],
        input=input, capture_output=True, text=True, env=env, timeout=timeout + 10,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def kubectl_json(*args, **kw):
    """kubectl ... -o json, parsed."""
    return json.loads(kubectl(*args, "-o", "json", **kw))


def eventually(what, check, timeout=60.0, interval=0.5):
    """Polls `check` until it returns something truthy (returned) or `timeout` passes (AssertionError with the
    last value or exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the last failure is reported below
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s (last: {last!r})")
        time.sleep(interval)


def lab_kubeconfig(cluster):
    """The kubeconfig of a running lab cluster (from `eval "$(make -s lab-env)"`)."""
    var = f"KUBECONFIG_{cluster.upper()}"
    path = os.environ.get(var)
    if not path:
        raise AssertionError(f"{var} is not set: run the lab tests through `make test-lab` (or eval \"$(make -s lab-env)\")")
    return path


def image(name):
    """A dr-syncer image reference as built by `make images` (IMAGE_TAG or target/images/tag)."""
    tag = os.environ.get("IMAGE_TAG") or (REPO / "target" / "images" / "tag").read_text().strip()
    return f"localhost/dr-syncer/{name}:{tag}"


def node_ip(kubeconfig):
    """InternalIP of the cluster's (single) node."""
    return kubectl(
        "get", "nodes", "-o", "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
        kubeconfig=kubeconfig,
    ).strip()


def apply(manifest, kubeconfig):
    """Server-side applies a YAML text."""
    return kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", kubeconfig=kubeconfig, input=manifest)


def pod_ready(namespace, name, kubeconfig):
    """True when the pod's Ready condition is True."""
    pod = kubectl_json("-n", namespace, "get", "pod", name, kubeconfig=kubeconfig)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def exec_in(namespace, pod, script, kubeconfig, timeout=30):
    """Runs `bash -c script` in the pod; returns (exit code, stdout + stderr)."""
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    proc = subprocess.run(
        ["kubectl", "-n", namespace, "exec", pod, "--", "bash", "-c", script],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


def kill_container(cluster, pod_json, signal="SIGKILL"):
    """Sends `signal` to the pod's first container through the lab node's containerd (the node is this machine), as
    a crash would: no graceful shutdown, no Lease hand-back."""
    sock = Path(lab_kubeconfig(cluster)).parent / "node" / "containerd" / "containerd.sock"
    cid = pod_json["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "kill", "-s", signal, cid],
                   check=True, capture_output=True, timeout=30)


def pod_logs(namespace, pod, kubeconfig, previous=False):
    """The pod's log with kubelet timestamps ('' when there is none, e.g. no previous container)."""
    args = ["-n", namespace, "logs", "--timestamps", pod] + (["--previous"] if previous else [])
    return kubectl(*args, kubeconfig=kubeconfig, check=False)
