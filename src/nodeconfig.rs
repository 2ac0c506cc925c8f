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
//! With `--mirror docker.io=https://registry-1.docker.io` it also writes
//! `certs.d/docker.io/hosts.toml`, which makes the registry's pull-through
//! cache the mirror of that upstream (containerd adds `?ns=docker.io` to each
//! request, which is how the registry knows the upstream), and the upstream
//! itself the fallback when the cache cannot answer:
//!
//! ```toml
//! server = "https://registry-1.docker.io"
//!
//! [host."http://localhost:32000"]
//!   capabilities = ["pull", "resolve"]
//! ```
//!
//! Each file is written atomically (temp file, fsync, rename), then the process
//! stays and puts it back if it is changed or removed, until it is stopped.
//! containerd reads hosts.toml on every pull, so no restart is needed.
//!
//! A mirror's file that names an upstream no longer given (the spec dropped
//! it) is removed when the process starts, and every mirror's file when it is
//! stopped (the DaemonSet changed or went). Left behind, it would send that
//! upstream's pulls to a registry that no longer mirrors it, which ignores
//! the `ns` it does not know, as the spec asks, and would answer from its own
//! repository of that name: whoever may push there would choose what the
//! nodes run. The registry's own file stays: a new pod writes it again.

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
    /// Also make the registry the mirror of an upstream it caches, e.g.
    /// docker.io=https://registry-1.docker.io; repeatable
    #[arg(long, value_name = "NAME=URL")]
    pub mirror: Vec<String>,
    /// Write the files once and exit instead of keeping them in place
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("{0:?} is not a registry host: HOST:PORT with no '/'")]
    Host(String),
    #[error("--mirror {0}: give NAME=URL, e.g. docker.io=https://registry-1.docker.io")]
    Mirror(String),
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

/// How a mirror's hosts.toml written for the registry at `host` begins, up to
/// the upstream's name.
fn mirror_mark(host: &str) -> String {
    format!("# Written by berth node-config for http://{host}: pull ")
}

/// The hosts.toml of upstream `url` mirrored by the registry at `host`.
pub fn mirror_toml(host: &str, name: &str, url: &str) -> String {
    format!(
        "{}{name} through its pull-through cache,\n\
         # and from {url} itself when the cache cannot answer.\n\
         server = \"{url}\"\n\
         \n\
         [host.\"http://{host}\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n",
        mirror_mark(host)
    )
}

/// Removes the mirrors' hosts.toml that node-config wrote for the registry at
/// `host` in `certs_dir`, except those of `keep`; returns the paths removed.
/// Files that other tools wrote, or that name another registry, are left be.
pub fn remove_mirrors(
    certs_dir: &Path,
    host: &str,
    keep: &[HostsFile],
) -> Result<Vec<PathBuf>, NodeConfigError> {
    let failed = |path: &Path, e| NodeConfigError::Write(path.to_owned(), e);
    let entries = match std::fs::read_dir(certs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(certs_dir, e)),
    };
    let mark = mirror_mark(host);
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(certs_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // A plain folder only: a link could lead out of certs.d.
        let folder = entry.file_type().is_ok_and(|t| t.is_dir());
        if !folder || keep.iter().any(|k| k.host == name) {
            continue;
        }
        let path = entry.path().join("hosts.toml");
        // The second form is what the first release of mirrors wrote.
        let legacy = format!(
            "# Written by berth node-config: pull {name} through the pull-through cache at http://{host},"
        );
        let ours = std::fs::read_to_string(&path).is_ok_and(|text| {
            text.starts_with(&legacy)
                || text
                    .strip_prefix(&mark)
                    .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
        });
        if !ours {
            continue;
        }
        std::fs::remove_file(&path).map_err(|e| failed(&path, e))?;
        // The folder goes too if nothing else is in it.
        let _ = std::fs::remove_dir(entry.path());
        std::fs::File::open(certs_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed(certs_dir, e))?;
        removed.push(path);
    }
    Ok(removed)
}

