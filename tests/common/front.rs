//! An upstream for the pull-through cache's tests: a front, in the test
//! process, before a real `berth serve`. It asks for credentials as Docker Hub
//! does (a Basic challenge, or a bearer token from its own token endpoint),
//! forwards GETs and HEADs, logs every request it is sent, and on demand
//! fails: a status, a blob cut half-way, a blob with a byte changed, a delay,
//! or gone altogether (its runtime is shut down, so its port refuses).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "upstream-secret";

/// How the front asks for credentials.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Login {
    Anonymous,
    Basic,
    /// The Docker token spec's flow, with Basic credentials at the token endpoint.
    Token,
}

/// What goes wrong, until set back to `Fault::None`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Every /v2/ request answers this status.
    Status(u16),
    /// Blob bodies stop half-way (the connection is cut).
    CutBlobs,
    /// Blob bodies have their first byte changed (same length).
    CorruptBlobs,
    /// Blob bodies are empty, with a Content-Length of 0.
    EmptyBlobs,
}

struct State {
    upstream: String,
    login: Login,
    /// The password it takes (PASSWORD until changed).
    password: Mutex<String>,
    /// Where blob GETs are sent instead (a 307), as registries send them to
    /// a storage host.
    redirect_blobs: Mutex<Option<String>>,
    fault: Mutex<Fault>,
    delay: Mutex<Duration>,
    log: Mutex<Vec<(String, String)>>,
    tokens: AtomicUsize,
    challenges: AtomicUsize,
    addr: Mutex<String>,
    http: reqwest::Client,
}

pub struct Front {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Front {
    /// A front before the registry at `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str, login: Login) -> Front {
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            login,
            password: Mutex::new(PASSWORD.to_owned()),
            redirect_blobs: Mutex::new(None),
            fault: Mutex::new(Fault::None),
            delay: Mutex::new(Duration::ZERO),
            log: Mutex::new(Vec::new()),
            tokens: AtomicUsize::new(0),
            challenges: AtomicUsize::new(0),
            addr: Mutex::new(String::new()),
            http: super::api::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        // Its own runtime, so that stopping it closes every connection too.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // Tests call this from within their own runtime, which cannot block on another.
        let _entered = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        *state.addr.lock().unwrap() = addr.to_string();
        let routes = routes(state.clone());
        runtime.spawn(warp::serve(routes).incoming(listener).run());
        Front {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, only this password is taken.
    pub fn set_password(&self, password: &str) {
        *self.state.password.lock().unwrap() = password.to_owned();
    }

    /// Blob GETs are answered `307` to `base` + their path from now on.
    pub fn redirect_blobs(&self, base: &str) {
        *self.state.redirect_blobs.lock().unwrap() = Some(base.to_owned());
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Every /v2/ request waits this long before it is forwarded.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// `(method, path)` of every /v2/ request received and not answered with
    /// a 401, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many of them were `method` on a path ending with `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p.ends_with(suffix))
            .count()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// /v2/ requests answered with a 401 (a challenge).
    pub fn challenges(&self) -> usize {
        self.state.challenges.load(Ordering::SeqCst)
    }

    /// Tokens handed out by the token endpoint.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens.load(Ordering::SeqCst)
    }

    /// Shuts the front down: its port refuses from now on.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Basic header of the credentials the front takes now.
fn basic(state: &State) -> String {
    use base64::Engine;
    let pair = format!("{USER}:{}", state.password.lock().unwrap());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn status(code: StatusCode, headers: &[(&'static str, String)], body: &str) -> Response {
    let mut response = Response::new(body.to_owned().into());
    *response.status_mut() = code;
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        h.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    response
}

fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let token_state = state.clone();
    let token = warp::path!("token")
        .and(warp::header::optional::<String>("authorization"))
        .map(move |authorization: Option<String>| {
            if authorization.as_deref() != Some(basic(&token_state).as_str()) {
                return status(
                    StatusCode::UNAUTHORIZED,
                    &[],
                    r#"{"details":"bad credentials"}"#,
                );
            }
            let n = token_state.tokens.fetch_add(1, Ordering::SeqCst) + 1;
            status(
                StatusCode::OK,
                &[],
                &format!(r#"{{"token":"T-{n}","expires_in":300}}"#),
            )
        });
    let v2 = warp::path("v2")
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .then(
            move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap| {
                let state = state.clone();
                async move { forward(&state, method, path.as_str(), &query, &headers).await }
            },
        );
    token.or(v2).unify()
}

async fn forward(
    state: &State,
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    let entry = (method.to_string(), path.to_owned());
    let response = answer(state, method, path, query, headers).await;
    let mut log = state.log.lock().unwrap();
    if response.status() == StatusCode::UNAUTHORIZED {
        state.challenges.fetch_add(1, Ordering::SeqCst);
    } else {
        log.push(entry);
    }
    drop(log);
    response
}

async fn answer(
    state: &State,
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let addr = state.addr.lock().unwrap().clone();
    match state.login {
        Login::Anonymous => {}
        Login::Basic if authorization == Some(basic(state).as_str()) => {}
        Login::Basic => {
            return status(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", r#"Basic realm="front""#.to_owned())],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"log in"}]}"#,
            );
        }
        Login::Token if authorization.is_some_and(|a| a.starts_with("Bearer T-")) => {}
        Login::Token => {
            let challenge = format!(r#"Bearer realm="http://{addr}/token",service="front.test""#);
            return status(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#,
            );
        }
    }
    let fault = *state.fault.lock().unwrap();
    if let Fault::Status(code) = fault {
        let code = StatusCode::from_u16(code).unwrap();
        return status(
            code,
            &[],
            r#"{"errors":[{"code":"UNKNOWN","message":"fault"}]}"#,
        );
    }
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let redirect = state.redirect_blobs.lock().unwrap().clone();
    if let Some(base) = redirect.filter(|_| method == Method::GET && path.contains("/blobs/")) {
        return status(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", format!("{base}{path}"))],
            "",
        );
    }

    let url = if query.is_empty() {
        format!("{}{path}", state.upstream)
    } else {
        format!("{}{path}?{query}", state.upstream)
    };
    let mut request = state.http.request(method, url);
    if let Some(accept) = headers.get("accept") {
        request = request.header("accept", accept);
    }
    let Ok(upstream) = request.send().await else {
        return status(StatusCode::BAD_GATEWAY, &[], "{}");
    };
    let code = upstream.status();
    let mut kept = HeaderMap::new();
    for name in ["content-type", "content-length", "docker-content-digest"] {
        if let Some(value) = upstream.headers().get(name) {
            kept.insert(name, value.clone());
        }
    }
    let blob = path.contains("/blobs/");
    let body = upstream.bytes().await.unwrap_or_default().to_vec();
    let mut response = match fault {
        Fault::CutBlobs if blob && body.len() > 1 => {
            let half = bytes::Bytes::from(body[..body.len() / 2].to_vec());
            let parts: Vec<Result<bytes::Bytes, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::other("cut"))];
            warp::reply::stream(futures_util::stream::iter(parts)).into_response()
        }
        Fault::CorruptBlobs if blob && !body.is_empty() => {
            let mut body = body;
            body[0] ^= 0xff;
            Response::new(body.into())
        }
        Fault::EmptyBlobs if blob => {
            kept.insert("content-length", HeaderValue::from_static("0"));
            Response::new(Vec::new().into())
        }
        _ => Response::new(body.into()),
    };
    *response.status_mut() = code;
    response.headers_mut().extend(kept);
    response
}
