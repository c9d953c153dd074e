"""Offline chart tests: Helm SDK lint, snapshots of three value sets, invariants, refusals, alert rules."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import helm_python
import yaml

from labkit import CHART, KUBE_VERSION, NAMESPACE, SNAPSHOTS, documents, render, snapshot_text, value_sets

UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


class Lint(unittest.TestCase):
    def test_lint_reports_nothing_above_info_when_strict(self):
        for name, values in value_sets().items():
            report = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
            self.assertEqual(problems, [], name)


class Snapshots(unittest.TestCase):
    def test_rendering_matches_snapshot_for_each_value_set(self):
        for name, values in value_sets().items():
            text = snapshot_text(render(values))
            path = SNAPSHOTS / f"{name}.yaml"
            if UPDATE:
                path.write_text(text)
                continue
            # A value set without a snapshot is a failure, not a new snapshot: otherwise a removed or renamed
            # snapshot file would be rewritten from whatever the chart renders today and the test would pass.
            self.assertTrue(path.exists(), f"{name}: no snapshot {path}; create it with make chart-snapshots and review it")
            self.assertEqual(
                path.read_text(), text,
                f"{name}: rendering differs from {path}; if intended, rerun with UPDATE_SNAPSHOTS=1 (make chart-snapshots)",
            )


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


class Invariants(unittest.TestCase):
    def test_containers_are_locked_down_for_every_value_set(self):
        for name, values in value_sets().items():
            for dep in by_kind(documents(render(values)), "Deployment"):
                pod = dep["spec"]["template"]["spec"]
                self.assertTrue(pod["securityContext"]["runAsNonRoot"], name)
                for c in pod["containers"]:
                    sc = c["securityContext"]
                    self.assertTrue(sc["readOnlyRootFilesystem"], name)
                    self.assertFalse(sc["allowPrivilegeEscalation"], name)
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"], name)
                    self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz", name)
                    self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz", name)
                    self.assertNotIn(":latest", c["image"], name)
                    self.assertIn("memory", c["resources"]["limits"], name)

    def test_rbac_never_grants_cluster_wide_secrets_or_changes_to_existing_ones(self):
        for name, values in value_sets().items():
            docs = documents(render(values))
            for role in by_kind(docs, "ClusterRole"):
                for rule in role["rules"]:
                    self.assertNotIn("secrets", rule["resources"], name)
                    self.assertTrue(rule.get("resourceNames"), f"{name}: cluster rule without resourceNames {rule}")
            for role in by_kind(docs, "Role"):
                for rule in role["rules"]:
                    if "secrets" in rule["resources"]:
                        # Read only: never create, change or delete a Secret.
                        self.assertEqual(sorted(rule["verbs"]), ["get", "list", "watch"], name)
                    self.assertNotIn("*", rule["verbs"], name)
                    self.assertNotIn("*", rule["resources"], name)

    def test_leader_election_flags_follow_values(self):
        for name, values in value_sets().items():
            dep = by_kind(documents(render(values)), "Deployment")[0]
            args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            enabled = values.get("leaderElection", {}).get("enabled", True)
            self.assertEqual("--leader-elect" in args, enabled, name)
            pdbs = by_kind(documents(render(values)), "PodDisruptionBudget")
            self.assertEqual(len(pdbs), 1 if dep["spec"]["replicas"] > 1 else 0, name)


class Refusals(unittest.TestCase):
    def assert_refused(self, values, needle):
        with self.assertRaises(helm_python.HelmError) as cm:
            render(values)
        self.assertIn(needle, str(cm.exception))

    def test_render_fails_when_two_replicas_run_without_leader_election(self):
        self.assert_refused({"replicaCount": 2, "leaderElection": {"enabled": False}}, "needs leaderElection.enabled")

    def test_render_fails_when_tag_is_latest(self):
        self.assert_refused({"image": {"repository": "x", "tag": "latest"}}, "tag")

    def test_render_fails_when_a_value_is_unknown_or_malformed(self):
        self.assert_refused({"replicas": 2}, "replicas")
        self.assert_refused({"leaderElection": {"leaseDuration": "fifteen"}}, "leaseDuration")
        self.assert_refused({"controller": {"syncConcurrency": 0}}, "syncConcurrency")


class AlertRules(unittest.TestCase):
    def test_prometheus_rules_pass_promtool_when_enabled(self):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool not on PATH (make tools)")
        values = value_sets()["ha-monitoring"]
        rules = by_kind(documents(render(values)), "PrometheusRule")
        self.assertEqual(len(rules), 1)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "rules.yaml"
            path.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}))
            proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
            self.assertIn("SUCCESS: 5 rules found", proc.stdout)


if __name__ == "__main__":
    unittest.main()
