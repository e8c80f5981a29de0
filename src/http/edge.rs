//! The one place where refusals and errors become HTTP responses: [`Denial`] for the auth
//! endpoints (under each proxy's contract: nginx's `auth_request` takes only 200, 401 and 403),
//! [`RouteError`] for the sign-in endpoints (400 bad request, 403 refused, 502 provider trouble,
//! 503 unavailable), and the pages both show.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ask::Seen;
use crate::identity::Identity;

/// The pipeline's one result, before any contract renders it.
pub(super) enum Answer {
    /// Let it pass, with the identity headers to set.
    Allow(Allowed),
    /// Sign in first, a bearer challenge, or refused.
    Deny(Denial),
}

impl Answer {
    /// The answer as an HTTP response under `contract` (nginx, forward-auth, Envoy's HTTP mode).
    pub(super) fn into_response(self, contract: Contract) -> Response {
        match self {
            Answer::Allow(allowed) => {
                let mut r = StatusCode::OK.into_response();
                *r.headers_mut() = allowed.into_map();
                r
            }
            Answer::Deny(d) => d.into_response(contract),
        }
    }

    /// An allowed answer with the `Cookie` header the upstream gets instead of the client's
    /// (the request's cookies without forwarden's session: [`super::cookies::upstream_cookie`]),
    /// told by the single pass over the request's headers where it can ([`Seen::upstream_cookie`]).
    pub(super) fn with_upstream_cookie(
        self,
        seen: &Seen<'_>,
        request: &HeaderMap,
        cookie_name: &str,
    ) -> Self {
        match self {
            Answer::Allow(mut a) => {
                a.cookie = Some(
                    seen.upstream_cookie(cookie_name)
                        .unwrap_or_else(|| super::cookies::upstream_cookie(request, cookie_name)),
                );
                Answer::Allow(a)
            }
            deny => deny,
        }
    }
}

/// An allowed request's identity headers: every header forwarden may set (empty when it has no
/// value) and an empty `Cookie`, as the session cache keeps them (shared, not copied, until
/// an HTTP answer needs its own map); and the signed identity JWT's header, made per request.
pub(super) struct Allowed {
    /// The session's headers ([`super::headers::IdentityHeaders::map`]).
    pub(super) headers: Arc<HeaderMap>,
    /// The identity JWT's header, with `identity_jwt`.
    pub(super) jwt: Option<(HeaderName, HeaderValue)>,
    /// The `Cookie` header for the upstream (HTTP answers); `None`: the answer carries no
    /// `Cookie` (Envoy's answers remove or replace the header themselves).
    pub(super) cookie: Option<HeaderValue>,
}

impl Allowed {
    /// As the headers of an HTTP answer (copied only when the map is shared).
    pub(super) fn into_map(self) -> HeaderMap {
        let mut map = Arc::unwrap_or_clone(self.headers);
        if let Some((name, value)) = self.jwt {
            map.insert(name, value);
        }
        // The map holds an empty `Cookie` ([`super::headers::IdentityHeaders::map`]).
        match self.cookie {
            Some(cookie) if cookie.is_empty() => {}
            Some(cookie) => {
                map.insert(axum::http::header::COOKIE, cookie);
            }
            None => {
                map.remove(axum::http::header::COOKIE);
            }
        }
        map
    }

    /// Every header, without copying: an Envoy `CheckResponse` takes the identity ones.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().chain(self.jwt.as_ref().map(|(n, v)| (n, v)))
    }
}

/// Which proxy contract the response follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// nginx `auth_request`: only 200, 401 and 403 (anything else becomes a 500 in nginx).
    Nginx,
    /// Traefik / Caddy / HAProxy: the response goes to the browser as it is.
    ForwardAuth,
}

/// A request that may not pass, and what the user is told.
#[derive(Debug)]
pub enum Denial {
    /// Not signed in. `login` is the relative login URL, `absolute` the same on the original host.
    Login {
        /// `/oauth2/start?rd=…`, URL-encoded.
        login: String,
        /// `https://host/oauth2/start?rd=…`.
        absolute: String,
        /// Redirect (browser navigation) or 401.
        navigate: bool,
    },
    /// An API client without a valid bearer token (with `bearer:` on): 401 with RFC 6750's
    /// `WWW-Authenticate`, never a redirect.
    Bearer {
        /// RFC 6750's `error` (`invalid_token`, `invalid_request`); none when no token came.
        error: Option<&'static str>,
        /// What was wrong, for `error_description`.
        description: String,
    },
    /// Signed in (or not needed) but not allowed.
    Forbidden {
        /// Who the user is, if signed in.
        user: Option<Box<Identity>>,
        /// What was refused.
        url: String,
        /// Why, for the page.
        reason: String,
        /// Whether the client wants HTML.
        html: bool,
        /// A valid bearer token that does not allow this (RFC 6750 3.1: `insufficient_scope`).
        insufficient_scope: bool,
    },
}

