//! berth: a private OCI registry for Kubernetes clusters, and the operator that
//! runs it. One binary, several roles (`serve`, `gc`, `operator`, `crd`, `render`, …);
//! `main.rs` is only the command line, and each role is an entry point here.

pub mod gc;
pub mod image;
pub mod install;
pub mod nodeconfig;
pub mod oci;
pub mod operator;
pub mod registry;
pub mod storage;
