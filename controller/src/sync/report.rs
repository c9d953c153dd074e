//! What a sync did: per-kind counts, per-object errors and warnings, and why it failed when it did.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_api::namespace_mapping::{CoveredNamespace, FailureHandling, FailureMode, KindCounts, PendingCleanup};

/// Per-object errors kept in a report (and in status); the counts stay exact beyond it.
pub const MAX_OBJECT_ERRORS: usize = 50;

/// The class of a failure, which selects the `failureHandling` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// A cluster could not be reached or did not answer in time.
    NetworkError,
    /// A kind, referenced object or namespace does not exist.
    ResourceNotFound,
    /// The DR API server rejected an object as invalid.
    ValidationFailure,
    /// A mapped storage class does not exist in the DR cluster.
    StorageClassNotFound,
    /// Anything else (conflicts, permissions, …).
    Other,
}

impl Category {
    /// Name used in status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::NetworkError => "NetworkError",
            Category::ResourceNotFound => "ResourceNotFound",
            Category::ValidationFailure => "ValidationFailure",
            Category::StorageClassNotFound => "StorageClassNotFound",
            Category::Other => "Other",
        }
    }

    /// The failure mode a mapping configured for this category (with the documented defaults).
    pub fn mode(self, handling: Option<&FailureHandling>) -> FailureMode {
        let h = handling.cloned().unwrap_or_default();
        let default = h.default_mode.unwrap_or(FailureMode::RetryAndWait);
        match self {
            Category::NetworkError => h.network_error.unwrap_or(FailureMode::RetryAndWait),
            Category::ResourceNotFound => h.resource_not_found.unwrap_or(FailureMode::WaitForNextSync),
            Category::ValidationFailure => h.validation_failure.unwrap_or(FailureMode::WaitForNextSync),
            Category::StorageClassNotFound => h.storage_class_not_found.unwrap_or(FailureMode::WaitForNextSync),
            Category::Other => default,
        }
    }
}

/// Why a whole sync (not just some objects) could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    /// Class of the failure.
    pub category: Category,
    /// Short CamelCase reason for conditions and events.
    pub reason: String,
    /// What happened, for users.
    pub message: String,
}

/// One object that failed or was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProblem {
    /// Qualified kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Short CamelCase reason.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// Class of the problem.
    pub category: Category,
}

/// The result of one sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncReport {
    /// Set when the sync could not run at all, or stopped part-way (no prune happened for unfinished kinds).
    pub failure: Option<SyncFailure>,
    /// Counts per qualified kind.
    pub kinds: BTreeMap<String, KindCounts>,
    /// Objects that failed (bounded by [`MAX_OBJECT_ERRORS`]).
    pub errors: Vec<ObjectProblem>,
    /// Objects refused because the DR copy is not ours (bounded by [`MAX_OBJECT_ERRORS`]).
    pub conflicts: Vec<ObjectProblem>,
    /// Objects left as they are because the source changed an immutable field (NoChange; bounded list).
    pub immutable: Vec<ObjectProblem>,
    /// Objects replicated with a warning (invalid labels, for example).
    pub warnings: Vec<ObjectProblem>,
    /// `resourceTypes` / `namespaceScopedResources` entries that could not be resolved, and kinds the DR cluster
    /// does not serve.
    pub type_problems: Vec<ObjectProblem>,
    /// Source replica counts of parked Deployments and StatefulSets.
    pub scales: Vec<(String, i32)>,
    /// Resolved kinds with their API versions (`Deployment.apps/v1`).
    pub resolved: Vec<String>,
    /// Wall time.
    pub duration: Duration,
    /// The DR namespace.
    pub destination_namespace: String,
    /// Whether this sync created the DR namespace.
    pub namespace_created: bool,
    /// The namespaces the sync covered (`None` when it failed before it knew them).
    pub covered: Option<Vec<CoveredNamespace>>,
    /// DR namespaces no longer covered that were cleaned up, with the number of objects deleted or released.
    pub cleaned_up: Vec<(String, usize)>,
    /// DR namespaces no longer covered whose cleanup has not finished.
    pub pending_cleanups: Vec<PendingCleanup>,
}

