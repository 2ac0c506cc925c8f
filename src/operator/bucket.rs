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
    /// The endpoint as the spec gives it, and whether the bucket goes into
    /// its host (S3's `pathStyle: false`).
    pub endpoint: Option<(String, bool)>,
    /// The registry's environment variables taken from the credentials
    /// Secret, each from the key of the same name. Only these: a key such
    /// as BERTH_ANONYMOUS_PULL must not reach the registry from a Secret
    /// that is only meant to hold credentials.
    pub variables: &'static [&'static str],
    /// The sets of them that are enough, one of which the Secret must hold
    /// whole (Azure takes a key, a SAS, a token or a service principal).
    pub enough: &'static [&'static [&'static str]],
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
            endpoint: s3.endpoint.clone().map(|e| (e, !s3.path_style)),
            variables: S3_VARIABLES,
            enough: &[&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]],
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
            endpoint: azure.endpoint.clone().map(|e| (e, false)),
            variables: AZURE_VARIABLES,
            enough: &[
                &["AZURE_STORAGE_ACCOUNT_KEY"],
                &["AZURE_STORAGE_SAS_KEY"],
                &["AZURE_STORAGE_TOKEN"],
                &["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"],
            ],
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
        endpoint: None,
        variables: GCS_VARIABLES,
        enough: &[GCS_VARIABLES],
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
        if let Some((endpoint, hosted)) = &self.endpoint {
            let url = reqwest::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            let Some(url) = url else {
                return Err(format!(
                    "{field}: endpoint {endpoint:?} is not an http:// or https:// URL with a host"
                ));
            };
            let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
            if *hosted && host.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!(
                    "{field}: pathStyle false puts the bucket into the endpoint's host name, and {endpoint:?} has none"
                ));
            }
        }
        for (key, value) in &self.config.options {
            // `--storage-option` splits at commas, so a value cannot hold one.
            if value.is_empty() || value.contains([',', ' ', '\n']) {
                return Err(format!(
                    "{field}: {key} {value:?} must be non-empty, without commas or spaces"
                ));
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
        if self
            .enough
            .iter()
            .any(|set| set.iter().all(|v| keys.contains(v)))
        {
            return Ok(());
        }
        let secret = self.credentials_secret.as_deref().unwrap_or_default();
        let sets: Vec<String> = self.enough.iter().map(|set| set.join(" and ")).collect();
        let (keys, wanted) = match sets.as_slice() {
            [one] if self.enough[0].len() == 1 => ("the key", one.clone()),
            [one] => ("the keys", one.clone()),
            many => ("the keys", many.join(", or ")),
        };
        Err(format!(
            "{}: Secret {secret} needs {keys} {wanted} (each becomes the registry's environment variable of that name)",
            self.field
        ))
    }

    /// Whether the registry cannot start without the variable `name` (it is
    /// in every set that is enough).
    pub fn required(&self, name: &str) -> bool {
        self.enough.iter().all(|set| set.contains(&name))
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
            (
                s3(|s| {
                    s.endpoint = Some("http://10.0.0.5:9000".into());
                    s.path_style = false;
                }),
                "host name",
            ),
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
        // A tenant alone is not a credential.
        let error = azure.check_keys(["AZURE_TENANT_ID"]).unwrap_err();
        assert!(
            error.contains("AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_SAS_KEY"),
            "{error}"
        );
        let principal = ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"];
        assert_eq!(azure.check_keys(principal), Ok(()));
        assert!(!azure.required("AZURE_STORAGE_ACCOUNT_KEY"));
        assert!(bucket.required("AWS_SECRET_ACCESS_KEY") && !bucket.required("AWS_SESSION_TOKEN"));
    }
}
