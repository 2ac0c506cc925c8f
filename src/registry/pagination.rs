//! `n` and `last` for the tag list and the catalog, and the `Link` header that
//! points at the next page.

use super::errors::{ApiError, Code};
use serde::Deserialize;

/// `?n=&last=` as the query string gives them: `n` is checked by
/// [`Page::from_query`], for an OCI error rather than a generic one.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub n: Option<String>,
    pub last: Option<String>,
}

pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

impl Page {
    pub fn from_query(query: PageQuery) -> Result<Page, ApiError> {
        let n = match query.n {
            None => None,
            Some(n) => Some(n.parse().map_err(|_| {
                ApiError::new(
                    Code::PaginationNumberInvalid,
                    format!("n must be a non-negative integer, not {n:?}"),
                )
            })?),
        };
        Ok(Page {
            n,
            last: query.last,
        })
    }

    /// Takes this page out of sorted `items`; returns it and whether more follow.
    pub fn apply<T: AsRef<str>>(&self, items: impl IntoIterator<Item = T>) -> (Vec<T>, bool) {
        let mut rest = items
            .into_iter()
            .filter(|item| self.last.as_deref().is_none_or(|last| item.as_ref() > last));
        let page: Vec<T> = rest.by_ref().take(self.n.unwrap_or(usize::MAX)).collect();
        let more = !page.is_empty() && rest.next().is_some();
        (page, more)
    }

    /// `<path?n=N&last=X>; rel="next"`, when a page was cut short.
    pub fn next_link(&self, path: &str, page_last: &str) -> Option<String> {
        self.n
            .map(|n| format!("<{path}?n={n}&last={page_last}>; rel=\"next\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_after_last() {
        let page = Page {
            n: Some(2),
            last: Some("b".into()),
        };
        let (items, more) = page.apply(["a", "b", "c", "d", "e"]);
        assert_eq!((items, more), (vec!["c", "d"], true));
        let (items, more) = page.apply(["a", "b", "c"]);
        assert_eq!((items, more), (vec!["c"], false));
        let all = Page {
            n: None,
            last: None,
        };
        assert_eq!(all.apply(["a"]), (vec!["a"], false));
        assert_eq!(
            page.next_link("/v2/_catalog", "d").unwrap(),
            "</v2/_catalog?n=2&last=d>; rel=\"next\""
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any `n` and `last` a client sends is a page or a 400, and a page never
        /// holds more than `n` items, all after `last`.
        #[test]
        fn any_query_pages_or_refuses(n in "\\PC{0,12}|[0-9]{1,3}", last in "\\PC{0,8}") {
            let query = PageQuery { n: Some(n), last: Some(last.clone()) };
            if let Ok(page) = Page::from_query(query) {
                let items = ["a", "b", "c", "d"];
                let (got, _) = page.apply(items);
                prop_assert!(got.len() <= page.n.unwrap_or(usize::MAX));
                prop_assert!(got.iter().all(|i| *i > last.as_str()));
            }
        }
    }
}
