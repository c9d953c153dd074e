//! What a RemoteCluster's status says about its agents (pure; unit-tested).

use dr_syncer_api::common::{Condition, Time};
use dr_syncer_api::remote_cluster::PvcSyncStatus;

use super::install::{Observed, phase};
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};

/// Condition: the agents are installed and ready.
pub const AGENTS_READY: &str = "AgentsReady";

/// Added to the AgentsReady message of a RemoteCluster that still names a host-key Secret.
pub const KEY_SECRET_IGNORED: &str = "; spec.pvcSync.ssh.keySecretRef is ignored: each agent makes its own host key";

/// What the agent step of a reconcile found.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentOutcome {
    /// `pvcSync` is off and nothing of ours is installed.
    Disabled,
    /// `pvcSync` was turned off and the agents were removed.
    Removed,
    /// Installed or upgraded; how they run.
    Installed {
        /// Read-back state.
        observed: Observed,
        /// Image deployed.
        image: String,
        /// The RemoteCluster names a host-key Secret, which is no longer used.
        key_secret_ignored: bool,
    },
    /// They could not be installed.
    Failed {
        /// Short reason.
        reason: String,
        /// Detail.
        message: String,
    },
}

impl AgentOutcome {
    /// Whether the agents need another look soon (still rolling out, or failing).
    pub fn unsettled(&self) -> bool {
        match self {
            AgentOutcome::Installed { observed, .. } => observed.phase != phase::READY,
            AgentOutcome::Failed { .. } => true,
            AgentOutcome::Disabled | AgentOutcome::Removed => false,
        }
    }
}

/// Folds `outcome` into `status.pvcSync` and the AgentsReady condition.
pub fn fold(
    pvc_sync: &mut Option<PvcSyncStatus>,
    conds: &mut Vec<Condition>,
    outcome: &AgentOutcome,
    generation: Option<i64>,
    now: &Time,
) {
    let mut set = |status, reason: &str, message: String| {
        conditions::set(conds, Desired { type_: AGENTS_READY, status, reason, message }, generation, now)
    };
    match outcome {
        AgentOutcome::Disabled | AgentOutcome::Removed => {
            *pvc_sync = None;
            conds.retain(|c| c.type_ != AGENTS_READY);
        }
        AgentOutcome::Installed { observed, image, key_secret_ignored } => {
            let mut s = pvc_sync.clone().unwrap_or_default();
            if s.agent_image.as_deref() != Some(image) {
                s.last_deployment_time = Some(now.clone());
            }
            s.phase = Some(observed.phase.to_string());
            s.agent_status = Some(observed.agents.clone());
            s.message = Some(observed.message.clone());
            // Each agent has its own host key now; there is no one fingerprint to show.
            s.host_key_fingerprint = None;
            s.agent_image = Some(image.clone());
            *pvc_sync = Some(s);
            let mut message = observed.message.clone();
            if *key_secret_ignored {
                message.push_str(KEY_SECRET_IGNORED);
            }
            if observed.phase == phase::READY {
                set(TRUE, "Ready", message);
            } else {
                set(FALSE, observed.phase, message);
            }
        }
        AgentOutcome::Failed { reason, message } => {
            let mut s = pvc_sync.clone().unwrap_or_default();
            s.phase = Some(phase::FAILED.to_string());
            s.message = Some(message.clone());
            *pvc_sync = Some(s);
            set(FALSE, reason, message.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_syncer_api::remote_cluster::AgentStatus;

    fn now(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn installed(phase: &'static str, image: &str) -> AgentOutcome {
        AgentOutcome::Installed {
            observed: Observed { phase, agents: AgentStatus::default(), message: "1 of 1 agents ready".into() },
            image: image.into(),
            key_secret_ignored: false,
        }
    }

    #[test]
    fn fold_tracks_deployments_and_readiness_when_agents_change() {
        let (mut pvc, mut conds) = (None, Vec::new());
        fold(&mut pvc, &mut conds, &installed(phase::DEPLOYING, "a:1"), Some(1), &now(10));
        assert_eq!(pvc.as_ref().unwrap().last_deployment_time, Some(now(10)));
        assert_eq!(conditions::get(&conds, AGENTS_READY).unwrap().reason, "Deploying");
        fold(&mut pvc, &mut conds, &installed(phase::READY, "a:1"), Some(1), &now(20));
        assert_eq!(pvc.as_ref().unwrap().last_deployment_time, Some(now(10)), "same image: no new deployment");
        assert_eq!(conditions::get(&conds, AGENTS_READY).unwrap().status, TRUE);
        fold(&mut pvc, &mut conds, &installed(phase::READY, "a:2"), Some(1), &now(30));
        assert_eq!(pvc.as_ref().unwrap().last_deployment_time, Some(now(30)));
    }

    #[test]
    fn fold_clears_the_shared_fingerprint_and_says_a_key_secret_is_ignored_when_one_is_named() {
        let mut pvc = Some(PvcSyncStatus { host_key_fingerprint: Some("SHA256:old".into()), ..Default::default() });
        let mut conds = Vec::new();
        let outcome = AgentOutcome::Installed {
            observed: Observed { phase: phase::READY, agents: AgentStatus::default(), message: "ready".into() },
            image: "a:1".into(),
            key_secret_ignored: true,
        };
        fold(&mut pvc, &mut conds, &outcome, Some(1), &now(10));
        assert_eq!(pvc.unwrap().host_key_fingerprint, None);
        let ready = conditions::get(&conds, AGENTS_READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            (TRUE, format!("ready{KEY_SECRET_IGNORED}").as_str())
        );
    }

    #[test]
    fn fold_reports_failure_and_clears_everything_when_disabled() {
        let (mut pvc, mut conds) = (None, Vec::new());
        let failed = AgentOutcome::Failed { reason: "AgentOwnedByAnother".into(), message: "m".into() };
        fold(&mut pvc, &mut conds, &failed, Some(1), &now(10));
        assert_eq!(pvc.as_ref().unwrap().phase.as_deref(), Some(phase::FAILED));
        assert_eq!(conditions::get(&conds, AGENTS_READY).unwrap().reason, "AgentOwnedByAnother");
        assert!(failed.unsettled());
        fold(&mut pvc, &mut conds, &AgentOutcome::Removed, Some(2), &now(20));
        assert!(pvc.is_none());
        assert!(conditions::get(&conds, AGENTS_READY).is_none());
    }
}
