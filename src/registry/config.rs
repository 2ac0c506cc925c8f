//! `berth serve` settings: flags, their `BERTH_*` environment variables, and an
//! optional YAML file for the rest. A flag or variable beats the file, which beats
//! the default; with nothing set, the registry listens on 0.0.0.0:5000 and stores
//! in ./berth-data.

use super::auth::AuthConfig;
use crate::proxy::UpstreamConfig;
use crate::storage::bucket::BucketConfig;
use crate::storage::{CacheLimit, GcOptions, RetentionRule};
use anyhow::Context;
use bytesize::ByteSize;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:5000";
pub const DEFAULT_ROOT: &str = "berth-data";
/// Enough for manifests, tags and upload state when uploads are refused.
pub const DEFAULT_MIN_FREE: ByteSize = ByteSize::mib(64);

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Folder holding the registry's data
    #[arg(long, env = "BERTH_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Keep the registry's content in an object store instead of the data
    /// folder: s3://BUCKET[/PREFIX] (AWS, MinIO, Ceph, Garage...), az://, gs://.
    /// Credentials come from the usual variables (AWS_ACCESS_KEY_ID...); the
    /// data folder then only stages files
    #[arg(long, env = "BERTH_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// An option of --storage, e.g. endpoint=http://minio:9000 or
    /// region=eu-west-1; repeat it, or separate with commas
    #[arg(
        long = "storage-option",
        env = "BERTH_STORAGE_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub storage_options: Vec<String>,
    /// With --storage: answer blob GETs with a redirect to a signed URL of
    /// the object (valid 20 minutes), so clients fetch the bytes from the
    /// store itself; they must reach it
    #[arg(long = "storage-redirect", env = "BERTH_STORAGE_REDIRECT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub storage_redirect: Option<bool>,
    /// Refuse uploads when less than this is free on the data folder's disk (e.g. 256MiB)
    #[arg(long, env = "BERTH_MIN_FREE", value_name = "SIZE")]
    pub min_free: Option<ByteSize>,
    /// htpasswd file of bcrypt users (`htpasswd -B`); without it the registry is open
    #[arg(long, env = "BERTH_HTPASSWD", value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// YAML file of per-repository rights (needs --htpasswd)
    #[arg(long, env = "BERTH_ACCESS", value_name = "FILE")]
    pub access: Option<PathBuf>,
    /// Let anyone pull; pushing and deleting still need a login
    #[arg(long, env = "BERTH_ANONYMOUS_PULL", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub anonymous_pull: Option<bool>,
    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1) instead of HTTP
    #[arg(
        long,
        env = "BERTH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "BERTH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token of the admin API (/berth/v1/, e.g. POST /berth/v1/gc)
    #[arg(long, env = "BERTH_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Garbage collection purges upload sessions idle for longer than this (e.g. 24h)
    #[arg(long, env = "BERTH_UPLOAD_MAX_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub upload_max_age: Option<Duration>,
    /// Mirror an upstream registry under NAME (a pull-through cache), e.g.
    /// docker.io=https://registry-1.docker.io; repeat it, or separate with commas
    #[arg(
        long = "proxy",
        env = "BERTH_PROXY",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub proxy: Vec<String>,
    /// Credentials of an upstream: a YAML file (username, password) or a folder
    /// of the files username and password (a mounted Secret); repeatable
    #[arg(
        long,
        env = "BERTH_PROXY_CREDENTIALS",
        value_name = "NAME=PATH",
        value_delimiter = ','
    )]
    pub proxy_credentials: Vec<String>,
    /// How long a cached tag of an upstream is trusted before it is checked
    /// there again (default 5m); repeatable
    #[arg(
        long,
        env = "BERTH_PROXY_TAG_TTL",
        value_name = "NAME=DURATION",
        value_delimiter = ','
    )]
    pub proxy_tag_ttl: Vec<String>,
    /// Cap on what is cached from an upstream (e.g. docker.io=20GiB): past
    /// it, the least recently pulled images are evicted; repeatable
    #[arg(
        long,
        env = "BERTH_PROXY_MAX_SIZE",
        value_name = "NAME=SIZE",
        value_delimiter = ','
    )]
    pub proxy_max_size: Vec<String>,
    /// With a cap, an image pulled within this long is never evicted
    /// (default 7d); repeatable
    #[arg(
        long,
        env = "BERTH_PROXY_KEEP_PULLED",
        value_name = "NAME=DURATION",
        value_delimiter = ','
    )]
    pub proxy_keep_pulled: Vec<String>,
    /// A name clients pull by (localhost:32000, registry.example.com), for
    /// the pull commands of the web UI, which also shows the one the browser
    /// used; repeat it, or separate with commas
    #[arg(
        long = "pull-name",
        env = "BERTH_PULL_NAMES",
        value_name = "HOST[:PORT]",
        value_delimiter = ','
    )]
    pub pull_names: Vec<String>,
    /// YAML file with any of the settings above (flags and variables win), and
    /// tag retention rules for garbage collection
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `storage:` in the config file: an object store's URL and options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StorageEntry {
    url: String,
    #[serde(default)]
    options: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    redirect: bool,
}

