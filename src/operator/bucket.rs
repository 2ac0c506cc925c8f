//! The object store a Registry's `spec.storage` names (s3, azure or gcs), as
//! the registry takes it: the `--storage` URL and `--storage-option`s of
//! `berth serve`, and the Secret whose keys become its environment.

use super::crd::StorageSpec;
use crate::storage::bucket::BucketConfig;

/// An object store of the spec, ready for the registry's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// What `berth serve --storage` and `--storage-option` get.
    pub config: BucketConfig,
    /// The Secret of the credentials, given whole as environment variables.
    pub credentials_secret: Option<String>,
    /// Where in the spec it is, for messages: `spec.storage.s3`.
    pub field: &'static str,
    /// The variables the credentials Secret must hold; any one of them will
    /// do when `any_of` (Azure takes a key, a SAS or a client secret).
    pub required_keys: &'static [&'static str],
    pub any_of: bool,
}

/// The object store the spec names, if any. With more than one, the first of
/// s3, azure, gcs; validate.rs refuses such a spec before anything uses it.
pub fn of(storage: &StorageSpec) -> Option<Bucket> {
    if let Some(s3) = &storage.s3 {
        let mut options = Vec::new();
        if let Some(endpoint) = &s3.endpoint {
            options.push(("endpoint".to_string(), endpoint.clone()));
        }
        if let Some(region) = &s3.region {
            options.push(("region".to_string(), region.clone()));
        }
        if !s3.path_style {
            options.push(("virtual_hosted_style_request".to_string(), "true".into()));
        }
        return Some(Bucket {
            config: BucketConfig {
                url: url("s3", &s3.bucket, s3.prefix.as_deref()),
                options,
            },
            credentials_secret: s3.credentials_secret.clone(),
            field: "spec.storage.s3",
            required_keys: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            any_of: false,
        });
    }
    if let Some(azure) = &storage.azure {
        let mut options = vec![("account_name".to_string(), azure.account.clone())];
        if let Some(endpoint) = &azure.endpoint {
            options.push(("endpoint".to_string(), endpoint.clone()));
        }
        return Some(Bucket {
            config: BucketConfig {
                url: url("az", &azure.container, azure.prefix.as_deref()),
                options,
            },
            credentials_secret: azure.credentials_secret.clone(),
            field: "spec.storage.azure",
            required_keys: &[
                "AZURE_STORAGE_ACCOUNT_KEY",
                "AZURE_STORAGE_SAS_KEY",
                "AZURE_CLIENT_SECRET",
                "AZURE_STORAGE_TOKEN",
            ],
            any_of: true,
        });
    }
    storage.gcs.as_ref().map(|gcs| Bucket {
        config: BucketConfig {
            url: url("gs", &gcs.bucket, gcs.prefix.as_deref()),
            options: Vec::new(),
        },
        credentials_secret: gcs.credentials_secret.clone(),
        field: "spec.storage.gcs",
        required_keys: &["GOOGLE_SERVICE_ACCOUNT_KEY"],
        any_of: false,
    })
}

fn url(scheme: &str, bucket: &str, prefix: Option<&str>) -> String {
    match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => format!("{scheme}://{bucket}/{prefix}"),
        None => format!("{scheme}://{bucket}"),
    }
}

