//! The object store a URL names: `s3://BUCKET[/PREFIX]` (AWS and every store
//! that speaks S3: MinIO, Ceph RGW, Garage...), `az://CONTAINER[/PREFIX]` and
//! `gs://BUCKET[/PREFIX]`, with the object_store crate's options
//! (`endpoint=http://minio:9000`, `region=eu-west-1`, ...) and credentials from
//! the usual environment (`AWS_ACCESS_KEY_ID`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `GOOGLE_SERVICE_ACCOUNT`, ...).
//!
//! Requests go through berth's own HTTP client: rustls on ring with Mozilla's
//! roots, as for upstream registries (the image holds no system certificates).

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore};
use std::sync::Arc;
use std::time::Duration;

/// Where a store lives in a bucket, as `berth serve --storage` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    pub url: String,
    /// The crate's options, `KEY=VALUE`.
    pub options: Vec<(String, String)>,
    /// Answer a blob GET with a redirect to a signed URL of the object
    /// (`--storage-redirect`), so that clients fetch it from the store.
    pub redirect: bool,
}

/// A bucket, as the store's driver takes it.
pub struct Connected {
    /// The objects under the prefix.
    pub store: Arc<dyn ObjectStore>,
    /// Signs URLs of the whole bucket, so keys get the prefix first.
    pub signer: Arc<dyn Signer>,
    /// The prefix, without slashes at its ends ("" for none).
    pub prefix: String,
}

/// Why a bucket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("--storage {0}: the URL must be s3://, az:// or gs:// BUCKET[/PREFIX]")]
    Scheme(String),
    #[error("--storage-option {0}: {1}")]
    Option(String, String),
    #[error("--storage {0}: {1}")]
    Build(String, object_store::Error),
}

/// The client of every request to the store.
#[derive(Debug)]
struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::tls::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "berth",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// Builds the store `config` names. Nothing is sent yet.
pub fn connect(config: &BucketConfig) -> Result<Connected, BucketError> {
    let url = config.url.as_str();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| BucketError::Scheme(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(BucketError::Scheme(url.to_owned()));
    }
    let bucket_url = format!("{scheme}://{bucket}");
    let mut options = config.options.clone();
    // An endpoint given over plain HTTP (a MinIO in the cluster) is meant.
    if options
        .iter()
        .any(|(k, v)| k.ends_with("endpoint") && v.starts_with("http://"))
        && !options.iter().any(|(k, _)| k.ends_with("allow_http"))
    {
        options.push(("allow_http".into(), "true".into()));
    }
    let failed = |e| BucketError::Build(url.to_owned(), e);
    fn both<S: ObjectStore + Signer>(s: S) -> (Arc<dyn ObjectStore>, Arc<dyn Signer>) {
        let s = Arc::new(s);
        (s.clone(), s)
    }
    let (store, signer) = match scheme {
        "s3" | "s3a" => {
            let mut builder = AmazonS3Builder::from_env()
                .with_url(&bucket_url)
                .with_http_connector(Connector);
            for (key, value) in &options {
                let parsed: AmazonS3ConfigKey = key.parse().map_err(|e: object_store::Error| {
                    BucketError::Option(key.clone(), e.to_string())
                })?;
                builder = builder.with_config(parsed, value);
            }
            both(builder.build().map_err(failed)?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_url(&bucket_url)
                .with_http_connector(Connector);
            for (key, value) in &options {
                let parsed: AzureConfigKey = key.parse().map_err(|e: object_store::Error| {
                    BucketError::Option(key.clone(), e.to_string())
                })?;
                builder = builder.with_config(parsed, value);
            }
            both(builder.build().map_err(failed)?)
        }
        "gs" => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_url(&bucket_url)
                .with_http_connector(Connector);
            for (key, value) in &options {
                let parsed: GoogleConfigKey = key.parse().map_err(|e: object_store::Error| {
                    BucketError::Option(key.clone(), e.to_string())
                })?;
                builder = builder.with_config(parsed, value);
            }
            both(builder.build().map_err(failed)?)
        }
        _ => return Err(BucketError::Scheme(url.to_owned())),
    };
    let prefix = prefix.trim_matches('/').to_owned();
    Ok(Connected {
        store: if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix.as_str()))
        },
        signer,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, options: &[(&str, &str)]) -> BucketConfig {
        BucketConfig {
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            redirect: false,
        }
    }

    #[test]
    fn urls_and_options_are_checked_before_anything_is_sent() {
        let minio = [
            ("endpoint", "http://minio:9000"),
            ("region", "us-east-1"),
            ("access_key_id", "a"),
            ("secret_access_key", "s"),
        ];
        let bucket = connect(&config("s3://registry/team/berth", &minio)).unwrap();
        assert!(
            bucket.store.to_string().contains("team/berth"),
            "{}",
            bucket.store
        );
        assert_eq!(bucket.prefix, "team/berth");
        assert!(connect(&config("s3://registry", &minio)).is_ok());
        for bad in ["registry", "ftp://registry", "s3://", "s3:///prefix"] {
            assert!(
                matches!(connect(&config(bad, &minio)), Err(BucketError::Scheme(_))),
                "{bad}"
            );
        }
        let typo = connect(&config("s3://registry", &[("endpont", "http://x")]));
        assert!(matches!(typo, Err(BucketError::Option(k, _)) if k == "endpont"));
    }
}
