//! The process's TLS crypto provider: ring, which serving TLS uses too.
//! reqwest is built without a provider of its own (its default, aws-lc-rs,
//! would need a C toolchain in every build), so every HTTP client of the
//! process finds this one, installed once at start-up.

/// Installs ring as the process's default provider; a second call, or one
/// after another provider was installed, leaves things as they are.
pub fn install_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
