//! From a token response to an identity, without I/O.
//!
//! A [`SignIn`] is a small machine: it verifies the ID token and answers what it needs next,
//! [`Next::FetchKeys`] (an unknown `kid`: the provider rotated its keys; asked at most once),
//! [`Next::FetchGroups`] (Entra group overage: the groups are in Microsoft Graph), or
//! [`Next::Done`] with the identity. The caller (the transport's driver) makes the request and
//! feeds the answer back. Time comes in through [`Expect::now`].

use jsonwebtoken::jwk::JwkSet;

use super::idtoken::{self, Expect, TokenError};
use crate::identity::Identity;

/// Allowed clock skew for ID tokens, in seconds.
pub const LEEWAY: u64 = 120;

/// The claim kept for `logout_hint` at sign-out (Entra's optional `login_hint`).
pub const LOGIN_HINT: &str = "login_hint";

/// The longest `login_hint` kept in a session.
const MAX_LOGIN_HINT: usize = 512;

/// Why a sign-in (or a refresh) could not produce an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The token response had no ID token.
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    /// The ID token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What the machine needs next.
#[derive(Debug)]
pub enum Next {
    /// Fetch the provider's keys again, then call [`SignIn::keys`].
    FetchKeys,
    /// Ask Microsoft Graph for the user's groups with this access token, then call
    /// [`SignIn::groups`].
    FetchGroups {
        /// The access token to present to Graph.
        access_token: String,
    },
    /// The user's identity.
    Done(Box<Identity>),
}

/// One sign-in's verification, driven by the caller.
pub struct SignIn<'a> {
    id_token: String,
    access_token: Option<String>,
    expect: Expect<'a>,
    /// Claims copied into the identity for headers.
    extra_claims: &'a [String],
    /// Whether the keys were already fetched again once.
    refetched: bool,
    /// The identity waiting for its groups.
    pending: Option<Identity>,
}

impl std::fmt::Debug for SignIn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("refetched", &self.refetched)
            .finish_non_exhaustive()
    }
}

impl<'a> SignIn<'a> {
    /// A sign-in for a token response's ID token and access token.
    pub fn new(
        id_token: Option<&str>,
        access_token: Option<&str>,
        expect: Expect<'a>,
        extra_claims: &'a [String],
    ) -> Result<Self, SignInError> {
        Ok(SignIn {
            id_token: id_token.ok_or(SignInError::NoIdToken)?.to_string(),
            access_token: access_token.map(str::to_string),
            expect,
            extra_claims,
            refetched: false,
            pending: None,
        })
    }

    /// Verify the ID token against the keys the caller has.
    pub fn start(&mut self, keys: &JwkSet) -> Result<Next, SignInError> {
        match idtoken::verify(&self.id_token, keys, &self.expect) {
            Err(TokenError::UnknownKey) if !self.refetched => {
                self.refetched = true;
                Ok(Next::FetchKeys)
            }
            Err(e) => Err(e.into()),
            Ok(claims) => Ok(self.verified(&claims)),
        }
    }

    /// The keys fetched again after [`Next::FetchKeys`] (`None`: the fetch failed or was not
    /// allowed yet; the token's key stays unknown).
    pub fn keys(&mut self, keys: Option<&JwkSet>) -> Result<Next, SignInError> {
        match keys {
            Some(k) => self.start(k),
            None => Err(TokenError::UnknownKey.into()),
        }
    }

    /// The groups from Graph after [`Next::FetchGroups`] (`None`: Graph failed). A user whose
    /// groups could not be read has none, so group rules deny; they never allow by mistake.
    pub fn groups(&mut self, groups: Option<Vec<String>>) -> Identity {
        let mut identity = self.pending.take().unwrap_or_default();
        identity.groups = groups.unwrap_or_default();
        identity
    }

    /// The identity of verified claims, or the Graph request its groups need.
    fn verified(&mut self, claims: &idtoken::Claims) -> Next {
        let mut identity = claims.identity(self.expect.allowed_tenants, self.extra_claims);
        // Entra's optional `login_hint` claim is what its logout takes as `logout_hint`.
        if let Some(hint) = claims
            .extra
            .get(LOGIN_HINT)
            .and_then(|v| v.as_str())
            .filter(|h| h.len() <= MAX_LOGIN_HINT)
        {
            identity.claims.insert(LOGIN_HINT.into(), hint.into());
        }
        if !claims.groups_overage() {
            return Next::Done(Box::new(identity));
        }
        match self.access_token.take() {
            Some(access_token) => {
                self.pending = Some(identity);
                Next::FetchGroups { access_token }
            }
            None => {
                identity.groups.clear();
                Next::Done(Box::new(identity))
            }
        }
    }
}
