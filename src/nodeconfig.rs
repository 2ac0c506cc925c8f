//! `berth node-config`: what the optional DaemonSet runs on every node. It writes
//! containerd's `certs.d/HOST/hosts.toml` (the registry host configuration that
//! containerd reads when its CRI `config_path` points at certs.d), so that the
//! kubelet pulls `localhost:32000/…` over plain HTTP from the NodePort, as
//! MicroK8s ships it:
//!
//! ```toml
//! server = "http://localhost:32000"
//!
//! [host."http://localhost:32000"]
//!   capabilities = ["pull", "resolve"]
//! ```
//!
//! The file is written atomically (temp file, fsync, rename), then the process
//! stays and puts it back if it is changed or removed, until it is stopped.
//! containerd reads hosts.toml on every pull, so no restart is needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the file is checked once written.
pub const RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct NodeConfigArgs {
    /// containerd's certs.d folder (its CRI registry config_path), as mounted in the pod
    #[arg(long, value_name = "DIR", default_value = "/etc/containerd/certs.d")]
    pub certs_dir: PathBuf,
    /// The registry host the kubelet pulls from
    #[arg(long, value_name = "HOST:PORT", default_value = "localhost:32000")]
    pub host: String,
    /// Write the file once and exit instead of keeping it in place
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("{0:?} is not a registry host: HOST:PORT with no '/'")]
    Host(String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, #[source] std::io::Error),
}

/// The hosts.toml of a registry served over plain HTTP at `host`.
pub fn hosts_toml(host: &str) -> String {
    format!(
        "# Written by berth node-config: pull {host} over plain HTTP (the registry's NodePort).\n\
         server = \"http://{host}\"\n\
         \n\
         [host.\"http://{host}\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// Writes `certs_dir/host/hosts.toml` unless it already holds the right content;
/// returns whether it wrote.
pub fn ensure(certs_dir: &Path, host: &str) -> Result<bool, NodeConfigError> {
    if host.is_empty() || host.contains(['/', '\\']) || host.starts_with('.') {
        return Err(NodeConfigError::Host(host.to_string()));
    }
    let dir = certs_dir.join(host);
    let path = dir.join("hosts.toml");
    let content = hosts_toml(host);
    if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    let failed = |e| NodeConfigError::Write(path.clone(), e);
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let temp = dir.join(".hosts.toml.tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(failed)?;
    Ok(true)
}

/// Writes the file, then (unless `--once`) keeps it in place until SIGTERM.
pub async fn run(args: NodeConfigArgs) -> Result<(), NodeConfigError> {
    let path = args.certs_dir.join(&args.host).join("hosts.toml");
    ensure(&args.certs_dir, &args.host)?;
    tracing::info!(path = %path.display(), "hosts.toml in place");
    if args.once {
        return Ok(());
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| NodeConfigError::Write(path.clone(), e))?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        // A failure to rewrite is logged, not fatal: the file may come back, and a
        // crash loop would not help the node.
        match ensure(&args.certs_dir, &args.host) {
            Ok(true) => tracing::info!(path = %path.display(), "hosts.toml put back"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot put hosts.toml back"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_what_containerd_expects() {
        let text = hosts_toml("localhost:32000");
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["server"].as_str(), Some("http://localhost:32000"));
        let host = &parsed["host"]["http://localhost:32000"];
        let capabilities: Vec<&str> = host["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(capabilities, ["pull", "resolve"]);
        assert_eq!(parsed.len(), 2, "nothing else: {text}");
    }

    #[test]
    fn ensure_writes_once_and_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure(dir.path(), "localhost:32000").unwrap());
        let path = dir.path().join("localhost:32000/hosts.toml");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            hosts_toml("localhost:32000")
        );
        assert!(
            !ensure(dir.path(), "localhost:32000").unwrap(),
            "already right"
        );
        std::fs::write(&path, "server = \"https://elsewhere\"\n").unwrap();
        assert!(ensure(dir.path(), "localhost:32000").unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            hosts_toml("localhost:32000")
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["hosts.toml"]);
    }

    #[test]
    fn a_host_cannot_reach_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../etc", "a/b", ".."] {
            assert!(ensure(dir.path(), bad).is_err(), "{bad}");
        }
    }
}