/// A retention rule as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetentionEntry {
    #[serde(with = "super::auth::access::pattern")]
    repositories: glob::Pattern,
    keep_last: Option<usize>,
    keep_within: Option<String>,
}

impl RetentionEntry {
    fn resolve(self) -> anyhow::Result<RetentionRule> {
        let keep_within = self
            .keep_within
            .map(|text| humantime::parse_duration(&text))
            .transpose()
            .with_context(|| format!("retention rule for {}: keepWithin", self.repositories))?;
        if self.keep_last.is_none() && keep_within.is_none() {
            anyhow::bail!(
                "retention rule for {} keeps nothing: give keepLast, keepWithin or both",
                self.repositories
            );
        }
        Ok(RetentionRule {
            repositories: self.repositories,
            keep_last: self.keep_last,
            keep_within,
        })
    }
}
/// An upstream of the pull-through cache as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProxyEntry {
    name: String,
    url: String,
    credentials: Option<PathBuf>,
    tag_ttl: Option<String>,
    max_size: Option<ByteSize>,
    keep_pulled: Option<String>,
}

impl ProxyEntry {
    fn resolve(self) -> anyhow::Result<UpstreamConfig> {
        let mut upstream = UpstreamConfig::new(&self.name, &self.url);
        upstream.credentials = self.credentials;
        upstream.max_size = self.max_size.map(|size| size.as_u64());
        let duration = |key: &str, text: &str| {
            humantime::parse_duration(text)
                .with_context(|| format!("proxy {}: {key} {text}", self.name))
        };
        if let Some(text) = &self.tag_ttl {
            upstream.tag_ttl = duration("tagTtl", text)?;
        }
        if let Some(text) = &self.keep_pulled {
            upstream.keep_pulled = duration("keepPulled", text)?;
        }
        Ok(upstream)
    }
}

/// The `--proxy*` flags, which beat the file's `proxy:` entries.
struct ProxyFlags {
    upstreams: Vec<String>,
    credentials: Vec<String>,
    tag_ttl: Vec<String>,
    max_size: Vec<String>,
    keep_pulled: Vec<String>,
}

/// Upstreams from the file, then from the flags: `--proxy NAME=URL` naming an
/// upstream of the file gives it a new URL and keeps its other settings;
/// the other `--proxy-*` flags set those of a named upstream.
fn upstreams(file: Vec<ProxyEntry>, flags: ProxyFlags) -> anyhow::Result<Vec<UpstreamConfig>> {
    let mut upstreams = file
        .into_iter()
        .map(ProxyEntry::resolve)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for value in flags.upstreams {
        let (name, url) = split("proxy", &value)?;
        match upstreams.iter_mut().find(|u| u.name == name) {
            Some(known) => known.url = url,
            None => upstreams.push(UpstreamConfig::new(&name, &url)),
        }
    }
    for value in flags.credentials {
        let (upstream, path) = named(&mut upstreams, "proxy-credentials", &value)?;
        upstream.credentials = Some(PathBuf::from(path));
    }
    for value in flags.tag_ttl {
        let (upstream, text) = named(&mut upstreams, "proxy-tag-ttl", &value)?;
        upstream.tag_ttl =
            humantime::parse_duration(&text).with_context(|| format!("--proxy-tag-ttl {value}"))?;
    }
    for value in flags.max_size {
        let (upstream, text) = named(&mut upstreams, "proxy-max-size", &value)?;
        let size: ByteSize = text
            .parse()
            .map_err(|e| anyhow::anyhow!("--proxy-max-size {value}: {e}"))?;
        upstream.max_size = Some(size.as_u64());
    }
    for value in flags.keep_pulled {
        let (upstream, text) = named(&mut upstreams, "proxy-keep-pulled", &value)?;
        upstream.keep_pulled = humantime::parse_duration(&text)
            .with_context(|| format!("--proxy-keep-pulled {value}"))?;
    }
    Ok(upstreams)
}