impl Bucket {
    /// The flags of `berth serve` that name it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--storage".to_string(), self.config.url.clone()];
        for (key, value) in &self.config.options {
            args.extend(["--storage-option".to_string(), format!("{key}={value}")]);
        }
        args
    }

    /// Why the spec's store cannot be used, found without sending anything:
    /// the names, and then the registry's own reading of the URL and options.
    pub fn check(&self) -> Result<(), String> {
        let (_, rest) = self.config.url.split_once("://").unwrap_or_default();
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() || bucket.contains(char::is_whitespace) {
            return Err(format!(
                "{}: the bucket (or container) name {bucket:?} must be non-empty, without spaces or '/'",
                self.field
            ));
        }
        for (key, value) in &self.config.options {
            // `--storage-option` splits at commas, so a value cannot hold one.
            if value.is_empty() || value.contains([',', ' ', '\n']) {
                return Err(format!(
                    "{}: {key} {value:?} must be non-empty, without commas or spaces",
                    self.field
                ));
            }
            if key == "endpoint" && !value.starts_with("http://") && !value.starts_with("https://")
            {
                return Err(format!(
                    "{}: endpoint {value:?} is not an http:// or https:// URL",
                    self.field
                ));
            }
        }
        if self.credentials_secret.as_deref() == Some("") {
            return Err(format!("{}: credentialsSecret is empty", self.field));
        }
        crate::storage::bucket::connect(&self.config)
            .map(drop)
            .map_err(|e| format!("{}: {e}", self.field))
    }

    /// Why the credentials Secret (its key names) will not do.
    pub fn check_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str> + Clone,
    ) -> Result<(), String> {
        let has = |wanted: &str| keys.clone().into_iter().any(|k| k == wanted);
        let ok = if self.any_of {
            self.required_keys.iter().any(|k| has(k))
        } else {
            self.required_keys.iter().all(|k| has(k))
        };
        if ok {
            return Ok(());
        }
        let secret = self.credentials_secret.as_deref().unwrap_or_default();
        let joiner = if self.any_of { " or " } else { " and " };
        Err(format!(
            "{}: Secret {secret} needs the key{} {} (each key becomes an environment variable of the registry)",
            self.field,
            if self.required_keys.len() > 1 {
                "s"
            } else {
                ""
            },
            self.required_keys.join(joiner)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{AzureStorage, GcsStorage, S3Storage};

    fn s3(change: impl FnOnce(&mut S3Storage)) -> Bucket {
        let mut s3 = S3Storage {
            bucket: "images".into(),
            path_style: true,
            ..S3Storage::default()
        };
        change(&mut s3);
        of(&StorageSpec {
            s3: Some(s3),
            ..StorageSpec::default()
        })
        .unwrap()
    }

    #[test]
    fn no_store_without_one_in_the_spec() {
        assert_eq!(of(&StorageSpec::default()), None);
    }

    #[test]
    fn s3_flags() {
        let bucket = s3(|s| {
            s.prefix = Some("/team-a/".into());
            s.endpoint = Some("http://minio.minio.svc:9000".into());
            s.region = Some("eu-west-1".into());
            s.credentials_secret = Some("minio".into());
        });
        assert_eq!(
            bucket.args(),
            [
                "--storage",
                "s3://images/team-a",
                "--storage-option",
                "endpoint=http://minio.minio.svc:9000",
                "--storage-option",
                "region=eu-west-1"
            ]
        );
        assert_eq!(bucket.check(), Ok(()));
        let hosted = s3(|s| s.path_style = false);
        assert_eq!(
            hosted.args(),
            [
                "--storage",
                "s3://images",
                "--storage-option",
                "virtual_hosted_style_request=true"
            ]
        );
    }

    #[test]
    fn bad_names_and_options_are_refused() {
        for (bucket, wanted) in [
            (s3(|s| s.bucket = String::new()), "bucket"),
            (s3(|s| s.bucket = "my bucket".into()), "bucket"),
            (s3(|s| s.endpoint = Some("minio:9000".into())), "endpoint"),
            (s3(|s| s.region = Some("a,b".into())), "region"),
            (
                s3(|s| s.credentials_secret = Some(String::new())),
                "credentialsSecret",
            ),
        ] {
            let error = bucket.check().unwrap_err();
            assert!(
                error.starts_with("spec.storage.s3: ") && error.contains(wanted),
                "{error}"
            );
        }
    }

    #[test]
    fn azure_and_gcs_flags() {
        let azure = of(&StorageSpec {
            azure: Some(AzureStorage {
                account: "acct".into(),
                container: "images".into(),
                endpoint: Some("http://azurite:10000/acct".into()),
                ..AzureStorage::default()
            }),
            ..StorageSpec::default()
        })
        .unwrap();
        assert_eq!(
            azure.args(),
            [
                "--storage",
                "az://images",
                "--storage-option",
                "account_name=acct",
                "--storage-option",
                "endpoint=http://azurite:10000/acct"
            ]
        );
        assert_eq!(azure.check(), Ok(()));
        let gcs = of(&StorageSpec {
            gcs: Some(GcsStorage {
                bucket: "images".into(),
                prefix: Some("berth".into()),
                ..GcsStorage::default()
            }),
            ..StorageSpec::default()
        })
        .unwrap();
        assert_eq!(gcs.args(), ["--storage", "gs://images/berth"]);
    }

    #[test]
    fn the_credentials_secret_must_hold_the_variables() {
        let bucket = s3(|s| s.credentials_secret = Some("minio".into()));
        assert_eq!(
            bucket.check_keys(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
            Ok(())
        );
        let error = bucket
            .check_keys(["accesskey", "AWS_SECRET_ACCESS_KEY"])
            .unwrap_err();
        assert!(
            error.contains(
                "Secret minio needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            "{error}"
        );
        let azure = of(&StorageSpec {
            azure: Some(AzureStorage {
                account: "acct".into(),
                container: "images".into(),
                credentials_secret: Some("az".into()),
                ..AzureStorage::default()
            }),
            ..StorageSpec::default()
        })
        .unwrap();
        assert_eq!(azure.check_keys(["AZURE_STORAGE_SAS_KEY"]), Ok(()));
        assert!(azure.check_keys(["other"]).unwrap_err().contains(" or "));
    }
}
