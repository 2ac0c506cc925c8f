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
    /// The bucket (or container) as the spec names it.
    pub name: String,
    /// The Secret of the credentials.
    pub credentials_secret: Option<String>,
    /// Where in the spec it is, for messages: `spec.storage.s3`.
    pub field: &'static str,
    /// The registry's environment variables taken from the credentials
    /// Secret, each from the key of the same name. Only these: a key such
    /// as BERTH_ANONYMOUS_PULL must not reach the registry from a Secret
    /// that is only meant to hold credentials.
    pub variables: &'static [&'static str],
    /// Those the Secret must hold. When empty, any one of them will do
    /// (Azure takes a key, a SAS or a service principal).
    pub required: &'static [&'static str],
}

const S3_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
const AZURE_VARIABLES: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
];
const GCS_VARIABLES: &[&str] = &["GOOGLE_SERVICE_ACCOUNT_KEY"];

/// The object store the spec names, if any. With more than one, the first of
/// s3, azure, gcs; validate.rs refuses such a spec before anything uses it.
pub fn of(storage: &StorageSpec) -> Option<Bucket> {
    if let Some(s3) = &storage.s3 {
        let mut options = Vec::new();
        match (&s3.endpoint, s3.path_style) {
            (Some(endpoint), true) => options.push(("endpoint".to_string(), endpoint.clone())),
            // object_store sends virtual-hosted requests to the endpoint as
            // it is, so the bucket goes into its host here.
            (Some(endpoint), false) => options.push((
                "endpoint".to_string(),
                hosted_endpoint(endpoint, &s3.bucket),
            )),
            (None, _) => {}
        }
        if !s3.path_style {
            options.push(("virtual_hosted_style_request".to_string(), "true".into()));
        }
        if let Some(region) = &s3.region {
            options.push(("region".to_string(), region.clone()));
        }
        return Some(Bucket {
            config: BucketConfig {
                url: url("s3", &s3.bucket, s3.prefix.as_deref()),
                options,
                redirect: s3.redirect,
            },
            name: s3.bucket.clone(),
            credentials_secret: s3.credentials_secret.clone(),
            field: "spec.storage.s3",
            variables: S3_VARIABLES,
            required: &S3_VARIABLES[..2],
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
                redirect: azure.redirect,
            },
            name: azure.container.clone(),
            credentials_secret: azure.credentials_secret.clone(),
            field: "spec.storage.azure",
            variables: AZURE_VARIABLES,
            required: &[],
        });
    }
    storage.gcs.as_ref().map(|gcs| Bucket {
        config: BucketConfig {
            url: url("gs", &gcs.bucket, gcs.prefix.as_deref()),
            options: Vec::new(),
            redirect: gcs.redirect,
        },
        name: gcs.bucket.clone(),
        credentials_secret: gcs.credentials_secret.clone(),
        field: "spec.storage.gcs",
        variables: GCS_VARIABLES,
        required: GCS_VARIABLES,
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

/// `https://s3.example.com` as `https://BUCKET.s3.example.com`.
fn hosted_endpoint(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => endpoint.to_string(),
    }
}

impl Bucket {
    /// The flags of `berth serve` that name it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--storage".to_string(), self.config.url.clone()];
        for (key, value) in &self.config.options {
            args.extend(["--storage-option".to_string(), format!("{key}={value}")]);
        }
        if self.config.redirect {
            args.push("--storage-redirect".to_string());
        }
        args
    }

    /// Why the spec's store cannot be used, as far as the spec alone tells
    /// (the pods' readiness checks tell the rest: credentials, the bucket's
    /// existence).
    pub fn check(&self) -> Result<(), String> {
        let field = self.field;
        let name = &self.name;
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "/?#\\".contains(c)) {
            return Err(format!(
                "{field}: the bucket (or container) name {name:?} must be non-empty, without spaces, '/', '?' or '#' (a folder in it is `prefix`)"
            ));
        }
        for (key, value) in &self.config.options {
            // `--storage-option` splits at commas, so a value cannot hold one.
            if value.is_empty() || value.contains([',', ' ', '\n']) {
                return Err(format!(
                    "{field}: {key} {value:?} must be non-empty, without commas or spaces"
                ));
            }
            if key == "endpoint" {
                let url = reqwest::Url::parse(value)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                if url.is_none() {
                    return Err(format!(
                        "{field}: endpoint {value:?} is not an http:// or https:// URL with a host"
                    ));
                }
            }
        }
        if self.credentials_secret.as_deref() == Some("") {
            return Err(format!("{field}: credentialsSecret is empty"));
        }
        Ok(())
    }

    /// Why the credentials Secret (its key names) will not do.
    pub fn check_keys<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Result<(), String> {
        let keys: Vec<&str> = keys.into_iter().collect();
        let ok = if self.required.is_empty() {
            self.variables.iter().any(|v| keys.contains(v))
        } else {
            self.required.iter().all(|v| keys.contains(v))
        };
        if ok {
            return Ok(());
        }
        let secret = self.credentials_secret.as_deref().unwrap_or_default();
        let wanted = if self.required.is_empty() {
            format!("one of the keys {}", self.variables.join(", "))
        } else if self.required.len() == 1 {
            format!("the key {}", self.required[0])
        } else {
            format!("the keys {}", self.required.join(" and "))
        };
        Err(format!(
            "{}: Secret {secret} needs {wanted} (each becomes the registry's environment variable of that name)",
            self.field
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
        // The bucket in the host: object_store takes the endpoint as it is.
        let hosted = s3(|s| {
            s.path_style = false;
            s.endpoint = Some("https://s3.example.com".into());
        });
        assert_eq!(
            hosted.args(),
            [
                "--storage",
                "s3://images",
                "--storage-option",
                "endpoint=https://images.s3.example.com",
                "--storage-option",
                "virtual_hosted_style_request=true"
            ]
        );
        assert_eq!(hosted.check(), Ok(()));
    }

    #[test]
    fn bad_names_and_options_are_refused() {
        for (bucket, wanted) in [
            (s3(|s| s.bucket = String::new()), "bucket"),
            (s3(|s| s.bucket = "my bucket".into()), "bucket"),
            (s3(|s| s.bucket = "images/team".into()), "prefix"),
            (s3(|s| s.endpoint = Some("minio:9000".into())), "endpoint"),
            (s3(|s| s.endpoint = Some("http://".into())), "endpoint"),
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
        let redirected = s3(|s| s.redirect = true);
        assert_eq!(
            redirected.args(),
            ["--storage", "s3://images", "--storage-redirect"]
        );
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
        let error = azure.check_keys(["BERTH_ANONYMOUS_PULL"]).unwrap_err();
        assert!(
            error.contains("one of the keys AZURE_STORAGE_ACCOUNT_KEY"),
            "{error}"
        );
    }
}