/// A denial rendered for one contract: what any caller (an HTTP response, Envoy's
/// `DeniedHttpResponse`) sends the client.
#[derive(Debug)]
pub struct Rendered {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// The body.
    pub body: String,
}

impl Rendered {
    /// As an HTTP response.
    pub fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        r.headers_mut().remove(header::CONTENT_TYPE);
        for (k, v) in self.headers {
            r.headers_mut().append(k, v);
        }
        r
    }
}

/// Response header carrying the login URL on a 401, for the nginx include's `error_page`.
pub const LOGIN_HEADER: &str = "x-forwarden-login";

impl Denial {
    /// Whether the client must authenticate first (gRPC `UNAUTHENTICATED`), rather than being
    /// refused (`PERMISSION_DENIED`).
    pub fn unauthenticated(&self) -> bool {
        matches!(self, Denial::Login { .. } | Denial::Bearer { .. })
    }

    /// The response under one contract.
    pub fn into_response(self, contract: Contract) -> Response {
        self.render(contract).into_response()
    }

    /// The status, headers and body under one contract (the one place they are chosen).
    pub fn render(self, contract: Contract) -> Rendered {
        let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let json = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            Denial::Login {
                login,
                absolute,
                navigate,
            } => {
                let mut r = if contract == Contract::ForwardAuth && navigate {
                    let mut headers = Vec::new();
                    if let Ok(v) = HeaderValue::from_str(&absolute) {
                        headers.push((header::LOCATION, v));
                    }
                    Rendered {
                        status: StatusCode::FOUND,
                        headers,
                        body: String::new(),
                    }
                } else {
                    let body = serde_json::json!({"error": "not signed in", "login": absolute}).to_string();
                    Rendered {
                        status: StatusCode::UNAUTHORIZED,
                        headers: vec![json],
                        body,
                    }
                };
                if let Ok(v) = HeaderValue::from_str(&login) {
                    r.headers.push((header::HeaderName::from_static(LOGIN_HEADER), v));
                }
                r.headers.push(no_store);
                r
            }
            Denial::Bearer { error, description } => {
                let challenge = match error {
                    // The description is forwarden's own text: no quote or backslash in it.
                    Some(code) => format!(
                        "Bearer realm=\"forwarden\", error=\"{code}\", error_description=\"{}\"",
                        description.replace(['"', '\\'], "'")
                    ),
                    None => "Bearer realm=\"forwarden\"".to_string(),
                };
                let body = serde_json::json!({
                    "error": error.unwrap_or("not signed in"),
                    "error_description": description,
                });
                let mut headers = vec![json];
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.push((header::WWW_AUTHENTICATE, v));
                }
                headers.push(no_store);
                Rendered {
                    status: StatusCode::UNAUTHORIZED,
                    headers,
                    body: body.to_string(),
                }
            }
            Denial::Forbidden {
                user,
                url,
                reason,
                html,
                insufficient_scope,
            } => {
                let who = user.as_ref().map(|u| {
                    u.email
                        .clone()
                        .or_else(|| u.preferred_username.clone())
                        .unwrap_or_else(|| u.subject.clone())
                });
                let (content_type, body) = if html {
                    (
                        HeaderValue::from_static("text/html; charset=utf-8"),
                        forbidden_page(who.as_deref(), &url, &reason),
                    )
                } else {
                    let body = serde_json::json!({
                        "error": "forbidden",
                        "user": who,
                        "url": url,
                        "reason": reason,
                        "sign_out": "/oauth2/sign_out",
                    });
                    (HeaderValue::from_static("application/json"), body.to_string())
                };
                let mut headers = vec![(header::CONTENT_TYPE, content_type), no_store];
                if insufficient_scope {
                    headers.push((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"forwarden\", error=\"insufficient_scope\""),
                    ));
                }
                Rendered {
                    status: StatusCode::FORBIDDEN,
                    headers,
                    body,
                }
            }
        }
    }
}

/// Why a sign-in endpoint failed, and what the user is told. Never a token, never a stack
/// trace: internals are logged where they happen.
#[derive(Debug)]
pub enum RouteError {
    /// No provider, or not discovered yet (503).
    Unavailable(String),
    /// The request itself is wrong: no trusted origin, state mismatch, expired (400).
    Bad(String),
    /// The provider said no (`error=`), or the account's tenant is not allowed (403).
    Refused(String),
    /// The provider could not be reached or answered wrongly (502).
    Provider(String),
}