impl SyncReport {
    /// Counts of one kind, created on first use.
    pub fn counts(&mut self, kind: &str) -> &mut KindCounts {
        self.kinds
            .entry(kind.to_string())
            .or_insert_with(|| KindCounts { kind: kind.to_string(), ..KindCounts::default() })
    }

    /// Records a failed object.
    pub fn fail(&mut self, problem: ObjectProblem) {
        self.counts(&problem.kind).failed += 1;
        if self.errors.len() < MAX_OBJECT_ERRORS {
            self.errors.push(problem);
        }
    }

    /// Records a refused object.
    pub fn conflict(&mut self, problem: ObjectProblem) {
        self.counts(&problem.kind).conflicts += 1;
        if self.conflicts.len() < MAX_OBJECT_ERRORS {
            self.conflicts.push(problem);
        }
    }

    /// Adds the report of one namespace of a selector mapping: counts add up, object names get the DR namespace
    /// as prefix, and a failure of that namespace becomes a failed entry (the other namespaces still count).
    pub fn merge(&mut self, other: SyncReport) {
        let prefix = format!("{}/", other.destination_namespace);
        self.merge_with_prefix(other, &prefix);
    }

    /// Adds the report of one kind of the same sync (kinds run side by side, each into its own report).
    pub fn absorb(&mut self, other: SyncReport) {
        self.merge_with_prefix(other, "");
    }

    fn merge_with_prefix(&mut self, other: SyncReport, prefix: &str) {
        let named = |mut p: ObjectProblem| {
            p.name = format!("{prefix}{}", p.name);
            p
        };
        for (kind, counts) in other.kinds {
            add(self.counts(&kind), &counts);
        }
        let bounded = |list: &mut Vec<ObjectProblem>, more: Vec<ObjectProblem>| {
            list.extend(more.into_iter().map(named).take(MAX_OBJECT_ERRORS.saturating_sub(list.len())));
        };
        bounded(&mut self.errors, other.errors);
        bounded(&mut self.conflicts, other.conflicts);
        bounded(&mut self.immutable, other.immutable);
        bounded(&mut self.warnings, other.warnings);
        for p in other.type_problems {
            if !self.type_problems.iter().any(|q| q.name == p.name && q.reason == p.reason) {
                self.type_problems.push(p);
            }
        }
        self.scales.extend(other.scales.into_iter().map(|(name, n)| (format!("{prefix}{name}"), n)));
        for r in other.resolved {
            if !self.resolved.contains(&r) {
                self.resolved.push(r);
            }
        }
        if let Some(f) = other.failure {
            match prefix.strip_suffix('/') {
                Some(namespace) => self.fail(ObjectProblem {
                    kind: "Namespace".into(),
                    name: namespace.to_string(),
                    reason: f.reason,
                    message: f.message,
                    category: f.category,
                }),
                None => {
                    self.failure.get_or_insert(f);
                }
            }
        }
    }

    /// Records an object left as it is because of an immutable-field change.
    pub fn immutable(&mut self, problem: ObjectProblem) {
        self.counts(&problem.kind).immutable += 1;
        if self.immutable.len() < MAX_OBJECT_ERRORS {
            self.immutable.push(problem);
        }
    }

    /// Totals over every kind.
    pub fn totals(&self) -> KindCounts {
        self.kinds.values().fold(KindCounts::default(), |mut t, k| {
            add(&mut t, k);
            t
        })
    }

    /// Whether every selected object is in DR as it should be.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
            && self.type_problems.is_empty()
            && self.totals().failed == 0
            && self.totals().conflicts == 0
            && self.totals().immutable == 0
    }

    /// The category that decides retries: the sync failure's, else the first (in declaration order) of the type and
    /// object problems. Conflicts alone give `None`: retrying cannot resolve them.
    pub fn category(&self) -> Option<Category> {
        if let Some(f) = &self.failure {
            return Some(f.category);
        }
        self.type_problems.iter().chain(&self.errors).map(|p| p.category).min()
    }
}

