//! The Secrets: `NAME-htpasswd` (key `htpasswd`: the users' bcrypt lines, empty
//! when the registry has no users) and `NAME-admin` (key `token`: the bearer token
//! of the admin endpoints, which the GC job uses).

use super::{HTPASSWD_KEY, Settings, TOKEN_KEY, metadata, names};
use crate::operator::crd::Registry;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

pub fn htpasswd_secret(registry: &Registry, settings: &Settings) -> Secret {
    secret(
        metadata(registry, names::htpasswd(registry), true),
        HTPASSWD_KEY,
        &settings.htpasswd,
    )
}

pub fn admin_secret(registry: &Registry, settings: &Settings) -> Secret {
    secret(
        metadata(registry, names::admin(registry), true),
        TOKEN_KEY,
        &settings.admin_token,
    )
}

fn secret(
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
    value: &str,
) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: stringData is never stored, so a server-side
        // apply of it would never match what is there.
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The value of one key of a Secret, when it is there and UTF-8.
pub fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = &secret.data.as_ref()?.get(key)?.0;
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_child_meta, registry, settings};
    use super::*;

    #[test]
    fn htpasswd_holds_the_settings_content() {
        let s = Settings {
            htpasswd: "alice:$2y$10$abc\n".into(),
            ..settings()
        };
        let secret = htpasswd_secret(&registry(|_| {}), &s);
        assert_child_meta(&secret.metadata, "cache-htpasswd", true);
        assert_eq!(value(&secret, "htpasswd"), Some("alice:$2y$10$abc\n"));
        assert_eq!(secret.string_data, None);
    }

    #[test]
    fn without_users_the_htpasswd_file_is_empty() {
        let secret = htpasswd_secret(&registry(|_| {}), &settings());
        assert_eq!(value(&secret, "htpasswd"), Some(""));
    }

    #[test]
    fn admin_holds_the_token() {
        let secret = admin_secret(&registry(|_| {}), &settings());
        assert_child_meta(&secret.metadata, "cache-admin", true);
        assert_eq!(value(&secret, "token"), Some("t0ken"));
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    }
}