impl RouteError {
    /// The result label of the logins metric.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::Unavailable(_) => "unavailable",
            RouteError::Bad(_) => "bad_request",
            RouteError::Refused(_) => "refused",
            RouteError::Provider(_) => "provider_error",
        }
    }

    /// This error for this client: a page for a browser, JSON for an API client
    /// (`Accept: application/json`).
    pub fn for_client(self, headers: &HeaderMap) -> ErrorPage {
        let json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
        ErrorPage { error: self, json }
    }
}

/// A [`RouteError`] on its way to a client.
#[derive(Debug)]
pub struct ErrorPage {
    error: RouteError,
    json: bool,
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let (status, title, text) = match self.error {
            RouteError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not available right now",
                why,
            ),
            RouteError::Bad(why) => (StatusCode::BAD_REQUEST, "Sign-in did not work", why),
            RouteError::Refused(why) => (StatusCode::FORBIDDEN, "Sign-in was refused", why),
            RouteError::Provider(why) => (
                StatusCode::BAD_GATEWAY,
                "The identity provider had a problem",
                why,
            ),
        };
        if self.json {
            let body = serde_json::json!({
                "error": title,
                "detail": text,
                "sign_in": "/oauth2/start",
                "sign_out": "/oauth2/sign_out",
            });
            return (
                status,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response();
        }
        let body = page(
            title,
            &format!(
                "<p>{}</p>\n<p><a href=\"/oauth2/start\">Sign in again</a> · <a href=\"/oauth2/sign_out\">Sign out</a></p>",
                escape(&text)
            ),
        );
        (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

/// A 302 to `to` that no cache keeps.
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// HTML-escape text for the pages.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One of forwarden's pages: never cached, never framed (a framed confirmation could be
/// clicked by a user who cannot see it).
pub fn edge_page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page(title, body),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `s` percent-encoded for a query value (every byte but letters and digits).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A small page in the house style.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
h1{{font-size:1.4em}}code{{background:#f3f3f3;padding:0 .2em}}</style></head>\n<body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title),
    )
}

/// The 403 page: what was refused, who you are, how to sign out (or, not signed in, that
/// signing in would not help: the refusal holds for everyone).
pub fn forbidden_page(who: Option<&str>, url: &str, reason: &str) -> String {
    let (who, next) = match who {
        Some(w) => (
            format!("<p>You are signed in as <b>{}</b>.</p>", escape(w)),
            "<p><a href=\"/oauth2/sign_out\">Sign out</a> to use another account, or ask the owner of this site for access.</p>",
        ),
        None => (
            "<p>This address is closed whoever signs in.</p>".to_string(),
            "<p>Ask the owner of this site for access.</p>",
        ),
    };
    page(
        "Access denied",
        &format!(
            "<p>You may not open <code>{}</code>.</p>\n{who}\n<p>{}</p>\n{next}",
            escape(url),
            escape(reason)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_page_escapes_and_explains() {
        let p = forbidden_page(
            Some("alice@contoso.com"),
            "https://app.example.com/a?<script>",
            "Your account is not on this site's access list.",
        );
        insta::assert_snapshot!(p, @r#"
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Access denied</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code{background:#f3f3f3;padding:0 .2em}</style></head>
        <body><h1>Access denied</h1>
        <p>You may not open <code>https://app.example.com/a?&lt;script&gt;</code>.</p>
        <p>You are signed in as <b>alice@contoso.com</b>.</p>
        <p>Your account is not on this site&#39;s access list.</p>
        <p><a href="/oauth2/sign_out">Sign out</a> to use another account, or ask the owner of this site for access.</p>
        </body></html>
        "#);
    }

    #[test]
    fn forbidden_page_for_an_anonymous_request_offers_no_sign_out() {
        let p = forbidden_page(
            None,
            "https://nowhere.example.com/",
            "This address is not protected by any route, so it is closed to everyone.",
        );
        let body = p.split("<body>").nth(1).unwrap_or_default();
        insta::assert_snapshot!(body, @r"
        <h1>Access denied</h1>
        <p>You may not open <code>https://nowhere.example.com/</code>.</p>
        <p>This address is closed whoever signs in.</p>
        <p>This address is not protected by any route, so it is closed to everyone.</p>
        <p>Ask the owner of this site for access.</p>
        </body></html>
        ");
    }

    #[tokio::test]
    async fn login_error_page_says_what_happened_and_what_to_do() {
        let err = || RouteError::Bad("This sign-in was not started in this browser (state mismatch).".into());
        let mut api = HeaderMap::new();
        api.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let r = err().for_client(&api).into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = err().for_client(&HeaderMap::new()).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let body_only = text.split("<body>").nth(1).unwrap_or_default();
        insta::assert_snapshot!(body_only, @r#"
        <h1>Sign-in did not work</h1>
        <p>This sign-in was not started in this browser (state mismatch).</p>
        <p><a href="/oauth2/start">Sign in again</a> · <a href="/oauth2/sign_out">Sign out</a></p>
        </body></html>
        "#);
    }
}