/// Adds the counts of `from` to `into` (the kind name stays).
fn add(into: &mut KindCounts, from: &KindCounts) {
    into.applied += from.applied;
    into.unchanged += from.unchanged;
    into.pruned += from.pruned;
    into.failed += from.failed;
    into.conflicts += from.conflicts;
    into.immutable += from.immutable;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, category: Category) -> ObjectProblem {
        ObjectProblem { kind: kind.into(), name: "x".into(), reason: "R".into(), message: "m".into(), category }
    }

    #[test]
    fn report_counts_are_exact_when_problem_lists_are_bounded() {
        let mut r = SyncReport::default();
        for _ in 0..(MAX_OBJECT_ERRORS + 5) {
            r.fail(problem("ConfigMap", Category::ValidationFailure));
        }
        r.counts("Secret").applied += 2;
        assert_eq!(r.errors.len(), MAX_OBJECT_ERRORS);
        assert_eq!(r.totals().failed as usize, MAX_OBJECT_ERRORS + 5);
        assert_eq!(r.totals().applied, 2);
        assert!(!r.succeeded());
        assert_eq!(r.category(), Some(Category::ValidationFailure));
    }

    #[test]
    fn category_mode_uses_documented_defaults_when_unset() {
        assert_eq!(Category::NetworkError.mode(None), FailureMode::RetryAndWait);
        assert_eq!(Category::ValidationFailure.mode(None), FailureMode::WaitForNextSync);
        assert_eq!(Category::ResourceNotFound.mode(None), FailureMode::WaitForNextSync);
        let h = FailureHandling { default_mode: Some(FailureMode::FailFast), ..FailureHandling::default() };
        assert_eq!(Category::Other.mode(Some(&h)), FailureMode::FailFast);
    }

    #[test]
    fn merge_adds_counts_and_prefixes_names_when_namespaces_combine() {
        let mut total = SyncReport::default();
        let mut a = SyncReport { destination_namespace: "a-dr".into(), ..SyncReport::default() };
        a.counts("ConfigMap").applied = 2;
        a.fail(problem("ConfigMap", Category::ValidationFailure));
        a.scales.push(("web".into(), 3));
        let b = SyncReport {
            destination_namespace: "b-dr".into(),
            failure: Some(SyncFailure {
                category: Category::ResourceNotFound,
                reason: "SourceNamespaceNotFound".into(),
                message: "gone".into(),
            }),
            ..SyncReport::default()
        };
        total.merge(a);
        total.merge(b);
        assert_eq!(total.totals().applied, 2);
        assert_eq!(total.totals().failed, 2, "the failed namespace counts as a failed entry");
        assert!(total.failure.is_none(), "one namespace failing does not fail the others");
        assert_eq!(total.errors[0].name, "a-dr/x");
        assert_eq!((total.errors[1].kind.as_str(), total.errors[1].name.as_str()), ("Namespace", "b-dr"));
        assert_eq!(total.scales, vec![("a-dr/web".to_string(), 3)]);
    }

    #[test]
    fn absorb_adds_counts_and_keeps_names_when_kinds_combine() {
        let mut total = SyncReport { destination_namespace: "app-dr".into(), ..SyncReport::default() };
        total.counts("ConfigMap").applied = 1;
        let mut deployments = SyncReport::default();
        deployments.counts("Deployment.apps").applied = 3;
        deployments.fail(problem("Deployment.apps", Category::ValidationFailure));
        deployments.scales.push(("web".into(), 2));
        total.absorb(deployments);
        assert_eq!((total.totals().applied, total.totals().failed), (4, 1));
        assert_eq!(total.errors[0].name, "x", "names stay as they are");
        assert_eq!(total.scales, vec![("web".to_string(), 2)]);
        assert_eq!(total.destination_namespace, "app-dr");
        assert!(total.failure.is_none());
    }
}
