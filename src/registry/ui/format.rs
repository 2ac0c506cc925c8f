//! How the pages write sizes, times and digests.

use crate::oci::Digest;
use maud::{Markup, html};
use std::time::{Duration, SystemTime};

/// `1.4 MiB`, with the exact count on hover.
pub fn size(bytes: u64) -> Markup {
    html! { span title=(format!("{bytes} bytes")) { (bytesize::ByteSize::b(bytes).display().iec()) } }
}

/// `sha256:0123456789ab`: enough to tell digests apart on a page; the whole
/// one is in the title and the links.
pub fn short(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{}:{}",
        digest.algorithm().as_str(),
        &hex[..hex.len().min(12)]
    )
}

/// A digest, short, with the whole of it on hover and to copy.
pub fn digest(digest: &Digest) -> Markup {
    html! { code title=(digest) { (short(digest)) } }
}

/// `3 days ago`, with the exact time for machines and on hover.
pub fn ago(at: SystemTime) -> Markup {
    let exact = humantime::format_rfc3339_seconds(at).to_string();
    let text = SystemTime::now()
        .duration_since(at)
        .map_or_else(|_| "just now".to_owned(), words);
    html! { time datetime=(exact) title=(exact) { (text) } }
}

/// How long ago, in the largest unit that is at least one.
fn words(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let units = [
        (365 * 86400, "year"),
        (30 * 86400, "month"),
        (7 * 86400, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ];
    for (length, unit) in units {
        let n = seconds / length;
        if n >= 1 {
            let plural = if n == 1 { "" } else { "s" };
            return format!("{n} {unit}{plural} ago");
        }
    }
    "just now".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_words() {
        assert_eq!(words(Duration::from_secs(5)), "just now");
        assert_eq!(words(Duration::from_secs(60)), "1 minute ago");
        assert_eq!(words(Duration::from_secs(7200 + 59)), "2 hours ago");
        assert_eq!(words(Duration::from_secs(9 * 86400)), "1 week ago");
        assert_eq!(words(Duration::from_secs(800 * 86400)), "2 years ago");
    }

    #[test]
    fn sizes_and_digests() {
        assert_eq!(
            size(1536).into_string(),
            r#"<span title="1536 bytes">1.5 KiB</span>"#
        );
        let d = Digest::sha256(b"x");
        assert_eq!(short(&d).len(), "sha256:".len() + 12);
        assert!(d.to_string().starts_with(&short(&d)));
    }
}
