//! Who sent a request, as every route that needs to know takes it.

use super::access_log::RequestUser;
use super::auth::{Auth, Identity};
use super::server::ClientAddr;
use warp::filters::BoxedFilter;
use warp::{Filter, Rejection};

/// The caller, from the Authorization header; wrong credentials are a 401 here.
pub fn identity(auth: &Auth) -> BoxedFilter<(Identity,)> {
    let auth = auth.clone();
    warp::header::optional::<String>("authorization")
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::ext::optional::<RequestUser>())
        .and_then(
            move |authorization: Option<String>,
                  client: Option<ClientAddr>,
                  user: Option<RequestUser>| {
                let auth = auth.clone();
                async move {
                    let who = auth
                        .identify(authorization.as_deref(), client.map(|c| c.0.ip()))
                        .await?;
                    if let (Some(user), Identity::User(name)) = (user, &who) {
                        user.set(name);
                    }
                    Ok::<_, Rejection>(who)
                }
            },
        )
        .boxed()
}
