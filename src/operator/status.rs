//! The Registry's conditions: Ready, Progressing, Degraded and StorageReady, built
//! from what a pass saw. A condition's `lastTransitionTime` moves only when its
//! status flips, so `kubectl get reg -o yaml` tells how long it has been so.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod};
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
    /// Every pod the Deployment counts is of its current template (some
    /// may not be ready).
    pub current: bool,
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
        current: seen && total <= updated,
        ready,
        progressing,
        failure,
    }
}

/// Why the registry pods are not ready, from what the kubelet and the scheduler
/// wrote in the pods and what the claim says: the reason and message that
/// Ready and Progressing show instead of a bare `0/1 pods ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub reason: String,
    pub message: String,
}

/// Waiting reasons of a container that will not start without a change (a
/// fixed image, a writable volume, a Secret): worth telling the user. Others
/// (`ContainerCreating`, `PodInitializing`) are just time passing.
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A termination message is at most 4 KiB (the kubelet's own limit); a
/// condition quotes its end, where the fatal error is.
const QUOTE_MAX: usize = 1024;

/// The first thing that keeps the registry from running, in the order a user
/// must fix them: an unbound claim (the pod cannot even be scheduled), a pod
/// the scheduler cannot place, then a container that cannot start (init
/// containers first: the registry waits for them). None when nothing is
/// stuck, only slow.
pub fn diagnose(pods: &[Pod], claim: Option<&PersistentVolumeClaim>) -> Option<Diagnosis> {
    if let Some(claim) = claim {
        let phase = claim
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if phase == "Pending" {
            let name = claim.metadata.name.as_deref().unwrap_or("the claim");
            return Some(Diagnosis {
                reason: "ClaimPending".into(),
                message: format!(
                    "the volume claim {name} is Pending: no PersistentVolume is bound to it yet (is there a default StorageClass that provisions volumes, or a free PersistentVolume that matches its size and access mode? `kubectl describe pvc {name}` tells)"
                ),
            });
        }
    }
    // Pods on their way out (a rollout, a deleted pod) no longer matter.
    let live = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    let mut unschedulable = None;
    for pod in live {
        let name = pod.metadata.name.as_deref().unwrap_or("the registry pod");
        let Some(status) = &pod.status else { continue };
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .map(|c| (c, true))
            .chain(
                status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|c| (c, false)),
            );
        for (container, init) in statuses {
            if let Some(diagnosis) = container_trouble(name, container, init) {
                return Some(diagnosis);
            }
        }
        let scheduled = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        if let Some(condition) = scheduled {
            unschedulable.get_or_insert_with(|| Diagnosis {
                reason: condition
                    .reason
                    .clone()
                    .unwrap_or_else(|| "Unschedulable".into()),
                message: format!(
                    "pod {name} cannot be scheduled: {}",
                    condition.message.as_deref().unwrap_or("no reason given")
                ),
            });
        }
    }
    unschedulable
}

/// The ReplicaSet could not create the pod at all (a namespace that enforces
/// the `restricted` pod security profile refuses the root init container, a
/// quota is full): the Deployment's ReplicaFailure condition says why.
pub fn replica_failure(deployment: &Deployment) -> Option<Diagnosis> {
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
        })?;
    let said = condition.message.as_deref().unwrap_or("no reason given");
    let mut message = format!("the registry pod cannot be created: {}", quote(said));
    if said.contains("PodSecurity") && said.contains("prepare-volume") {
        message.push_str(
            " (the namespace enforces a pod security profile that refuses the root init container: set spec.storage.prepareVolume: false, with a volume that honours fsGroup)",
        );
    }
    Some(Diagnosis {
        reason: condition
            .reason
            .clone()
            .unwrap_or_else(|| "FailedCreate".into()),
        message,
    })
}

/// A container stuck waiting, or an init container that failed (it is retried
/// before the kubelet backs off, and its failure is the registry's reason).
fn container_trouble(pod: &str, container: &ContainerStatus, init: bool) -> Option<Diagnosis> {
    let state = container.state.as_ref()?;
    let kind = if init { "init container" } else { "container" };
    let last = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let (reason, detail) = if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if !STUCK.contains(&reason) {
            return None;
        }
        (reason.to_string(), waiting.message.clone())
    } else if let Some(terminated) = state
        .terminated
        .as_ref()
        .filter(|t| init && t.exit_code != 0)
    {
        (
            "InitContainerFailed".to_string(),
            terminated.message.clone(),
        )
    } else {
        return None;
    };
    let mut message = format!("{kind} {} of pod {pod}: {reason}", container.name);
    // The termination message is what the program said before it died; with
    // it, the kubelet's own text (back-off 5m0s...) says little more.
    let terminated = state.terminated.as_ref().or(last);
    match terminated {
        Some(t) => {
            message.push_str(&format!(", exited with code {}", t.exit_code));
            if let Some(said) = t
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
            {
                message.push_str(&format!(": {}", quote(said)));
            }
        }
        None => {
            if let Some(detail) = detail.filter(|d| !d.is_empty()) {
                message.push_str(&format!(": {}", quote(&detail)));
            }
        }
    }
    message.push_str(&format!(" (restarted {} times)", container.restart_count));
    Some(Diagnosis { reason, message })
}

/// The end of a long text (where a fatal error is), on a character boundary.
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_MAX {
        return text.to_string();
    }
    let mut start = text.len() - QUOTE_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