/// `NAME=VALUE` of a `--proxy*` flag.
fn split(flag: &str, value: &str) -> anyhow::Result<(String, String)> {
    match value.split_once('=') {
        Some((name, rest)) => Ok((name.to_owned(), rest.to_owned())),
        None => anyhow::bail!("--{flag} {value}: give NAME=VALUE, e.g. docker.io=…"),
    }
}

/// The upstream a `--proxy-*` flag's `NAME=VALUE` names, and the value.
fn named<'a>(
    upstreams: &'a mut [UpstreamConfig],
    flag: &str,
    value: &str,
) -> anyhow::Result<(&'a mut UpstreamConfig, String)> {
    let (name, setting) = split(flag, value)?;
    match upstreams.iter_mut().find(|u| u.name == name) {
        Some(upstream) => Ok((upstream, setting)),
        None => {
            anyhow::bail!("--{flag} {value}: no upstream {name} is configured (--proxy {name}=URL)")
        }
    }
}

/// The YAML file; unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    listen: Option<SocketAddr>,
    root: Option<PathBuf>,
    storage: Option<StorageEntry>,
    min_free: Option<ByteSize>,
    htpasswd: Option<PathBuf>,
    access: Option<PathBuf>,
    anonymous_pull: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    upload_max_age: Option<String>,
    #[serde(default)]
    retention: Vec<RetentionEntry>,
    #[serde(default)]
    proxy: Vec<ProxyEntry>,
    #[serde(default)]
    pull_names: Vec<String>,
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub root: PathBuf,
    /// The object store holding the content, if not the data folder.
    pub bucket: Option<BucketConfig>,
    pub min_free: ByteSize,
    pub auth: AuthConfig,
    /// Certificate and key, when serving TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub admin_token_file: Option<PathBuf>,
    /// What a collection does unless its request says otherwise.
    pub gc: GcOptions,
    /// The upstreams of the pull-through cache.
    pub proxy: Vec<UpstreamConfig>,
    /// Names clients pull by, for the web UI's pull commands.
    pub pull_names: Vec<String>,
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let proxy = upstreams(
            file.proxy,
            ProxyFlags {
                upstreams: self.proxy,
                credentials: self.proxy_credentials,
                tag_ttl: self.proxy_tag_ttl,
                max_size: self.proxy_max_size,
                keep_pulled: self.proxy_keep_pulled,
            },
        )?;
        Ok(ServeConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address is valid")),
            root: self
                .root
                .or(file.root)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
            bucket: bucket(
                self.storage,
                self.storage_options,
                self.storage_redirect,
                file.storage,
            )?,
            min_free: self.min_free.or(file.min_free).unwrap_or(DEFAULT_MIN_FREE),
            auth: AuthConfig {
                htpasswd: self.htpasswd.or(file.htpasswd),
                access: self.access.or(file.access),
                anonymous_pull: self.anonymous_pull.or(file.anonymous_pull).unwrap_or(false),
            },
            admin_token_file: self.admin_token_file.or(file.admin_token_file),
            gc: {
                let mut gc = gc_options(file.upload_max_age, file.retention, &proxy)?;
                gc.upload_max_age = self.upload_max_age.unwrap_or(gc.upload_max_age);
                gc
            },
            proxy,
            pull_names: if self.pull_names.is_empty() {
                file.pull_names
            } else {
                self.pull_names
            },
            tls: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    anyhow::bail!("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
                }
            },
        })
    }
}

