//! The kinds dr-syncer replicates and how `resourceTypes` / `namespaceScopedResources` entries resolve to them.
//!
//! Resolution is pure: it works on a [`Catalog`] of what the source cluster serves, built from discovery elsewhere.

use std::collections::BTreeSet;

/// A built-in kind dr-syncer knows how to replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinKind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Kind, as in `kind:`.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Included in `"*"`. Kinds that are not (Job) are replicated only when named.
    pub in_wildcard: bool,
}

const fn k(group: &'static str, kind: &'static str, plural: &'static str) -> BuiltinKind {
    BuiltinKind { group, kind, plural, in_wildcard: true }
}

/// Built-in kinds in the order they are applied: identities and configuration first, then storage and networking,
/// then workloads, then what refers to workloads.
pub const BUILTIN_KINDS: &[BuiltinKind] = &[
    k("", "ServiceAccount", "serviceaccounts"),
    k("", "Secret", "secrets"),
    k("", "ConfigMap", "configmaps"),
    k("rbac.authorization.k8s.io", "Role", "roles"),
    k("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    k("", "LimitRange", "limitranges"),
    k("", "ResourceQuota", "resourcequotas"),
    k("", "PersistentVolumeClaim", "persistentvolumeclaims"),
    k("", "Service", "services"),
    k("networking.k8s.io", "NetworkPolicy", "networkpolicies"),
    k("apps", "Deployment", "deployments"),
    k("apps", "StatefulSet", "statefulsets"),
    k("apps", "DaemonSet", "daemonsets"),
    k("batch", "CronJob", "cronjobs"),
    BuiltinKind { group: "batch", kind: "Job", plural: "jobs", in_wildcard: false },
    k("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    k("policy", "PodDisruptionBudget", "poddisruptionbudgets"),
    k("networking.k8s.io", "Ingress", "ingresses"),
];

/// Kinds replicated when a mapping names none (the Go operator's defaults).
pub const DEFAULT_KINDS: &[&str] =
    &["ConfigMap", "Secret", "Deployment", "Service", "Ingress", "PersistentVolumeClaim"];

/// Kinds that controllers generate from other objects; replicating them would fight the DR cluster's controllers.
pub const NEVER_REPLICATED: &[&str] = &[
    "Pod",
    "ReplicaSet",
    "ControllerRevision",
    "Endpoints",
    "EndpointSlice",
    "Event",
    "Lease",
    "PodTemplate",
    "Binding",
    "LocalSubjectAccessReview",
    "PodMetrics",
];

/// API groups whose kinds are never picked up by `namespaceScopedResources: ["*"]`: the built-in groups (their safe
/// kinds are listed above) and groups whose objects only make sense in the cluster that created them.
pub const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "extensions",
    "events.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "storage.k8s.io",
    "metrics.k8s.io",
    "authorization.k8s.io",
    "authentication.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "certificates.k8s.io",
    "node.k8s.io",
    "scheduling.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "snapshot.storage.k8s.io",
    "dr-syncer.io",
];

/// A namespaced resource the source cluster serves, as discovery reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedResource {
    /// API group.
    pub group: String,
    /// Kind, as the API serves it (`Deployment`).
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Served versions, most preferred first.
    pub versions: Vec<String>,
    /// Supports the verbs replication needs (list, get, create, patch, delete).
    pub replicable: bool,
}

/// What a cluster serves, for resolution.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Namespaced resources (without subresources).
    pub resources: Vec<ServedResource>,
}

/// A kind selected for replication.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SelectedKind {
    /// Position in the apply order.
    pub order: usize,
    /// API group.
    pub group: String,
    /// Kind, as the API serves it (`Deployment`).
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
}

impl SelectedKind {
    /// `Kind` for the core group, `Kind.group` otherwise: the label used in status and metrics.
    pub fn qualified(&self) -> String {
        qualified(&self.group, &self.kind)
    }
}

/// `Kind` for the core group, `Kind.group` otherwise.
pub fn qualified(group: &str, kind: &str) -> String {
    if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") }
}

/// The outcome of resolving a mapping's type lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Kinds to replicate, in apply order.
    pub kinds: Vec<SelectedKind>,
    /// Entries that name nothing the source cluster serves.
    pub unknown: Vec<String>,
    /// Entries that name kinds dr-syncer never replicates, with the reason.
    pub refused: Vec<(String, String)>,
}

