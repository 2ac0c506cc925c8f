//! The Registry's conditions: Ready, Progressing, Degraded and StorageReady, built
//! from what a pass saw. A condition's `lastTransitionTime` moves only when its
//! status flips, so `kubectl get reg -o yaml` tells how long it has been so.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const STORAGE_READY: &str = "StorageReady";

/// A condition before it gets its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

pub fn wanted(
    type_: &'static str,
    status: bool,
    reason: impl Into<String>,
    message: impl Into<String>,
) -> Wanted {
    Wanted {
        type_,
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

/// The new conditions: one per wanted entry, in that order, plus the old ones this
/// pass says nothing about (kept as they were). A condition keeps its old
/// `lastTransitionTime` unless its status flipped.
pub fn merge(
    old: &[Condition],
    wanted: Vec<Wanted>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = wanted
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let since = old
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.into(),
                status: status.into(),
                reason: w.reason,
                message: w.message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    for kept in old {
        if !conditions.iter().any(|c| c.type_ == kept.type_) {
            conditions.push(kept.clone());
        }
    }
    conditions
}

/// What the Deployment tells: Ready and Progressing, ready replicas, and the
/// rollout failure that makes the Registry Degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub ready_replicas: i32,
    pub ready: Wanted,
    pub progressing: Wanted,
    pub failure: Option<(String, String)>,
}

pub fn rollout(deployment: &Deployment, replicas: i32) -> Rollout {
    let status = deployment.status.clone().unwrap_or_default();
    let ready_replicas = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let seen = match (deployment.metadata.generation, status.observed_generation) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let failure = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False"))
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "RolloutFailed".into()),
                c.message.clone().unwrap_or_default(),
            )
        });
    let counts = format!("{ready_replicas}/{replicas} pods ready");

    let done = seen && updated >= replicas && ready_replicas >= replicas && total <= replicas;
    let ready = if replicas == 0 {
        wanted(READY, false, "ScaledToZero", "spec.replicas is 0")
    } else if ready_replicas >= 1 && done {
        wanted(READY, true, "Available", counts.clone())
    } else if ready_replicas >= 1 {
        // Serving, while a rollout or a scale-up goes on.
        wanted(READY, true, "PartiallyAvailable", counts.clone())
    } else {
        wanted(READY, false, "Unavailable", counts.clone())
    };
    let progressing = match (&failure, done) {
        (Some((reason, message)), _) => wanted(PROGRESSING, false, reason.clone(), message.clone()),
        (None, true) => wanted(PROGRESSING, false, "RolloutComplete", counts),
        (None, false) => wanted(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated}/{replicas} pods updated, {counts}"),
        ),
    };
    Rollout {
        ready_replicas,
        ready,
        progressing,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_a_flip() {
        let first = merge(
            &[],
            vec![wanted(READY, false, "Unavailable", "0/1")],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));
        // Same status, new reason and message: the time stays.
        let same = merge(
            &first,
            vec![wanted(READY, false, "StillUnavailable", "0/1 again")],
            Some(2),
            &at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].reason, "StillUnavailable");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            vec![wanted(READY, true, "Available", "1/1")],
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn conditions_not_mentioned_are_kept() {
        let old = merge(
            &[],
            vec![
                wanted(READY, true, "Available", ""),
                wanted(STORAGE_READY, true, "Bound", ""),
            ],
            Some(1),
            &at(1),
        );
        let new = merge(
            &old,
            vec![wanted(DEGRADED, true, "InvalidSpec", "bad")],
            Some(2),
            &at(2),
        );
        let types: Vec<&str> = new.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [DEGRADED, READY, STORAGE_READY]);
        assert_eq!(new[1], old[0]);
    }

    fn deployment(generation: i64, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(generation);
        d.status = Some(status);
        d
    }

    #[test]
    fn a_rolled_out_deployment_is_ready() {
        let r = rollout(
            &deployment(
                2,
                DeploymentStatus {
                    observed_generation: Some(2),
                    replicas: Some(1),
                    ready_replicas: Some(1),
                    updated_replicas: Some(1),
                    ..DeploymentStatus::default()
                },
            ),
            1,
        );
        assert_eq!(r.ready_replicas, 1);
        assert!(r.ready.status);
        assert_eq!(r.ready.reason, "Available");
        assert!(!r.progressing.status);
        assert_eq!(r.failure, None);
    }

    #[test]
    fn a_new_deployment_is_progressing() {
        let r = rollout(&deployment(1, DeploymentStatus::default()), 1);
        assert!(!r.ready.status);
        assert!(r.progressing.status);
        assert_eq!(r.progressing.reason, "RollingOut");
    }

    #[test]
    fn a_stuck_rollout_is_a_failure() {
        let r = rollout(
            &deployment(
                1,
                DeploymentStatus {
                    observed_generation: Some(1),
                    conditions: Some(vec![DeploymentCondition {
                        type_: Some("Progressing".into()),
                        status: Some("False".into()),
                        reason: Some("ProgressDeadlineExceeded".into()),
                        message: Some("too slow".into()),
                        ..DeploymentCondition::default()
                    }]),
                    ..DeploymentStatus::default()
                },
            ),
            1,
        );
        assert_eq!(
            r.failure,
            Some(("ProgressDeadlineExceeded".into(), "too slow".into()))
        );
        assert!(!r.progressing.status);
    }

    #[test]
    fn zero_replicas_is_not_ready() {
        let r = rollout(&deployment(1, DeploymentStatus::default()), 0);
        assert_eq!(r.ready.reason, "ScaledToZero");
    }
}
