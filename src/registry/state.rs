//! What the handlers share: one value for the whole server, handed to each
//! request by one filter of routes.rs.

use super::auth::Auth;
use super::metrics::Metrics;
use crate::proxy::Proxy;
use crate::storage::{GcOptions, Store};
use std::sync::Arc;

pub struct State {
    pub store: Store,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// The registry's GC options, for what an admin request leaves out.
    pub gc_defaults: GcOptions,
    /// The pull-through cache's upstreams (none unless configured).
    pub proxy: Proxy,
    /// The names the web UI shows pull commands with (`--pull-name`).
    pub pull_names: Vec<String>,
    /// What the web UI keeps of what it read.
    pub ui: super::ui::Caches,
}

pub type Shared = Arc<State>;
