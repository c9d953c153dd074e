//! Ingress transform per `ingressConfig`.

use serde_json::{Value, json};

use super::IngressOptions;
use crate::sync::object;

/// The annotation older clusters use instead of `spec.ingressClassName`.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Adapts an Ingress.
pub fn ingress(obj: &mut Value, opts: &IngressOptions) {
    if !opts.preserve_annotations {
        object::remove(obj, "/metadata/annotations");
    }
    if !opts.preserve_tls {
        object::remove(obj, "/spec/tls");
    }
    if !opts.preserve_backends {
        object::remove(obj, "/spec/defaultBackend");
        object::remove(obj, "/spec/backend");
        for rule in obj.pointer_mut("/spec/rules").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(paths) = rule.pointer_mut("/http/paths").and_then(Value::as_array_mut) {
                paths.retain(|p| p.pointer("/backend/resource").is_none());
            }
        }
    }
    if let Some(class) = &opts.class_name {
        object::remove_annotation(obj, CLASS_ANNOTATION);
        if let Some(spec) = object::map_at(obj, &["spec"]) {
            spec.insert("ingressClassName".into(), json!(class));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Value {
        json!({"kind": "Ingress", "metadata": {"name": "web", "annotations": {
                "kubernetes.io/ingress.class": "nginx", "cert-manager.io/cluster-issuer": "le"}},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                "tls": [{"hosts": ["shop.example.com"], "secretName": "tls"}],
                "rules": [{"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/static", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}]}}]}})
    }

    #[test]
    fn ingress_is_unchanged_when_defaults_preserve_everything() {
        let mut obj = source();
        ingress(&mut obj, &IngressOptions::default());
        assert_eq!(obj, source());
    }

    #[test]
    fn ingress_drops_what_options_turn_off_and_sets_class() {
        let mut obj = source();
        let opts = IngressOptions {
            preserve_annotations: false,
            preserve_tls: false,
            preserve_backends: false,
            class_name: Some("haproxy".into()),
        };
        ingress(&mut obj, &opts);
        assert!(obj["metadata"].get("annotations").is_none());
        assert!(obj["spec"].get("tls").is_none() && obj["spec"].get("defaultBackend").is_none());
        assert_eq!(obj["spec"]["ingressClassName"], json!("haproxy"));
        assert_eq!(obj["spec"]["rules"][0]["http"]["paths"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn ingress_class_override_replaces_legacy_annotation() {
        let mut obj = source();
        ingress(&mut obj, &IngressOptions { class_name: Some("haproxy".into()), ..IngressOptions::default() });
        assert_eq!(object::annotation(&obj, CLASS_ANNOTATION), None);
        assert_eq!(object::annotation(&obj, "cert-manager.io/cluster-issuer"), Some("le"));
    }
}