/// The object store of `--storage` and `--storage-option` (which win), or of
/// the file's `storage:`.
fn bucket(
    url: Option<String>,
    flags: Vec<String>,
    redirect: Option<bool>,
    file: Option<StorageEntry>,
) -> anyhow::Result<Option<BucketConfig>> {
    let redirect = redirect.or(file.as_ref().map(|f| f.redirect));
    let mut options: Vec<(String, String)> = file
        .as_ref()
        .map(|f| f.options.clone().into_iter().collect())
        .unwrap_or_default();
    for flag in flags {
        let (key, value) = flag
            .split_once('=')
            .with_context(|| format!("--storage-option {flag}: expected KEY=VALUE"))?;
        options.retain(|(k, _)| k != key);
        options.push((key.to_owned(), value.to_owned()));
    }
    let Some(url) = url.or(file.map(|f| f.url)) else {
        if let Some((key, _)) = options.first() {
            anyhow::bail!("--storage-option {key}: no --storage is given");
        }
        if redirect == Some(true) {
            anyhow::bail!(
                "--storage-redirect: no --storage is given (a data folder has no URLs to sign)"
            );
        }
        return Ok(None);
    };
    Ok(Some(BucketConfig {
        url,
        options,
        redirect: redirect.unwrap_or(false),
    }))
}

/// The collection settings of a config file, for `berth gc --root`.
pub fn gc_options_from_file(path: &Path) -> anyhow::Result<GcOptions> {
    let file = read_file(path)?;
    let proxy = file
        .proxy
        .into_iter()
        .map(ProxyEntry::resolve)
        .collect::<anyhow::Result<Vec<_>>>()?;
    gc_options(file.upload_max_age, file.retention, &proxy)
}

