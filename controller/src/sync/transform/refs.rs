//! Rewriting references to the source namespace when the DR namespace has another name.

use regex::Regex;
use serde_json::{Value, json};

use crate::sync::object;

/// The well-known label every namespace carries with its own name (Kubernetes 1.21+), used in NetworkPolicies.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Rewrites `<service>.<source>.svc…` DNS names and namespace fields from the source namespace to the DR one.
#[derive(Clone, Debug)]
pub struct NamespaceRewrite {
    source: String,
    destination: String,
    dns: Option<Regex>,
}

impl NamespaceRewrite {
    /// Prepares a rewrite from `source` to `destination`.
    pub fn new(source: &str, destination: &str) -> NamespaceRewrite {
        // A DNS label, then `.<source>.svc`, then the end or a non-name character (`.cluster.local`, `:port`, `/`).
        let pattern = format!(r"([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.{}\.svc\b", regex::escape(source));
        NamespaceRewrite { source: source.into(), destination: destination.into(), dns: Regex::new(&pattern).ok() }
    }

    /// Rewrites one string; `None` when nothing changed.
    pub fn rewrite_dns(&self, s: &str) -> Option<String> {
        let re = self.dns.as_ref()?;
        if !re.is_match(s) {
            return None;
        }
        let replacement = format!("${{1}}.{}.svc", self.destination);
        Some(re.replace_all(s, replacement.as_str()).into_owned())
    }

    /// Applies the rewrites that concern this kind.
    pub fn apply(&self, group: &str, obj: &mut Value) {
        let kind = object::kind(obj).to_string();
        let dns = |s: &str| self.rewrite_dns(s);
        match (group, kind.as_str()) {
            ("rbac.authorization.k8s.io", "RoleBinding") => {
                for subject in obj.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
                    if subject.get("namespace").and_then(Value::as_str) == Some(self.source.as_str()) {
                        subject["namespace"] = json!(self.destination);
                    }
                }
            }
            ("", "Service") => {
                if let Some(name) = obj.pointer_mut("/spec/externalName") {
                    object::rewrite_strings(name, &dns);
                }
            }
            ("", "ConfigMap") => {
                if let Some(data) = obj.get_mut("data") {
                    object::rewrite_strings(data, &dns);
                }
            }
            ("networking.k8s.io" | "extensions", "Ingress") => {
                if let Some(annotations) = obj.pointer_mut("/metadata/annotations") {
                    object::rewrite_strings(annotations, &dns);
                }
            }
            ("networking.k8s.io", "NetworkPolicy") => self.network_policy(obj),
            _ => {}
        }
        for pointer in ["/spec/template/spec", "/spec/jobTemplate/spec/template/spec"] {
            if let Some(pod) = obj.pointer_mut(pointer) {
                self.pod_spec(pod);
            }
        }
    }

    fn pod_spec(&self, pod: &mut Value) {
        let dns = |s: &str| self.rewrite_dns(s);
        for list in ["containers", "initContainers"] {
            for container in pod.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                for field in ["command", "args"] {
                    if let Some(v) = container.get_mut(field) {
                        object::rewrite_strings(v, &dns);
                    }
                }
                for env in container.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(v) = env.get_mut("value") {
                        object::rewrite_strings(v, &dns);
                    }
                }
            }
        }
    }

    fn network_policy(&self, obj: &mut Value) {
        let source = self.source.clone();
        let destination = self.destination.clone();
        let fix = move |peer: &mut Value| {
            if let Some(labels) = peer.pointer_mut("/namespaceSelector/matchLabels").and_then(Value::as_object_mut)
                && labels.get(NAMESPACE_NAME_LABEL).and_then(Value::as_str) == Some(source.as_str())
            {
                labels.insert(NAMESPACE_NAME_LABEL.into(), json!(destination));
            }
        };
        for direction in [("ingress", "from"), ("egress", "to")] {
            for rule in
                obj.pointer_mut(&format!("/spec/{}", direction.0)).and_then(Value::as_array_mut).into_iter().flatten()
            {
                for peer in rule.get_mut(direction.1).and_then(Value::as_array_mut).into_iter().flatten() {
                    fix(peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_dns_changes_service_names_of_source_namespace_only() {
        let r = NamespaceRewrite::new("shop", "shop-dr");
        let cases = [
            ("db.shop.svc", Some("db.shop-dr.svc")),
            ("http://db.shop.svc.cluster.local:5432/x", Some("http://db.shop-dr.svc.cluster.local:5432/x")),
            ("a.shop.svc,b.shop.svc", Some("a.shop-dr.svc,b.shop-dr.svc")),
            ("db.shopping.svc", None),
            ("db.myshop.svc", None),
            ("shop.svc", None),
            ("db.shop", None),
        ];
        for (input, want) in cases {
            assert_eq!(r.rewrite_dns(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn apply_rewrites_rolebinding_subjects_env_and_network_policies() {
        let r = NamespaceRewrite::new("shop", "shop-dr");
        let mut rb = json!({"kind": "RoleBinding", "subjects": [
            {"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
        r.apply("rbac.authorization.k8s.io", &mut rb);
        assert_eq!(rb["subjects"][0]["namespace"], json!("shop-dr"));
        assert_eq!(rb["subjects"][1]["namespace"], json!("tools"));

        let mut deploy = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{
            "args": ["--db=db.shop.svc:5432"], "env": [{"name": "URL", "value": "http://api.shop.svc.cluster.local"}]}]}}}});
        r.apply("apps", &mut deploy);
        assert_eq!(deploy.pointer("/spec/template/spec/containers/0/args/0"), Some(&json!("--db=db.shop-dr.svc:5432")));
        assert_eq!(
            deploy.pointer("/spec/template/spec/containers/0/env/0/value"),
            Some(&json!("http://api.shop-dr.svc.cluster.local"))
        );

        let mut np = json!({"kind": "NetworkPolicy", "spec": {"ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}]}]}});
        r.apply("networking.k8s.io", &mut np);
        assert_eq!(
            np.pointer("/spec/ingress/0/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name"),
            Some(&json!("shop-dr"))
        );

        let mut svc =
            json!({"kind": "Service", "spec": {"type": "ExternalName", "externalName": "db.shop.svc.cluster.local"}});
        r.apply("", &mut svc);
        assert_eq!(svc["spec"]["externalName"], json!("db.shop-dr.svc.cluster.local"));
    }
}
