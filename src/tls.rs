//! TLS for the process's HTTP clients (`berth gc --url`, the pull-through
//! cache's upstreams): rustls on ring, which serving TLS uses too, with
//! Mozilla's roots built in. The image is the static binary alone, with no
//! system certificates to load, and reqwest is built without a crypto
//! provider of its own (its default, aws-lc-rs, needs a C toolchain).

use std::sync::Arc;
use tokio_rustls::rustls;

/// A reqwest client builder whose TLS needs nothing from the system.
pub fn client_builder() -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config)
}
