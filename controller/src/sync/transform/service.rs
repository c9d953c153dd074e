//! Service transform: cluster IPs and auto-assigned node ports are the source cluster's; explicit ones are kept.

use serde_json::Value;

use super::Options;
use crate::sync::object;

/// Adapts a Service. `source` is the unsanitized source object, whose managedFields and last-applied annotation
/// tell which nodePorts a user set explicitly.
pub fn service(obj: &mut Value, source: &Value, opts: &Options) {
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    object::remove(obj, "/spec/clusterIPs");
    if !headless {
        object::remove(obj, "/spec/clusterIP");
    }
    if obj.pointer("/spec/ipFamilyPolicy").and_then(Value::as_str) == Some("SingleStack") {
        object::remove(obj, "/spec/ipFamilyPolicy");
        object::remove(obj, "/spec/ipFamilies");
    }
    let explicit = ExplicitFields::of(source);
    let node_port_type = matches!(obj.pointer("/spec/type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer"));
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports {
            let keep = node_port_type && (opts.preserve_node_ports || explicit.node_port(port));
            if !keep && let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    if !(opts.preserve_node_ports || explicit.health_check_node_port) {
        object::remove(obj, "/spec/healthCheckNodePort");
    }
}

/// The Service fields a client set explicitly (as opposed to ones the API server allocated).
#[derive(Debug, Default)]
struct ExplicitFields {
    /// (port, protocol) of ports whose nodePort was set explicitly.
    node_ports: Vec<(i64, String)>,
    health_check_node_port: bool,
}

impl ExplicitFields {
    fn of(source: &Value) -> ExplicitFields {
        let mut out = ExplicitFields::default();
        for entry in source.pointer("/metadata/managedFields").and_then(Value::as_array).into_iter().flatten() {
            let Some(spec) = entry.pointer("/fieldsV1/f:spec") else { continue };
            if spec.get("f:healthCheckNodePort").is_some() {
                out.health_check_node_port = true;
            }
            for (key, fields) in spec.get("f:ports").and_then(Value::as_object).into_iter().flatten() {
                if fields.get("f:nodePort").is_none() {
                    continue;
                }
                let Some(json) = key.strip_prefix("k:") else { continue };
                if let Ok(k) = serde_json::from_str::<Value>(json) {
                    out.push(&k);
                }
            }
        }
        let last_applied = object::annotation(source, "kubectl.kubernetes.io/last-applied-configuration")
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        if let Some(applied) = last_applied {
            for port in applied.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
                if port.get("nodePort").is_some() {
                    out.push(port);
                }
            }
            if applied.pointer("/spec/healthCheckNodePort").is_some() {
                out.health_check_node_port = true;
            }
        }
        out
    }

    fn push(&mut self, port: &Value) {
        if let Some(n) = port.get("port").and_then(Value::as_i64) {
            self.node_ports.push((n, protocol(port)));
        }
    }

    fn node_port(&self, port: &Value) -> bool {
        let Some(n) = port.get("port").and_then(Value::as_i64) else { return false };
        let proto = protocol(port);
        self.node_ports.iter().any(|(p, pr)| *p == n && *pr == proto)
    }
}

fn protocol(port: &Value) -> String {
    port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Options, transform};

    fn run(svc: serde_json::Value, preserve: bool) -> serde_json::Value {
        let opts = Options {
            source_namespace: "a".into(),
            destination_namespace: "a".into(),
            preserve_node_ports: preserve,
            ..Options::default()
        };
        transform("", svc.clone(), &svc, None, &opts).object
    }

    #[test]
    fn service_keeps_headless_cluster_ip_and_drops_allocated_ones() {
        let headless = json!({"kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}});
        assert_eq!(run(headless, false)["spec"], json!({"clusterIP": "None", "ports": [{"port": 5432}]}));
        let normal = json!({"kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.0.0.4", "clusterIPs": ["10.0.0.4"], "ipFamilyPolicy": "SingleStack",
                     "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}});
        assert_eq!(run(normal, false)["spec"], json!({"ports": [{"port": 80}]}));
    }

    #[test]
    fn service_keeps_only_explicit_node_ports_unless_preserving_all() {
        let svc = json!({"kind": "Service",
            "metadata": {"name": "web", "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:ports": {
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:nodePort": {}, "f:port": {}},
                "k:{\"port\":443,\"protocol\":\"TCP\"}": {"f:port": {}}}}}}]},
            "spec": {"type": "LoadBalancer", "healthCheckNodePort": 31999, "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                          {"port": 443, "protocol": "TCP", "nodePort": 31443}]}});
        let out = run(svc.clone(), false);
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "nodePort": 30080},
                                                {"port": 443, "protocol": "TCP"}])
        );
        assert!(out["spec"].get("healthCheckNodePort").is_none());
        let all = run(svc, true);
        assert_eq!(all["spec"]["ports"][1]["nodePort"], json!(31443));
        assert_eq!(all["spec"]["healthCheckNodePort"], json!(31999));
    }

    #[test]
    fn service_reads_explicit_node_ports_from_last_applied_annotation() {
        let applied = r#"{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}}"#;
        let svc = json!({"kind": "Service",
            "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]}});
        let out = run(svc, false);
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "nodePort": 30080}, {"port": 81}]));
    }
}
