//! Checking a RemoteCluster's kubeconfig before it is used: it must be self-contained (no file references, no
//! external credential plugins) and its TLS verification is forced on.

use kube::config::Kubeconfig;

/// Why a kubeconfig cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KubeconfigProblem {
    /// Short CamelCase reason for conditions and events.
    pub reason: &'static str,
    /// What is wrong, for users.
    pub message: String,
}

/// A kubeconfig that passed the checks.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// The parsed kubeconfig.
    pub kubeconfig: Kubeconfig,
    /// The context used.
    pub context: String,
    /// The API server URL.
    pub server: String,
    /// The kubeconfig asks to skip TLS verification (dr-syncer verifies anyway).
    pub insecure_requested: bool,
}

fn problem(reason: &'static str, message: impl Into<String>) -> KubeconfigProblem {
    KubeconfigProblem { reason, message: message.into() }
}

/// Parses and checks a kubeconfig held in a Secret. Pure.
pub fn inspect(text: &str) -> Result<Inspected, KubeconfigProblem> {
    let kubeconfig = Kubeconfig::from_yaml(text)
        .map_err(|e| problem("KubeconfigParseError", format!("the kubeconfig is not valid YAML: {e}")))?;
    let context_name = match (&kubeconfig.current_context, kubeconfig.contexts.as_slice()) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, [only]) => only.name.clone(),
        _ => {
            return Err(problem(
                "NoCurrentContext",
                "the kubeconfig sets no current-context and has not exactly one context",
            ));
        }
    };
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| problem("ContextNotFound", format!("the kubeconfig has no context {context_name:?}")))?;
    let cluster =
        kubeconfig.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.clone()).ok_or_else(
            || problem("ClusterNotFound", format!("the kubeconfig has no cluster {:?}", context.cluster)),
        )?;
    let server = cluster.server.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
        problem("ServerMissing", format!("cluster {:?} of the kubeconfig has no server URL", context.cluster))
    })?;
    if !server.starts_with("https://") {
        return Err(problem("InsecureServerURL", format!("server {server:?} is not an https:// URL")));
    }
    if cluster.certificate_authority.is_some() {
        return Err(file_reference("certificate-authority", "certificate-authority-data"));
    }
    let user_name = context.user.clone().unwrap_or_default();
    if let Some(auth) = kubeconfig.auth_infos.iter().find(|a| a.name == user_name).and_then(|a| a.auth_info.clone()) {
        if auth.exec.is_some() {
            return Err(problem(
                "ExecPluginNotAllowed",
                format!("user {user_name:?} uses an exec credential plugin; use a token or client certificate data"),
            ));
        }
        if auth.auth_provider.is_some() {
            return Err(problem(
                "AuthProviderNotAllowed",
                format!("user {user_name:?} uses an auth-provider; use a token or client certificate data"),
            ));
        }
        for (field, set, inline) in [
            ("client-certificate", auth.client_certificate.is_some(), "client-certificate-data"),
            ("client-key", auth.client_key.is_some(), "client-key-data"),
            ("tokenFile", auth.token_file.is_some(), "token"),
        ] {
            if set {
                return Err(file_reference(field, inline));
            }
        }
    } else if !user_name.is_empty() {
        return Err(problem("UserNotFound", format!("the kubeconfig has no user {user_name:?}")));
    }
    Ok(Inspected {
        insecure_requested: cluster.insecure_skip_tls_verify.unwrap_or(false),
        kubeconfig,
        context: context_name,
        server,
    })
}

fn file_reference(field: &str, inline: &str) -> KubeconfigProblem {
    problem(
        "FileReferenceNotAllowed",
        format!("the kubeconfig refers to a file with {field:?}; embed the content with {inline:?} instead"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             clusters:\n- name: k\n  cluster: {cluster}\nusers:\n- name: u\n  user: {user}\n"
        )
    }

    #[test]
    fn inspect_accepts_self_contained_kubeconfig() {
        let ok = inspect(&config("{server: 'https://127.0.0.1:6443', certificate-authority-data: Zm9v}", "{token: t}"))
            .unwrap();
        assert_eq!(
            (ok.server.as_str(), ok.context.as_str(), ok.insecure_requested),
            ("https://127.0.0.1:6443", "c", false)
        );
    }

    #[test]
    fn inspect_flags_insecure_skip_tls_verify() {
        let ok = inspect(&config("{server: 'https://h:1', insecure-skip-tls-verify: true}", "{token: t}")).unwrap();
        assert!(ok.insecure_requested);
    }

    #[test]
    fn inspect_refuses_kubeconfig_when_unsafe_or_incomplete() {
        let server = "{server: 'https://h:1'}";
        let cases = [
            ("not: [valid", "KubeconfigParseError"),
            ("apiVersion: v1\nkind: Config\n", "NoCurrentContext"),
            (&config("{server: 'http://h:1'}", "{token: t}"), "InsecureServerURL"),
            (&config("{certificate-authority-data: Zm9v}", "{token: t}"), "ServerMissing"),
            (
                &config("{server: 'https://h:1', certificate-authority: /etc/ca.crt}", "{token: t}"),
                "FileReferenceNotAllowed",
            ),
            (
                &config(server, "{exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}}"),
                "ExecPluginNotAllowed",
            ),
            (&config(server, "{auth-provider: {name: gcp}}"), "AuthProviderNotAllowed"),
            (&config(server, "{client-key: /k, client-certificate-data: Zm9v}"), "FileReferenceNotAllowed"),
            (&config(server, "{tokenFile: /var/run/token}"), "FileReferenceNotAllowed"),
        ];
        for (text, reason) in cases {
            assert_eq!(inspect(text).unwrap_err().reason, reason, "{text}");
        }
    }
}
