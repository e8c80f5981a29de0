//! The identity headers forwarden sets for the upstream, with names parsed once.

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::HeaderNames;
use crate::identity::Identity;

/// The identity header names, parsed once at startup.
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    preferred_username: HeaderName,
    groups: HeaderName,
    roles: HeaderName,
    client_id: HeaderName,
    claims: Vec<(String, HeaderName)>,
    /// The signed identity JWT header, when `identity_jwt` is configured.
    pub(crate) jwt: Option<HeaderName>,
}

/// A configured header name as a static one. Cloning a name parsed at run time shares a
/// reference count between worker threads on every request; a static name clones for free.
/// The few bytes leaked here are allocated once per configuration.
fn name(s: &str) -> HeaderName {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(valid) => HeaderName::from_static(Box::leak(valid.as_str().to_owned().into_boxed_str())),
        // The config validated every name, so this fallback is never taken.
        Err(_) => HeaderName::from_static("x-auth-request-invalid"),
    }
}

impl IdentityHeaders {
    /// Parse the configured names.
    pub fn new(h: &HeaderNames, jwt: Option<&str>) -> Self {
        IdentityHeaders {
            user: name(&h.user),
            email: name(&h.email),
            preferred_username: name(&h.preferred_username),
            groups: name(&h.groups),
            roles: name(&h.roles),
            client_id: name(&h.client_id),
            claims: h.claims.iter().map(|(c, n)| (c.clone(), name(n))).collect(),
            jwt: jwt.map(name),
        }
    }

    /// The values for a user, in the order of [`IdentityHeaders::names`].
    pub fn values(&self, id: &Identity) -> Vec<HeaderValue> {
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).unwrap_or(HeaderValue::from_static(""));
        let opt = |s: Option<&String>| s.map_or(HeaderValue::from_static(""), |s| value(s));
        let mut v = vec![
            value(&id.subject),
            opt(id.email.as_ref()),
            opt(id.preferred_username.as_ref()),
            value(&id.groups.join(",")),
            value(&id.roles.join(",")),
            opt(id.client_id.as_ref()),
        ];
        v.extend(
            self.claims
                .iter()
                .map(|(c, _)| value(&id.claim_values(c).join(","))),
        );
        v
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.groups,
            &self.roles,
            &self.client_id,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(_, h)| h))
    }

    /// An allowed request's answer headers: every identity header, always present, empty when
    /// there is no value (Caddy 2.6 would otherwise forward a literal placeholder), with `id`'s
    /// values or all empty; and an empty `Cookie`, so that a cached map is answered as it is
    /// (no header added to it, nothing grown). A contract that sets headers on the upstream's
    /// request takes only the identity names from it ([`IdentityHeaders::names`]).
    pub(crate) fn map(&self, id: Option<&Identity>) -> HeaderMap {
        // The six identity headers, the claims', `Cookie`, and room for the identity JWT's
        // header too, without growing.
        let mut out = HeaderMap::with_capacity(self.claims.len() + 8);
        // The `Cookie` an HTTP answer carries when the request's cookies were forwarden's
        // session alone, or none ([`super::edge::Allowed::into_map`]).
        out.insert(COOKIE, HeaderValue::from_static(""));
        match id {
            Some(id) => {
                for (name, v) in self.names().zip(self.values(id)) {
                    out.insert(name.clone(), v);
                }
            }
            None => {
                for name in self.names() {
                    out.insert(name.clone(), HeaderValue::from_static(""));
                }
            }
        }
        out
    }
}