/// Resolves `resourceTypes` (kinds or plurals, case-insensitive, optionally `.group`-qualified, or `"*"`) and
/// `namespaceScopedResources` (`plural.group` or `"*"`) against what the source serves.
pub fn resolve(resource_types: Option<&[String]>, custom: Option<&[String]>, catalog: &Catalog) -> Resolution {
    let mut out = Resolution::default();
    let mut seen = BTreeSet::new();
    let defaults: Vec<String>;
    let types = match resource_types {
        Some(t) if !t.is_empty() => t,
        _ => {
            defaults = DEFAULT_KINDS.iter().map(|s| s.to_string()).collect();
            &defaults
        }
    };
    for entry in types {
        let entry = entry.trim();
        if entry == "*" {
            for (i, b) in BUILTIN_KINDS.iter().enumerate().filter(|(_, b)| b.in_wildcard) {
                if catalog.serves(b.group, b.kind) {
                    push(&mut out, &mut seen, i, b.group, b.kind, b.plural);
                }
            }
            continue;
        }
        if let Some(kind) = NEVER_REPLICATED.iter().find(|n| matches_name(entry, n, &format!("{}s", n.to_lowercase())))
        {
            out.refused
                .push((entry.to_string(), format!("{kind} objects are generated by controllers in each cluster")));
            continue;
        }
        match find_builtin(entry) {
            Some((i, b)) if catalog.serves(b.group, b.kind) => push(&mut out, &mut seen, i, b.group, b.kind, b.plural),
            Some(_) => out.unknown.push(entry.to_string()),
            None => match catalog.find(entry) {
                Some(r) if r.replicable => {
                    push(&mut out, &mut seen, BUILTIN_KINDS.len(), &r.group, &r.kind, &r.plural);
                }
                Some(r) => {
                    out.refused.push((entry.to_string(), format!("{} does not support list/create/patch", r.kind)))
                }
                None => out.unknown.push(entry.to_string()),
            },
        }
    }
    for entry in custom.unwrap_or_default() {
        let entry = entry.trim();
        if entry == "*" {
            for r in catalog.resources.iter().filter(|r| r.replicable && !BUILTIN_GROUPS.contains(&r.group.as_str())) {
                push(&mut out, &mut seen, BUILTIN_KINDS.len(), &r.group, &r.kind, &r.plural);
            }
            continue;
        }
        match catalog.find(entry) {
            Some(r) if r.replicable && !NEVER_REPLICATED.contains(&r.kind.as_str()) => {
                let order = find_builtin(entry).map_or(BUILTIN_KINDS.len(), |(i, _)| i);
                push(&mut out, &mut seen, order, &r.group, &r.kind, &r.plural);
            }
            Some(r) => out.refused.push((entry.to_string(), format!("{} cannot be replicated", r.kind))),
            None => out.unknown.push(entry.to_string()),
        }
    }
    out.kinds.sort();
    out
}

fn push(
    out: &mut Resolution,
    seen: &mut BTreeSet<(String, String)>,
    order: usize,
    group: &str,
    kind: &str,
    plural: &str,
) {
    if seen.insert((group.to_string(), kind.to_string())) {
        out.kinds.push(SelectedKind {
            order,
            group: group.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        });
    }
}

/// Whether `entry` names `kind`/`plural`, case-insensitively, bare or `.group`-qualified by any group.
fn matches_name(entry: &str, kind: &str, plural: &str) -> bool {
    let base = entry.split('.').next().unwrap_or(entry);
    base.eq_ignore_ascii_case(kind) || base.eq_ignore_ascii_case(plural)
}

fn find_builtin(entry: &str) -> Option<(usize, &'static BuiltinKind)> {
    let (base, group) = split_group(entry);
    BUILTIN_KINDS.iter().enumerate().find(|(_, b)| {
        (base.eq_ignore_ascii_case(b.kind) || base.eq_ignore_ascii_case(b.plural))
            && group.is_none_or(|g| g.eq_ignore_ascii_case(b.group))
    })
}

fn split_group(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once('.') {
        Some((base, group)) => (base, Some(group)),
        None => (entry, None),
    }
}

impl Catalog {
    /// Whether the cluster serves this group and kind.
    pub fn serves(&self, group: &str, kind: &str) -> bool {
        self.resources.iter().any(|r| r.group == group && r.kind == kind)
    }

    /// Finds a resource by kind or plural (case-insensitive), optionally `.group`-qualified. Unqualified names prefer
    /// the core group, then the first match.
    pub fn find(&self, entry: &str) -> Option<&ServedResource> {
        let (base, group) = split_group(entry);
        let mut matches = self.resources.iter().filter(|r| {
            (base.eq_ignore_ascii_case(&r.kind) || base.eq_ignore_ascii_case(&r.plural))
                && group.is_none_or(|g| g.eq_ignore_ascii_case(&r.group))
        });
        let first = matches.next()?;
        if first.group.is_empty() {
            return Some(first);
        }
        Some(matches.find(|r| r.group.is_empty()).unwrap_or(first))
    }

    /// The served resource of a group and kind.
    pub fn get(&self, group: &str, kind: &str) -> Option<&ServedResource> {
        self.resources.iter().find(|r| r.group == group && r.kind == kind)
    }
}

/// Chooses the version to replicate a kind with: the source's most preferred version that the destination also
/// serves. `None` when they share no version.
pub fn common_version(source: &ServedResource, destination: Option<&ServedResource>) -> Option<String> {
    let destination = destination?;
    source.versions.iter().find(|v| destination.versions.contains(v)).cloned()
}

#[cfg(test)]
#[path = "kinds_tests.rs"]
mod tests;