/// One hosts.toml to keep in place: the folder of certs.d it goes in, and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct HostsFile {
    pub host: String,
    pub content: String,
}

/// The files `args` asks for: the registry's own, then one per mirror.
pub fn files(args: &NodeConfigArgs) -> Result<Vec<HostsFile>, NodeConfigError> {
    let mut files = vec![HostsFile {
        host: args.host.clone(),
        content: hosts_toml(&args.host),
    }];
    for mirror in &args.mirror {
        let (name, url) = mirror
            .split_once('=')
            .filter(|(_, url)| url.starts_with("http://") || url.starts_with("https://"))
            .filter(|(_, url)| !url.contains(['"', '\\', '\n']))
            .ok_or_else(|| NodeConfigError::Mirror(mirror.clone()))?;
        files.push(HostsFile {
            host: name.to_owned(),
            content: mirror_toml(&args.host, name, url),
        });
    }
    Ok(files)
}

/// Writes `certs_dir/<file.host>/hosts.toml` unless it already holds the
/// right content; returns whether it wrote.
pub fn ensure(certs_dir: &Path, file: &HostsFile) -> Result<bool, NodeConfigError> {
    let host = &file.host;
    if host.is_empty() || host.contains(['/', '\\']) || host.starts_with('.') {
        return Err(NodeConfigError::Host(host.to_string()));
    }
    let dir = certs_dir.join(host);
    let path = dir.join("hosts.toml");
    if std::fs::read_to_string(&path).is_ok_and(|c| c == file.content) {
        return Ok(false);
    }
    let failed = |e| NodeConfigError::Write(path.clone(), e);
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let temp = dir.join(".hosts.toml.tmp");
    let result = (|| {
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(file.content.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(failed)?;
    Ok(true)
}

/// Writes the files, then (unless `--once`) keeps them in place until SIGTERM.
pub async fn run(args: NodeConfigArgs) -> Result<(), NodeConfigError> {
    let files = files(&args)?;
    let path = |file: &HostsFile| args.certs_dir.join(&file.host).join("hosts.toml");
    for stale in remove_mirrors(&args.certs_dir, &args.host, &files)? {
        tracing::info!(path = %stale.display(), "removed the hosts.toml of an upstream no longer mirrored");
    }
    for file in &files {
        ensure(&args.certs_dir, file)?;
        tracing::info!(path = %path(file).display(), "hosts.toml in place");
    }
    if args.once {
        return Ok(());
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| NodeConfigError::Write(path(&files[0]), e))?;
    // Stopped: the mirrors go (see the module doc); the registry's own file stays.
    let own = &files[..1];
    let stop = || {
        remove_mirrors(&args.certs_dir, &args.host, own).map(|removed| {
            for path in removed {
                tracing::info!(path = %path.display(), "removed a mirror's hosts.toml on the way out");
            }
        })
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = terminate.recv() => return stop(),
            _ = tokio::signal::ctrl_c() => return stop(),
        }
        // A failure to rewrite is logged, not fatal: the file may come back, and a
        // crash loop would not help the node.
        for file in &files {
            match ensure(&args.certs_dir, file) {
                Ok(true) => tracing::info!(path = %path(file).display(), "hosts.toml put back"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot put hosts.toml back"),
            }
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

    fn own(host: &str) -> HostsFile {
        HostsFile {
            host: host.to_owned(),
            content: hosts_toml(host),
        }
    }

    #[test]
    fn a_mirror_goes_through_the_cache_and_falls_back_to_its_upstream() {
        let args = NodeConfigArgs {
            certs_dir: PathBuf::from("/x"),
            host: "localhost:32000".into(),
            mirror: vec!["docker.io=https://registry-1.docker.io".into()],
            once: true,
        };
        let files = files(&args).unwrap();
        assert_eq!(files[0], own("localhost:32000"));
        assert_eq!(files[1].host, "docker.io");
        let parsed: toml::Table = files[1].content.parse().unwrap();
        assert_eq!(
            parsed["server"].as_str(),
            Some("https://registry-1.docker.io")
        );
        let host = &parsed["host"]["http://localhost:32000"];
        assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
        assert_eq!(parsed.len(), 2, "nothing else: {}", files[1].content);
        for bad in ["docker.io", "docker.io=ftp://x", "docker.io=http://a\"b"] {
            let args = NodeConfigArgs {
                mirror: vec![bad.into()],
                ..args.clone()
            };
            assert!(files_err(&args), "{bad}");
        }
    }

    fn files_err(args: &NodeConfigArgs) -> bool {
        matches!(files(args), Err(NodeConfigError::Mirror(_)))
    }

    #[test]
    fn ensure_writes_once_and_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = own("localhost:32000");
        assert!(ensure(dir.path(), &file).unwrap());
        let path = dir.path().join("localhost:32000/hosts.toml");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            hosts_toml("localhost:32000")
        );
        assert!(!ensure(dir.path(), &file).unwrap(), "already right");
        std::fs::write(&path, "server = \"https://elsewhere\"\n").unwrap();
        assert!(ensure(dir.path(), &file).unwrap());
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
            assert!(ensure(dir.path(), &own(bad)).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod stale_mirrors {
    use super::*;

    #[test]
    fn only_our_mirrors_of_this_registry_that_are_no_longer_asked_for_go() {
        let dir = tempfile::tempdir().unwrap();
        let host = "localhost:32000";
        let args = |mirror: &[&str]| NodeConfigArgs {
            certs_dir: dir.path().to_owned(),
            host: host.into(),
            mirror: mirror.iter().map(|m| m.to_string()).collect(),
            once: true,
        };
        let before = files(&args(&[
            "docker.io=https://registry-1.docker.io",
            "ghcr.io=https://ghcr.io",
        ]))
        .unwrap();
        for file in &before {
            ensure(dir.path(), file).unwrap();
        }
        // One the first release wrote, another registry's mirror, and a file
        // someone else wrote.
        std::fs::create_dir_all(dir.path().join("old.io")).unwrap();
        std::fs::write(
            dir.path().join("old.io/hosts.toml"),
            "# Written by berth node-config: pull old.io through the pull-through cache at http://localhost:32000,\nserver = \"https://old.io\"\n",
        )
        .unwrap();
        let other = files(&NodeConfigArgs {
            host: "localhost:32001".into(),
            ..args(&["quay.io=https://quay.io"])
        })
        .unwrap();
        ensure(dir.path(), &other[1]).unwrap();
        std::fs::create_dir_all(dir.path().join("registry.k8s.io")).unwrap();
        std::fs::write(
            dir.path().join("registry.k8s.io/hosts.toml"),
            "server = \"https://registry.k8s.io\"\n",
        )
        .unwrap();

        // ghcr.io was dropped from the spec.
        let now = files(&args(&["docker.io=https://registry-1.docker.io"])).unwrap();
        let mut removed = remove_mirrors(dir.path(), host, &now).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                dir.path().join("ghcr.io/hosts.toml"),
                dir.path().join("old.io/hosts.toml")
            ]
        );
        assert!(!dir.path().join("ghcr.io").exists());
        for kept in ["docker.io", "quay.io", "registry.k8s.io", host] {
            assert!(dir.path().join(kept).join("hosts.toml").exists(), "{kept}");
        }
        // Stopping: every mirror of this registry goes, its own file stays.
        let removed = remove_mirrors(dir.path(), host, &now[..1]).unwrap();
        assert_eq!(removed, [dir.path().join("docker.io/hosts.toml")]);
        assert!(dir.path().join(host).join("hosts.toml").exists());
        assert!(dir.path().join("quay.io/hosts.toml").exists());
    }
}
