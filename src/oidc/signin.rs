//! From a token response to an identity, without I/O.
//!
//! A [`SignIn`] is a small machine: it verifies the ID token and answers what it needs next,
//! [`Next::FetchKeys`] (an unknown `kid`: the provider rotated its keys; asked at most once),
//! [`Next::FetchGroups`] (Entra group overage: the groups are in Microsoft Graph), or
//! [`Next::Done`] with the identity. The caller (the transport's driver) makes the request and
//! feeds the answer back. Time comes in through [`Expect::now`].

use super::idtoken::KeySet as JwkSet;

use super::idtoken::{self, Expect, TokenError};
use crate::identity::{Identity, PROVIDER_SID};

/// Allowed clock skew for ID tokens, in seconds.
pub(crate) const LEEWAY: u64 = 120;

/// The claim kept for `logout_hint` at sign-out (Entra's optional `login_hint`).
pub(crate) const LOGIN_HINT: &str = "login_hint";

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
    /// A refreshed ID token names another user than the session's (OpenID Connect Core 12.2:
    /// `sub`, and on Entra `tid`/`oid`, must stay the same).
    #[error("the refreshed ID token is for another user")]
    OtherUser,
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
    /// On refresh: the session's user, whom the new token must name again.
    same_user: Option<&'a Identity>,
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
            same_user: None,
        })
    }

    /// A refresh: the new ID token must name this user (same subject and tenant), or the
    /// session ends.
    pub fn refreshing(mut self, user: &'a Identity) -> Self {
        self.same_user = Some(user);
        self
    }

    /// Verify the ID token against the keys the caller has.
    pub fn start(&mut self, keys: &JwkSet) -> Result<Next, SignInError> {
        match idtoken::verify(&self.id_token, keys, &self.expect) {
            Err(TokenError::UnknownKey) if !self.refetched => {
                self.refetched = true;
                Ok(Next::FetchKeys)
            }
            Err(e) => Err(e.into()),
            Ok(claims) => self.verified(&claims),
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
    fn verified(&mut self, claims: &idtoken::Claims) -> Result<Next, SignInError> {
        let mut identity = claims.identity(self.expect.entra, self.expect.allowed_tenants, self.extra_claims);
        if let Some(old) = self.same_user {
            if old.subject != identity.subject || old.tenant != identity.tenant {
                return Err(SignInError::OtherUser);
            }
        }
        // Entra's optional `login_hint` claim is what its logout takes as `logout_hint`.
        if let Some(hint) = claims
            .extra
            .get(LOGIN_HINT)
            .and_then(|v| v.as_str())
            .filter(|h| h.len() <= MAX_LOGIN_HINT)
        {
            identity.claims.insert(LOGIN_HINT.into(), hint.into());
        }
        // The provider's session id, for its logout (back-channel and front-channel); a
        // refreshed ID token without one keeps the session's.
        let sid = claims
            .extra
            .get("sid")
            .and_then(|v| v.as_str())
            .filter(|s| s.len() <= MAX_LOGIN_HINT);
        match (sid, self.same_user.and_then(|o| o.claims.get(PROVIDER_SID))) {
            (Some(sid), _) => {
                identity.claims.insert(PROVIDER_SID.into(), sid.into());
            }
            (None, Some(old)) => {
                identity.claims.insert(PROVIDER_SID.into(), old.clone());
            }
            (None, None) => {}
        }
        if !claims.groups_overage() {
            return Ok(Next::Done(Box::new(identity)));
        }
        Ok(match self.access_token.take() {
            Some(access_token) => {
                self.pending = Some(identity);
                Next::FetchGroups { access_token }
            }
            None => {
                identity.groups.clear();
                Next::Done(Box::new(identity))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::oidc::idtoken::IssuerRule;

    use crate::oidc::testkeys::{KEY_A, KEY_B, NOW, TENANT, jwks as keys};

    fn token(oid: &str, key: &[u8], kid: &str, extra: serde_json::Value) -> String {
        let mut c = json!({
            "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            "sub": "sub-1", "aud": "client-1", "exp": NOW + 3600, "iat": NOW, "tid": TENANT, "oid": oid,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        encode(&h, &c, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
    }

    fn run(id_token: &str, access: Option<&str>, same: Option<&Identity>) -> Result<Next, SignInError> {
        let issuer = IssuerRule::from_discovery("https://login.microsoftonline.com/{tenantid}/v2.0");
        let tenants = vec![TENANT.to_string()];
        let expect = Expect {
            issuer: &issuer,
            client_id: "client-1",
            nonce: None,
            now: NOW,
            leeway: LEEWAY,
            allowed_tenants: &tenants,
            entra: true,
        };
        let mut s = SignIn::new(Some(id_token), access, expect, &[])?;
        if let Some(u) = same {
            s = s.refreshing(u);
        }
        s.start(&keys("a"))
    }

    fn done(n: Next) -> Identity {
        match n {
            Next::Done(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refresh_with_an_id_token_for_another_user_ends_the_session() {
        let alice = done(run(&token("oid-alice", KEY_A, "key-a", json!({})), None, None).unwrap());
        let same = run(&token("oid-alice", KEY_A, "key-a", json!({})), None, Some(&alice));
        assert_eq!(done(same.unwrap()).subject, "oid-alice");
        let other = run(
            &token("oid-mallory", KEY_A, "key-a", json!({})),
            None,
            Some(&alice),
        );
        assert_eq!(other.unwrap_err(), SignInError::OtherUser);
    }

    #[test]
    fn unknown_key_asks_for_the_keys_once() {
        let issuer = IssuerRule::from_discovery("https://login.microsoftonline.com/{tenantid}/v2.0");
        let t = token("oid-1", KEY_B, "key-b", json!({}));
        let mut s = SignIn::new(Some(&t), None, expect_clone(&issuer), &[]).unwrap();
        assert!(matches!(s.start(&keys("a")), Ok(Next::FetchKeys)));
        // Still unknown after the refetch: refused, not asked again.
        assert_eq!(
            s.keys(Some(&keys("a"))).unwrap_err(),
            SignInError::Token(TokenError::UnknownKey)
        );
        let mut s2 = SignIn::new(Some(&t), None, expect_clone(&issuer), &[]).unwrap();
        assert!(matches!(s2.start(&keys("a")), Ok(Next::FetchKeys)));
        assert!(matches!(s2.keys(Some(&keys("ab"))), Ok(Next::Done(_))));
    }

    fn expect_clone(issuer: &IssuerRule) -> Expect<'_> {
        Expect {
            issuer,
            client_id: "client-1",
            nonce: None,
            now: NOW,
            leeway: LEEWAY,
            allowed_tenants: &[],
            entra: true,
        }
    }

    #[test]
    fn group_overage_asks_graph_and_a_graph_failure_leaves_no_groups() {
        let overage = json!({"groups": ["g-in-token"], "_claim_names": {"groups": "src1"}});
        let t = token("oid-1", KEY_A, "key-a", overage);
        match run(&t, Some("access-token"), None).unwrap() {
            Next::FetchGroups { access_token } => assert_eq!(access_token, "access-token"),
            other => panic!("{other:?}"),
        }
        // Without an access token Graph cannot be asked: no groups, so group rules deny.
        assert!(done(run(&t, None, None).unwrap()).groups.is_empty());
    }
}
