//! Every label, annotation, finalizer and field-manager name dr-syncer reads or writes.
//!
//! Names shared with the earlier Go dr-syncer operator keep their exact spelling, so objects and manifests labelled for
//! it keep working. Nothing outside this module spells these strings.

/// The only served and stored version of the dr-syncer API.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every dr-syncer custom resource.
pub const API_VERSION: &str = "dr-syncer.io/v1alpha1";

/// Prefix shared by every dr-syncer label and annotation key.
pub const KEY_PREFIX: &str = "dr-syncer.io/";

// ---- Labels and annotations users put on source objects ------------------------------------------------------------

/// Label on a source object (any kind): the value `"true"` keeps it out of replication.
pub const LABEL_IGNORE: &str = "dr-syncer.io/ignore";
/// Label on a source Deployment or StatefulSet: the replica count to use in DR instead of 0.
/// An integer sets that count; the Go operator's value `"true"` means "keep the source replica count".
pub const LABEL_SCALE_OVERRIDE: &str = "dr-syncer.io/scale-override";
/// Label on a source PVC: the storage class to use in DR, overriding `pvcConfig.storageClassMappings`.
pub const LABEL_STORAGE_CLASS: &str = "dr-syncer.io/storage-class";
/// Label on a source PVC: the access mode to use in DR, overriding `pvcConfig.accessModeMappings`.
pub const LABEL_ACCESS_MODE: &str = "dr-syncer.io/access-mode";
/// Label on a source PVC: `"true"` replicates its bound PersistentVolume too.
pub const LABEL_SYNC_PV: &str = "dr-syncer.io/sync-pv";
/// Label on a source object: how to handle an immutable-field change for this object only
/// (one of the `immutableResourceConfig.defaultHandling` values).
pub const LABEL_IMMUTABLE_HANDLING: &str = "dr-syncer.io/immutable-handling";
/// Annotation on a source PVC: data verification mode for this PVC only (`none`, `sample` or `full`).
pub const ANNOTATION_VERIFICATION_MODE: &str = "dr-syncer.io/verification-mode";
/// Annotation on a source PVC: percentage of files checked in `sample` verification mode.
pub const ANNOTATION_SAMPLE_PERCENT: &str = "dr-syncer.io/sample-percent";

// ---- Annotations users put on dr-syncer resources -----------------------------------------------------------------

/// Annotation on a NamespaceMapping: any value triggers one sync; dr-syncer removes it once the sync is handled.
pub const ANNOTATION_SYNC_NOW: &str = "dr-syncer.io/sync-now";
/// The Go operator's name for [`ANNOTATION_SYNC_NOW`], still honoured.
pub const ANNOTATION_TRIGGER_SYNC: &str = "dr-syncer.io/trigger-sync";
/// Annotation on a NamespaceMapping or RemoteCluster: any value rotates its SSH keys now — a mapping's certificate
/// authority, or (on a RemoteCluster) every agent's host key, by restarting the agents one node at a time; removed
/// once done.
pub const ANNOTATION_ROTATE_SSH_KEY: &str = "dr-syncer.io/rotate-ssh-key";

/// On every agent object dr-syncer installs in a source cluster: a hash of what it planned for that object. The
/// periodic check of the agents applies an object again only when its plan or a planned field changed.
pub const ANNOTATION_AGENT_PLAN_HASH: &str = "dr-syncer.io/agent-plan-hash";
/// Annotation on a NamespaceMapping: any value lets its next data copies delete more than
/// `dataSyncConfig.maxDeletePercent` of a DR volume's files; removed once a data sync run succeeded.
pub const ANNOTATION_APPROVE_DELETIONS: &str = "dr-syncer.io/approve-deletions";
/// Annotation on the agents' pod template: when their host keys were last rotated (a new value restarts them).
pub const ANNOTATION_HOST_KEYS_ROTATED: &str = "dr-syncer.io/host-keys-rotated-at";
/// Annotation on a kubeconfig Secret or a ClusterMapping: the namespaces (comma-separated, or `*` for all) whose
/// RemoteClusters or NamespaceMappings may refer to it from another namespace. Without it, references stay within
/// one namespace, so whoever may create a mapping in their namespace cannot use another namespace's clusters.
pub const ANNOTATION_ALLOW_REFERENCES_FROM: &str = "dr-syncer.io/allow-references-from";

/// Whether an object in namespace `referrer` may refer to one in `target` whose annotations are `annotations`: the
/// same namespace, or `target`'s object lists `referrer` (or `*`) in [`ANNOTATION_ALLOW_REFERENCES_FROM`].
pub fn reference_allowed(
    referrer: &str,
    target: &str,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    referrer == target
        || annotations
            .and_then(|a| a.get(ANNOTATION_ALLOW_REFERENCES_FROM))
            .is_some_and(|list| list.split(',').map(str::trim).any(|ns| ns == "*" || ns == referrer))
}

