//! What a RemoteCluster's status says about its agents (pure; unit-tested).

use dr_syncer_api::common::{Condition, Time};
use dr_syncer_api::remote_cluster::PvcSyncStatus;

use super::install::{Observed, phase};
use crate::reconcile::conditions::{self, Desired, FALSE, TRUE};

/// Condition: the agents are installed and ready.
pub const AGENTS_READY: &str = "AgentsReady";

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
    },
    /// They could not be installed.
    Failed {
        /// Short CamelCase reason, for the condition and the event.
        reason: String,
        /// What failed, for the condition message.
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
        AgentOutcome::Installed { observed, image } => {
            let mut s = pvc_sync.clone().unwrap_or_default();
            if s.agent_image.as_deref() != Some(image) {
                s.last_deployment_time = Some(now.clone());
            }
            s.phase = Some(observed.phase.to_string());
            s.agent_status = Some(observed.agents.clone());
            s.message = Some(observed.message.clone());
            s.agent_image = Some(image.clone());
            *pvc_sync = Some(s);
            let message = observed.message.clone();
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
