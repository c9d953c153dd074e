#!/usr/bin/env python3
"""Installs or removes the dr-syncer chart with the Helm SDK (PyPI helm-python-sdk); used by `make demo`.

  helm.py install KUBECONFIG NAMESPACE IMAGE_TAG   install, or upgrade when the release exists; waits until Ready
  helm.py uninstall KUBECONFIG NAMESPACE           remove the release (nothing when it is not installed)
"""

import sys
from pathlib import Path

import helm_python

CHART = Path(__file__).resolve().parents[2] / "charts" / "dr-syncer"
RELEASE = "dr-syncer"


def main(argv):
    if len(argv) < 3 or argv[0] not in ("install", "uninstall"):
        sys.exit(__doc__)
    action, kubeconfig, namespace = argv[:3]
    cfg = helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    try:
        if action == "uninstall":
            cfg.uninstall(RELEASE, ignore_not_found=True, timeout=120)
            return
        values = {"image": {"tag": argv[3]}}
        chart = helm_python.Chart.load(str(CHART))
        try:
            installed = any(r.get("name") == RELEASE for r in (cfg.list() or []))
            if installed:
                cfg.upgrade(chart, RELEASE, values, namespace=namespace, wait="watcher", timeout=300)
            else:
                cfg.install(chart, RELEASE, values, namespace=namespace, create_namespace=True, wait="watcher", timeout=300)
        finally:
            chart.close()
        print(f"release {RELEASE} {'upgraded' if installed else 'installed'} in {namespace}")
    finally:
        cfg.close()


if __name__ == "__main__":
    main(sys.argv[1:])