fn gc_options(
    upload_max_age: Option<String>,
    retention: Vec<RetentionEntry>,
    proxy: &[UpstreamConfig],
) -> anyhow::Result<GcOptions> {
    let defaults = GcOptions::default();
    Ok(GcOptions {
        upload_max_age: match upload_max_age {
            Some(text) => {
                humantime::parse_duration(&text).with_context(|| format!("uploadMaxAge: {text}"))?
            }
            None => defaults.upload_max_age,
        },
        retention: retention
            .into_iter()
            .map(RetentionEntry::resolve)
            .collect::<anyhow::Result<_>>()?,
        caches: proxy
            .iter()
            .filter_map(|u| {
                Some(CacheLimit {
                    upstream: u.name.clone(),
                    max_size: u.max_size?,
                    keep_pulled: u.keep_pulled,
                })
            })
            .collect(),
        ..defaults
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            listen: listen.map(|l| l.parse().unwrap()),
            root: None,
            storage: None,
            storage_options: Vec::new(),
            storage_redirect: None,
            min_free: None,
            htpasswd: None,
            access: None,
            anonymous_pull: None,
            tls_cert: None,
            tls_key: None,
            admin_token_file: None,
            upload_max_age: None,
            proxy: Vec::new(),
            proxy_credentials: Vec::new(),
            proxy_tag_ttl: Vec::new(),
            proxy_max_size: Vec::new(),
            proxy_keep_pulled: Vec::new(),
            pull_names: Vec::new(),
            config,
        }
    }

    #[test]
    fn defaults_without_anything() {
        let c = args(None, None).resolve().unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.root, PathBuf::from(DEFAULT_ROOT));
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:6000\nroot: /data\nminFree: 1GiB\nhtpasswd: /etc/htpasswd\nanonymousPull: true\n",
        )
        .unwrap();
        let c = args(None, Some(file.clone())).resolve().unwrap();
        assert_eq!((c.listen.port(), c.root), (6000, PathBuf::from("/data")));
        assert_eq!(c.min_free, ByteSize::gib(1));
        assert_eq!(c.auth.htpasswd, Some(PathBuf::from("/etc/htpasswd")));
        assert!(c.auth.anonymous_pull);
        let c = args(Some("127.0.0.1:7000"), Some(file)).resolve().unwrap();
        assert_eq!(c.listen.port(), 7000);
    }

    #[test]
    fn object_storage_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "storage:\n  url: s3://images\n  options: {region: eu-west-1}\n  redirect: true\n",
        )
        .unwrap();
        let bucket = args(None, Some(file.clone()))
            .resolve()
            .unwrap()
            .bucket
            .unwrap();
        assert_eq!(bucket.url, "s3://images");
        assert_eq!(
            bucket.options,
            [("region".to_string(), "eu-west-1".to_string())]
        );
        assert!(bucket.redirect);
        let mut flags = args(None, Some(file));
        flags.storage_redirect = Some(false);
        assert!(!flags.resolve().unwrap().bucket.unwrap().redirect);
        // A data folder has no URLs to sign.
        let mut alone = args(None, None);
        alone.storage_redirect = Some(true);
        let err = format!("{:#}", alone.resolve().unwrap_err());
        assert!(err.contains("--storage-redirect: no --storage"), "{err}");
    }

    #[test]
    fn retention_rules_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "uploadMaxAge: 2h\nretention:\n  - repositories: \"ci/*\"\n    keepLast: 3\n    keepWithin: 7d\n",
        )
        .unwrap();
        let c = args(None, Some(file.clone())).resolve().unwrap();
        assert_eq!(c.gc.upload_max_age, Duration::from_secs(7200));
        let rule = &c.gc.retention[0];
        assert!(rule.repositories.matches("ci/app") && !rule.repositories.matches("prod/app"));
        assert_eq!(rule.keep_last, Some(3));
        assert_eq!(rule.keep_within, Some(Duration::from_secs(7 * 86400)));
        std::fs::write(&file, "retention:\n  - repositories: \"*\"\n").unwrap();
        let err = format!("{:#}", args(None, Some(file)).resolve().unwrap_err());
        assert!(err.contains("keeps nothing"), "{err}");
    }

    #[test]
    fn upstreams_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(
            &file,
            "proxy:\n  - name: docker.io\n    url: https://registry-1.docker.io\n    credentials: /etc/hub\n    tagTtl: 10m\n    maxSize: 2GiB\n",
        )
        .unwrap();
        let mut a = args(None, Some(file.clone()));
        a.proxy = vec![
            "docker.io=http://mirror:5000".into(),
            "ghcr.io=https://ghcr.io".into(),
        ];
        let c = a.resolve().unwrap();
        assert_eq!(c.proxy.len(), 2);
        let hub = &c.proxy[0];
        assert_eq!(
            (hub.name.as_str(), hub.url.as_str()),
            ("docker.io", "http://mirror:5000")
        );
        assert_eq!(hub.credentials, Some(PathBuf::from("/etc/hub")));
        assert_eq!(hub.tag_ttl, Duration::from_secs(600));
        // A cap becomes a limit of every collection the registry runs.
        assert_eq!(hub.max_size, Some(ByteSize::gib(2).as_u64()));
        assert_eq!(
            c.gc.caches,
            vec![CacheLimit {
                upstream: "docker.io".into(),
                max_size: ByteSize::gib(2).as_u64(),
                keep_pulled: crate::proxy::DEFAULT_KEEP_PULLED,
            }]
        );
        assert_eq!(
            c.proxy[1],
            UpstreamConfig::new("ghcr.io", "https://ghcr.io")
        );
        let mut a = args(None, None);
        a.proxy = vec!["docker.io".into()];
        let err = format!("{:#}", a.resolve().unwrap_err());
        assert!(err.contains("give NAME=VALUE"), "{err}");
        // The operator's way: everything as flags.
        let mut a = args(None, None);
        a.proxy = vec!["docker.io=https://registry-1.docker.io".into()];
        a.proxy_credentials = vec!["docker.io=/etc/berth/proxy/docker.io".into()];
        a.proxy_tag_ttl = vec!["docker.io=90s".into()];
        a.proxy_max_size = vec!["docker.io=500MiB".into()];
        a.proxy_keep_pulled = vec!["docker.io=2d".into()];
        let c = a.resolve().unwrap();
        assert_eq!(c.proxy[0].max_size, Some(ByteSize::mib(500).as_u64()));
        assert_eq!(c.gc.caches[0].keep_pulled, Duration::from_secs(2 * 86400));
        assert_eq!(
            c.proxy[0].credentials,
            Some(PathBuf::from("/etc/berth/proxy/docker.io"))
        );
        assert_eq!(c.proxy[0].tag_ttl, Duration::from_secs(90));
        let mut a = args(None, None);
        a.proxy = vec!["docker.io=https://registry-1.docker.io".into()];
        a.proxy_max_size = vec!["docker.io=lots".into()];
        let err = format!("{:#}", a.resolve().unwrap_err());
        assert!(err.contains("--proxy-max-size docker.io=lots"), "{err}");
        let mut a = args(None, None);
        a.proxy_tag_ttl = vec!["ghcr.io=1m".into()];
        let err = format!("{:#}", a.resolve().unwrap_err());
        assert!(err.contains("no upstream ghcr.io is configured"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.yaml");
        std::fs::write(&file, "lisen: 127.0.0.1:6000\n").unwrap();
        let err = format!("{:#}", args(None, Some(file)).resolve().unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }
}