impl Rollout {
    /// Ready (and Progressing, unless the Deployment already gave up) say why
    /// the pods are not ready, when a diagnosis knows.
    pub fn explain(&mut self, diagnosis: Option<Diagnosis>) {
        let Some(diagnosis) = diagnosis else { return };
        if self.ready.status {
            return;
        }
        let counts = std::mem::take(&mut self.ready.message);
        self.ready.reason = diagnosis.reason.clone();
        self.ready.message = format!("{counts}: {}", diagnosis.message);
        if self.failure.is_none() && self.progressing.status {
            self.progressing.reason = diagnosis.reason;
            self.progressing.message = self.ready.message.clone();
        }
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

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cache-1"}, "status": status}))
        .unwrap()
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named() {
        let pods = [pod(serde_json::json!({"containerStatuses": [{
            "name": "registry", "ready": false, "restartCount": 0, "image": "berth:nope", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"berth:nope\""}}}]}))];
        let d = diagnose(&pods, None).unwrap();
        assert_eq!(d.reason, "ImagePullBackOff");
        assert_eq!(
            d.message,
            "container registry of pod cache-1: ImagePullBackOff: Back-off pulling image \"berth:nope\" (restarted 0 times)"
        );
    }

    #[test]
    fn a_failed_init_container_comes_before_the_waiting_registry() {
        let pods = [pod(serde_json::json!({
            "initContainerStatuses": [{"name": "prepare-volume", "ready": false, "restartCount": 1,
                "image": "b", "imageID": "",
                "state": {"terminated": {"exitCode": 1,
                    "message": "cannot give /var/lib/registry to 65532:65532: Operation not permitted"}}}],
            "containerStatuses": [{"name": "registry", "ready": false, "restartCount": 0,
                "image": "b", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]}))];
        let d = diagnose(&pods, None).unwrap();
        assert_eq!(d.reason, "InitContainerFailed");
        assert!(
            d.message
                .starts_with("init container prepare-volume of pod cache-1"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("exited with code 1: cannot give"),
            "{}",
            d.message
        );
    }

    #[test]
    fn a_pod_on_its_way_is_not_trouble() {
        let starting = pod(serde_json::json!({"containerStatuses": [{
            "name": "registry", "ready": false, "restartCount": 0, "image": "b", "imageID": "",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(diagnose(&[starting], None), None);
        // A crash-looping pod that is being deleted (a rollout replaced it) neither.
        let mut leaving = pod(serde_json::json!({"containerStatuses": [{
            "name": "registry", "ready": false, "restartCount": 9, "image": "b", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}));
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        assert_eq!(diagnose(&[leaving], None), None);
    }

    #[test]
    fn a_long_termination_message_is_quoted_by_its_end() {
        let said = format!("{}é the fatal error", "log line\n".repeat(400));
        let pods = [pod(serde_json::json!({"containerStatuses": [{
            "name": "registry", "ready": false, "restartCount": 2, "image": "b", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "message": said}}}]}))];
        let d = diagnose(&pods, None).unwrap();
        assert!(d.message.len() < QUOTE_MAX + 200, "{}", d.message.len());
        assert!(
            d.message.contains("é the fatal error (restarted 2 times)"),
            "{}",
            d.message
        );
    }

    #[test]
    fn explain_keeps_a_ready_registry_and_a_failed_rollout_as_they_are() {
        let mut r = rollout(&deployment(1, DeploymentStatus::default()), 1);
        let d = Diagnosis {
            reason: "ErrImagePull".into(),
            message: "no such image".into(),
        };
        r.explain(Some(d.clone()));
        assert_eq!(r.ready.reason, "ErrImagePull");
        assert_eq!(r.ready.message, "0/1 pods ready: no such image");
        assert_eq!(r.progressing.reason, "ErrImagePull");

        let mut ready = rollout(
            &deployment(
                1,
                DeploymentStatus {
                    observed_generation: Some(1),
                    replicas: Some(1),
                    ready_replicas: Some(1),
                    updated_replicas: Some(1),
                    ..DeploymentStatus::default()
                },
            ),
            1,
        );
        let before = ready.clone();
        ready.explain(Some(d));
        assert_eq!(ready, before);
    }

    #[test]
    fn a_pod_that_cannot_be_created_is_explained() {
        let d = deployment(
            1,
            DeploymentStatus {
                conditions: Some(vec![DeploymentCondition {
                    type_: Some("ReplicaFailure".into()),
                    status: Some("True".into()),
                    reason: Some("FailedCreate".into()),
                    message: Some(
                        "pods \"cache-1\" is forbidden: violates PodSecurity \"restricted:latest\": runAsUser=0 (container \"prepare-volume\" must not set runAsUser=0)"
                            .into(),
                    ),
                    ..DeploymentCondition::default()
                }]),
                ..DeploymentStatus::default()
            },
        );
        let diagnosis = replica_failure(&d).unwrap();
        assert_eq!(diagnosis.reason, "FailedCreate");
        assert!(
            diagnosis.message.contains("violates PodSecurity"),
            "{}",
            diagnosis.message
        );
        assert!(
            diagnosis.message.ends_with(
                "set spec.storage.prepareVolume: false, with a volume that honours fsGroup)"
            ),
            "{}",
            diagnosis.message
        );
        assert_eq!(
            replica_failure(&deployment(1, DeploymentStatus::default())),
            None
        );
    }

    #[test]
    fn zero_replicas_is_not_ready() {
        let r = rollout(&deployment(1, DeploymentStatus::default()), 0);
        assert_eq!(r.ready.reason, "ScaledToZero");
    }
}
