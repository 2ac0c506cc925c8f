//! The frame every page shares (head, navigation, footer), the answer a page
//! is sent as, and the pages of refusals: not found, not allowed, log in.

use super::Viewer;
use super::assets;
use crate::registry::auth::Identity;
use crate::registry::errors::{ApiError, Code};
use crate::storage::StoreError;
use maud::{DOCTYPE, Markup, html};
use warp::Rejection;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// Which part of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Repositories,
    Overview,
}

/// Only our own style sheet and script; no inline script or style, no
/// framing (a delete button in someone else's frame is a click-jacking aid).
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A whole page: `title` in the tab and as the first heading's text is the
/// caller's; `body` is the main content.
pub fn render(
    title: &str,
    section: Option<Section>,
    viewer: Option<&Viewer>,
    body: Markup,
) -> Markup {
    let nav = |this: Section, href: &str, label: &str| {
        html! {
            @if section == Some(this) {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · berth" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::url("berth.css"));
                script src=(assets::url("berth.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "berth" }
                    nav aria-label="Main" {
                        (nav(Section::Repositories, "/", "Repositories"))
                        (nav(Section::Overview, "/overview", "Overview"))
                    }
                    @if let Some(viewer) = viewer {
                        span.who {
                            @match &viewer.who {
                                Identity::User(user) => { "Signed in as " strong { (user) } }
                                Identity::Anonymous if viewer.can_log_in => { a href="/login" { "Log in" } }
                                Identity::Anonymous => {}
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
                footer { "berth " (env!("CARGO_PKG_VERSION")) " · OCI Distribution API at " code { "/v2/" } }
            }
        }
    }
}

/// `markup` as an HTML answer: never cached (a page shows rights and
/// content of the moment), never sniffed as anything else.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = Response::new(markup.into_string().into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// A page that could not be shown, and why; rendered by [`recover`].
#[derive(Clone, Debug)]
pub struct Refused {
    status: StatusCode,
    message: String,
    /// Whether to ask the browser for credentials.
    challenge: bool,
}

impl warp::reject::Reject for Refused {}

impl Refused {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refused {
        Refused {
            status,
            message: message.into(),
            challenge: false,
        }
    }

    pub fn login() -> Refused {
        Refused {
            challenge: true,
            ..Refused::new(
                StatusCode::UNAUTHORIZED,
                "Log in with a user of this registry to see it.",
            )
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found() -> Refused {
        Refused::new(StatusCode::NOT_FOUND, "There is no such page.")
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused {
            challenge: e.code() == Code::Unauthorized,
            ..Refused::new(e.status(), e.message())
        }
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        match e {
            StoreError::NameUnknown => {
                Refused::new(StatusCode::NOT_FOUND, "There is no such repository.")
            }
            StoreError::ManifestUnknown => {
                Refused::new(StatusCode::NOT_FOUND, "There is no such tag or manifest.")
            }
            other => Refused::from(ApiError::from(other)),
        }
    }
}

/// Turns a [`Refused`] into its page, and a bad method or query of a page
/// into a page too; leaves every other rejection to the API (a path that is
/// no page's, such as `/v2/…`, is only a "not found" here, which the API's
/// routes answer better).
pub async fn recover(rejection: Rejection) -> Result<Response, Rejection> {
    let refused = if let Some(refused) = rejection.find::<Refused>() {
        refused.clone()
    } else if let Some(e) = rejection.find::<ApiError>() {
        // Wrong credentials, or too many of them: the login's own answer.
        Refused::from(e.clone())
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "This page does not take that query (a page number is a number from 1).",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Refused::new(StatusCode::METHOD_NOT_ALLOWED, "This page is only read.")
    } else {
        return Err(rejection);
    };
    let title = refused
        .status
        .canonical_reason()
        .unwrap_or("Error")
        .to_owned();
    let body = html! {
        h1 { (title) }
        p { (refused.message) }
        @if refused.challenge {
            p { "Your browser asks for a user name and password; reload the page if you dismissed it." }
        } @else {
            p { a href="/" { "Back to the repositories" } }
        }
    };
    let mut response = respond(refused.status, render(&title, None, None, body));
    if refused.challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"berth\""),
        );
    }
    Ok(response)
}

/// `GET /login`: asks for credentials until the browser sends good ones,
/// then goes back to the repositories.
pub async fn login(viewer: Viewer) -> Result<Response, Rejection> {
    if viewer.who == Identity::Anonymous && viewer.can_log_in {
        return Err(Refused::login().into());
    }
    Ok(see_other("/"))
}

/// Links to the pages before and after `number` of `pages`.
pub fn pager(number: usize, pages: usize, link: impl Fn(usize) -> String) -> Markup {
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if number > 1 { a href=(link(number - 1)) rel="prev" { "← Previous" } }
                span { "Page " (number) " of " (pages) }
                @if number < pages { a href=(link(number + 1)) rel="next" { "Next →" } }
            }
        }
    }
}

/// A redirect after a form (303: the browser follows with a GET).
pub fn see_other(location: &str) -> Response {
    let mut response = respond(StatusCode::SEE_OTHER, html! {});
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
