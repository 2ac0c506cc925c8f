//! The command line of `berth bench`: the registry to measure, which scenarios
//! to run, and the sizes and counts each one uses (defaults are the issue's
//! targets; tests pass small ones).

use std::time::Duration;

/// What `berth bench` measures; each is independent and sets up what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Push one large blob in a single PUT (POST a session, PUT ?digest= with the body)
    Push,
    /// Push one large blob in PATCH chunks, then PUT ?digest=
    PushChunked,
    /// Pull one large blob, checking every byte
    Pull,
    /// GET a manifest by tag over many keep-alive connections
    ManifestGet,
    /// HEAD a blob over many keep-alive connections
    BlobHead,
    /// Push many small blobs, one request each where the registry allows it
    SmallPush,
    /// GET the catalog of many repositories in one page
    Catalog,
    /// Pull an image straight from --upstream, many clients at once
    PullUpstream,
    /// Pull it through the cache the first time (it fetches from --upstream)
    PullThroughCold,
    /// Pull it through the cache again (from the cache's store)
    PullThroughWarm,
    /// berth's web UI: the first page of repositories, among many
    UiRepositories,
    /// berth's web UI: a search of the repositories
    UiSearch,
    /// berth's web UI: a repository's tags
    UiTags,
    /// berth's web UI: an image's page
    UiImage,
    /// berth's web UI: the overview
    UiOverview,
}

impl Scenario {
    pub const ALL: [Scenario; 15] = [
        Scenario::Push,
        Scenario::PushChunked,
        Scenario::Pull,
        Scenario::ManifestGet,
        Scenario::BlobHead,
        Scenario::SmallPush,
        Scenario::Catalog,
        Scenario::PullUpstream,
        Scenario::PullThroughCold,
        Scenario::PullThroughWarm,
        Scenario::UiRepositories,
        Scenario::UiSearch,
        Scenario::UiTags,
        Scenario::UiImage,
        Scenario::UiOverview,
    ];

    /// Whether it measures a pull-through cache, and so needs --upstream.
    pub fn needs_upstream(self) -> bool {
        matches!(
            self,
            Scenario::PullUpstream | Scenario::PullThroughCold | Scenario::PullThroughWarm
        )
    }

    /// Whether it measures berth's web UI, which other registries lack.
    pub fn is_web_ui(self) -> bool {
        matches!(
            self,
            Scenario::UiRepositories
                | Scenario::UiSearch
                | Scenario::UiTags
                | Scenario::UiImage
                | Scenario::UiOverview
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Push => "push",
            Scenario::PushChunked => "push-chunked",
            Scenario::Pull => "pull",
            Scenario::ManifestGet => "manifest-get",
            Scenario::BlobHead => "blob-head",
            Scenario::SmallPush => "small-push",
            Scenario::Catalog => "catalog",
            Scenario::PullUpstream => "pull-upstream",
            Scenario::PullThroughCold => "pull-through-cold",
            Scenario::PullThroughWarm => "pull-through-warm",
            Scenario::UiRepositories => "ui-repositories",
            Scenario::UiSearch => "ui-search",
            Scenario::UiTags => "ui-tags",
            Scenario::UiImage => "ui-image",
            Scenario::UiOverview => "ui-overview",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Registry to measure, e.g. http://127.0.0.1:5000 (plain HTTP)
    #[arg(value_name = "URL")]
    pub url: String,
    /// Basic-auth credentials for every request
    #[arg(long, env = "BERTH_BENCH_USER", value_name = "USER:PASSWORD")]
    pub user: Option<String>,
    /// A scenario to run; repeat for several (default: all, in this order:
    /// push, push-chunked, pull, manifest-get, blob-head, small-push, catalog,
    /// and with --upstream pull-upstream, pull-through-cold, pull-through-warm;
    /// the ui-* scenarios of berth's web UI only when named)
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    pub scenarios: Vec<Scenario>,
    /// Print the report as JSON on standard output instead of a table
    #[arg(long)]
    pub json: bool,
    /// Size of the large blob of push, push-chunked and pull
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub blob_size: u64,
    /// Size of each PATCH of push-chunked
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// How many times pull reads the large blob, timed, after one untimed read
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub pulls: u32,
    /// Keep-alive connections of manifest-get and blob-head
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// How long manifest-get and blob-head send requests
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Blobs pushed by small-push
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub small_count: u32,
    /// Size of each small-push blob
    #[arg(long, value_name = "SIZE", default_value = "4KiB", value_parser = parse_size)]
    pub small_size: u64,
    /// Pushes small-push keeps in flight at once (1: one after the other, like a
    /// client pushing a layer at a time)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub small_concurrency: u32,
    /// Repositories catalog creates (one page of the catalog holds them all)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub repositories: u32,
    /// Catalog requests timed (one after the other)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub catalog_requests: u32,
    /// Repositories the ui-* scenarios create
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub ui_repositories: u32,
    /// Tags in each of them (distinct manifests)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub ui_tags: u32,
    /// Page requests each ui-* scenario times (one after the other)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub ui_requests: u32,
    /// The registry that URL mirrors as a pull-through cache (plain HTTP, no
    /// login); the pull-through scenarios push their image there
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// What the cache puts before an upstream repository's name (berth:
    /// the upstream's name and a slash; distribution: nothing)
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub mirror_prefix: String,
    /// Layers of the pull-through scenarios' image
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub proxy_layers: u32,
    /// Size of each of its layers
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub proxy_layer_size: u64,
    /// Clients pulling it at once in the pull-through scenarios
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub proxy_clients: u32,
}

impl BenchArgs {
    /// The scenarios to run, in the canonical order, each once; by default
    /// all, the pull-through ones only when there is an upstream.
    pub fn selected(&self) -> Vec<Scenario> {
        Scenario::ALL
            .into_iter()
            .filter(|s| match self.scenarios.is_empty() {
                true => (!s.needs_upstream() || self.upstream.is_some()) && !s.is_web_ui(),
                false => self.scenarios.contains(s),
            })
            .collect()
    }
}

/// `1GiB`, `16MiB`, `4096`: a positive size in bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s.parse()?;
    match size.as_u64() {
        0 => Err("the size must be at least one byte".to_owned()),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }
}
