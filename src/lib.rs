//! berth: a private OCI registry for Kubernetes clusters, and the operator that
//! runs it. One binary, several roles (`serve`, `gc`, `scrub`, `operator`, `crd`, `render`, `bench`);
//! `main.rs` is only the command line, and each role is an entry point here.

pub(crate) mod admin_client;
pub mod bench;
pub mod gc;
pub mod image;
pub mod install;
pub mod logging;
pub mod nodeconfig;
pub mod oci;
pub mod operator;
pub mod proxy;
pub mod registry;
pub mod scrub;
pub mod storage;
pub mod tls;
pub mod volume;