// ---- Marks dr-syncer puts on the objects it writes in the DR cluster -----------------------------------------------

/// The standard Kubernetes label naming the tool that manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] and [`LABEL_DR_MANAGED_BY`] on everything dr-syncer creates.
pub const MANAGED_BY_VALUE: &str = "dr-syncer";
/// The Go operator's managed-by label (`dr-syncer.io/managed-by: dr-syncer`), also written for compatibility.
pub const LABEL_DR_MANAGED_BY: &str = "dr-syncer.io/managed-by";
/// Label on a DR object: name of the NamespaceMapping that wrote it.
pub const LABEL_MAPPING: &str = "dr-syncer.io/mapping";
/// Label on a DR object: namespace of the NamespaceMapping that wrote it.
pub const LABEL_MAPPING_NAMESPACE: &str = "dr-syncer.io/mapping-namespace";
/// Label on a DR object: the RemoteCluster it was copied from.
pub const LABEL_SOURCE_CLUSTER: &str = "dr-syncer.io/source-cluster";
/// Annotation on a DR object (and label on a DR namespace): the namespace it was copied from.
pub const ANNOTATION_SOURCE_NAMESPACE: &str = "dr-syncer.io/source-namespace";
/// Annotation on a DR object: `metadata.uid` of the source object.
pub const ANNOTATION_SOURCE_UID: &str = "dr-syncer.io/source-uid";
/// Annotation on a DR object: SHA-256 of the desired DR content; an unchanged hash means no write.
pub const ANNOTATION_CONTENT_HASH: &str = "dr-syncer.io/content-hash";
/// Annotation on a DR Deployment or StatefulSet: the replica count of the source, restored on failover.
pub const ANNOTATION_ORIGINAL_REPLICAS: &str = "dr-syncer.io/original-replicas";

// ---- Labels on dr-syncer's own helper objects ----------------------------------------------------------------------

/// Label on agent pods and Secrets: the RemoteCluster they serve.
pub const LABEL_REMOTE_CLUSTER: &str = "dr-syncer.io/remote-cluster";
/// Label on short-lived rsync pods: the sync operation they belong to.
pub const LABEL_SYNC_ID: &str = "dr-syncer.io/sync-id";
/// Label on short-lived rsync pods: the PVC they copy.
pub const LABEL_PVC_NAME: &str = "dr-syncer.io/pvc-name";
/// Label on key Secrets of earlier versions: what kind of key they hold (read to remove them).
pub const LABEL_KEY_TYPE: &str = "dr-syncer.io/key-type";
/// Role of a short-lived data-copy object: `source-rsync` (source pod) or `copy` (DR Job).
pub const LABEL_DATA_ROLE: &str = "dr-syncer.io/data-role";

// ---- Parking workloads in DR --------------------------------------------------------------------------------------

/// Annotation on a DR CronJob: the source's `spec.suspend` (`true`/`false`); the DR copy is suspended.
pub const ANNOTATION_ORIGINAL_SUSPEND: &str = "dr-syncer.io/original-suspend";
/// Annotation on a DR Job: the source's `spec.parallelism`; the DR copy runs with parallelism 0 (no pods).
pub const ANNOTATION_ORIGINAL_PARALLELISM: &str = "dr-syncer.io/original-parallelism";
/// Annotation on a DR DaemonSet: the source pod template's `nodeSelector` as JSON, restored on failover.
pub const ANNOTATION_ORIGINAL_NODE_SELECTOR: &str = "dr-syncer.io/original-node-selector";
/// Node-selector key added to a parked DR DaemonSet's pod template (value `true`); no node carries it, so the
/// DaemonSet runs no pods until failover removes it.
pub const LABEL_PARKED: &str = "dr-syncer.io/parked";
/// Annotation on a DR object: the NamespaceMapping that wrote it, as `namespace/name`.
pub const ANNOTATION_MAPPING: &str = "dr-syncer.io/mapping";

// ---- Finalizers ----------------------------------------------------------------------------------------------------

/// Finalizer on a NamespaceMapping: cleans up its DR objects per `cleanupPolicy` before it goes away.
pub const FINALIZER_NAMESPACE_MAPPING: &str = "dr-syncer.io/cleanup-namespacemapping";
/// Finalizer on a RemoteCluster that installed PVC data-sync agents: removes them from its cluster first.
pub const FINALIZER_REMOTE_CLUSTER: &str = "dr-syncer.io/cleanup-agents";

// ---- Server-side-apply field managers (one per component) ----------------------------------------------------------

