//! How each upstream has been answering, for `GET /berth/v1/proxy` and so
//! for the Registry's status: when it last answered, and the last failure
//! (unreachable, cut off, rate-limited, failing, or sending bad bytes).

use serde::Serialize;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Default)]
pub struct Health(Mutex<State>);

#[derive(Default, Clone)]
struct State {
    /// When upstream last answered anything.
    last_contact: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
    /// Whether the last thing that happened was a failure.
    failing: bool,
}

/// One upstream as `GET /berth/v1/proxy` reports it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    /// Its name: the first component of its repositories here.
    pub name: String,
    /// Where it is.
    pub url: String,
    /// `Ok`, `Failing` (the last request failed), or `Unknown` (none sent yet).
    pub state: String,
    /// RFC 3339, when upstream last answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
    /// RFC 3339, when the last failure was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// What the last failure was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// With a cap: bytes its cached images take, as far as the registry knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// The cap, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

impl Health {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Upstream answered; a 429 or 5xx is also a failure (see [`Health::failed`]).
    pub fn answered(&self) {
        self.update(|s| {
            s.last_contact = Some(SystemTime::now());
            s.failing = false;
        });
    }

    pub fn failed(&self, why: &str) {
        self.update(|s| {
            s.last_error = Some((SystemTime::now(), why.to_owned()));
            s.failing = true;
        });
    }

    /// The report of this upstream, without its cache's figures.
    pub fn status(&self, name: &str, url: &str) -> UpstreamStatus {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let state = match (s.failing, s.last_contact, &s.last_error) {
            (true, _, _) => "Failing",
            (false, None, None) => "Unknown",
            _ => "Ok",
        };
        UpstreamStatus {
            name: name.to_owned(),
            url: url.to_owned(),
            state: state.to_owned(),
            last_contact: s.last_contact.map(rfc3339),
            last_error_time: s.last_error.as_ref().map(|(at, _)| rfc3339(*at)),
            last_error: s.last_error.map(|(_, why)| why),
            ..UpstreamStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_that_of_the_last_request() {
        let health = Health::default();
        assert_eq!(health.status("docker.io", "u").state, "Unknown");
        health.failed("upstream docker.io is unreachable: refused");
        let status = health.status("docker.io", "u");
        assert_eq!(status.state, "Failing");
        assert!(status.last_contact.is_none() && status.last_error_time.is_some());
        health.answered();
        let status = health.status("docker.io", "u");
        assert_eq!(status.state, "Ok");
        // The last failure stays on record, with its time.
        assert_eq!(
            status.last_error.as_deref(),
            Some("upstream docker.io is unreachable: refused")
        );
        assert!(status.last_contact.unwrap().ends_with('Z'));
    }
}