/// Field manager of the resource sync engine when it writes DR objects.
pub const FIELD_MANAGER_SYNC: &str = "dr-syncer-sync";
/// Field manager of the controller when it writes dr-syncer resources' status.
pub const FIELD_MANAGER_STATUS: &str = "dr-syncer-status";
/// Field manager of the PVC data-sync orchestrator (rsync pods, key Secrets, agents).
pub const FIELD_MANAGER_DATA: &str = "dr-syncer-data";
/// Field manager of `crdgen --apply` and the chart tooling when installing CRDs.
pub const FIELD_MANAGER_CRDS: &str = "dr-syncer-crds";
/// Field manager prefix of the controller's leader election when it writes its Lease. Each replica appends its own
/// identity (`dr-syncer-leader-election-<identity>`): taking a free Lease is a server-side apply, and only distinct
/// managers make two replicas' simultaneous applies conflict instead of both succeeding.
pub const FIELD_MANAGER_LEADER: &str = "dr-syncer-leader-election";

// ---- Leader election -----------------------------------------------------------------------------------------------

/// Default name of the coordination.k8s.io Lease the controller replicas compete for.
pub const LEADER_ELECTION_LEASE: &str = "dr-syncer-controller";

/// The value dr-syncer treats as "true" in string-valued labels and annotations.
pub const TRUE_VALUE: &str = "true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_allowed_only_within_a_namespace_unless_the_target_lists_the_referrer() {
        let with =
            |v: &str| std::collections::BTreeMap::from([(ANNOTATION_ALLOW_REFERENCES_FROM.to_string(), v.to_string())]);
        let cases = [
            ("a", "a", None, true),
            ("a", "b", None, false),
            ("a", "b", Some(with("c, a")), true),
            ("a", "b", Some(with("*")), true),
            ("a", "b", Some(with("ab,c")), false),
            ("a", "b", Some(with("")), false),
        ];
        for (referrer, target, annotations, want) in cases {
            assert_eq!(
                reference_allowed(referrer, target, annotations.as_ref()),
                want,
                "{referrer}->{target} {annotations:?}"
            );
        }
    }

    #[test]
    fn keys_are_valid_qualified_names_when_prefixed() {
        let keys = [
            LABEL_IGNORE,
            LABEL_SCALE_OVERRIDE,
            LABEL_STORAGE_CLASS,
            LABEL_ACCESS_MODE,
            LABEL_SYNC_PV,
            LABEL_IMMUTABLE_HANDLING,
            ANNOTATION_VERIFICATION_MODE,
            ANNOTATION_SAMPLE_PERCENT,
            ANNOTATION_SYNC_NOW,
            ANNOTATION_TRIGGER_SYNC,
            ANNOTATION_ROTATE_SSH_KEY,
            ANNOTATION_APPROVE_DELETIONS,
            ANNOTATION_HOST_KEYS_ROTATED,
            ANNOTATION_ALLOW_REFERENCES_FROM,
            LABEL_DR_MANAGED_BY,
            LABEL_MAPPING,
            LABEL_MAPPING_NAMESPACE,
            LABEL_SOURCE_CLUSTER,
            ANNOTATION_SOURCE_NAMESPACE,
            ANNOTATION_SOURCE_UID,
            ANNOTATION_CONTENT_HASH,
            ANNOTATION_ORIGINAL_REPLICAS,
            LABEL_REMOTE_CLUSTER,
            LABEL_SYNC_ID,
            LABEL_PVC_NAME,
            LABEL_KEY_TYPE,
            LABEL_DATA_ROLE,
            FINALIZER_NAMESPACE_MAPPING,
            FINALIZER_REMOTE_CLUSTER,
            ANNOTATION_ORIGINAL_SUSPEND,
            ANNOTATION_ORIGINAL_PARALLELISM,
            ANNOTATION_ORIGINAL_NODE_SELECTOR,
            LABEL_PARKED,
        ];
        let name = regex::Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$").unwrap();
        for key in keys {
            let rest = key.strip_prefix(KEY_PREFIX).unwrap_or_else(|| panic!("{key} lacks the prefix"));
            assert!(name.is_match(rest), "{key} is not a valid qualified name");
        }
    }

    #[test]
    fn go_operator_names_are_kept_when_shared() {
        // Spelled out on purpose: these strings are a compatibility contract with the Go operator.
        assert_eq!(LABEL_IGNORE, "dr-syncer.io/ignore");
        assert_eq!(LABEL_SCALE_OVERRIDE, "dr-syncer.io/scale-override");
        assert_eq!(ANNOTATION_ORIGINAL_REPLICAS, "dr-syncer.io/original-replicas");
        assert_eq!(ANNOTATION_SOURCE_NAMESPACE, "dr-syncer.io/source-namespace");
        assert_eq!(ANNOTATION_SYNC_NOW, "dr-syncer.io/sync-now");
        assert_eq!(ANNOTATION_TRIGGER_SYNC, "dr-syncer.io/trigger-sync");
        assert_eq!(LABEL_DR_MANAGED_BY, "dr-syncer.io/managed-by");
        assert_eq!(FINALIZER_NAMESPACE_MAPPING, "dr-syncer.io/cleanup-namespacemapping");
    }
}
