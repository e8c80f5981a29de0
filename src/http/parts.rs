//! The parts of [`AppState`] that handlers take alone (axum substates, `FromRef`): a handler
//! that reads only these cannot reach the rest (the bearer verifier, the metrics, the
//! randomness). Each part is made of the state's shared handles, so taking one costs a few
//! reference-count increments.

use std::ops::Deref;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::FromRef;

use super::AppState;
use super::sessions::SessionKeeper;
use crate::clock::{Clock, Entropy};
use crate::config::Config;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::oidc::transport::{Client, Provider};
use crate::policy::PolicySet;

/// The current policies: swapped whole on reload, read without locks.
pub(crate) type Policies = Arc<ArcSwap<PolicySet>>;

/// The identity providers (`oidc:`, or `providers:` in their order; empty when none is
/// configured), and the app registrations the routes name at them.
#[derive(Clone)]
pub struct Providers {
    list: Arc<[Arc<Provider>]>,
    policy: Policies,
}

impl Deref for Providers {
    type Target = [Arc<Provider>];

    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

/// Why a sign-in cannot use the app registration it names.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No route of this provider names the client (`idp_client_id`) any more.
    #[error("no route names the app registration `{0}` for this identity provider")]
    Unknown(String),
    /// Its secret is `${{VAR}}` and the variable is not set.
    #[error("the app registration `{0}`'s secret is ${{{1}}}, which is not set")]
    SecretUnset(String, String),
}

impl Providers {
    pub(super) fn new(list: Arc<[Arc<Provider>]>, policy: Policies) -> Self {
        Providers { list, policy }
    }

    /// The provider named `name` (`""` is the one `oidc:` provider).
    pub fn named(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.config.name == name)
    }

    /// The provider an identity signed in with (its `idp`), if it is still configured.
    pub fn of(&self, identity: &Identity) -> Option<&Arc<Provider>> {
        self.named(identity.idp())
    }

    /// The client (app registration) `id` at `provider`: `""` is its own; another is a route's
    /// `idp_client_id` at that provider, with its secret (`${VAR}` read from the environment
    /// now, so a rotated secret needs no restart).
    pub fn client(&self, provider: &Provider, id: &str) -> Result<Client, ClientError> {
        if id.is_empty() {
            return Ok(provider.own_client());
        }
        let name = provider.config.name.as_str();
        let one = self.list.len() == 1;
        let policy = self.policy.load();
        let found = policy
            .routes()
            .iter()
            .find_map(|r| r.sign_in.client_at(name, one).filter(|c| c.id == id))
            .map(|c| c.secret.clone());
        let secret = found.ok_or_else(|| ClientError::Unknown(id.to_string()))?;
        let written = secret.expose();
        let secret = match written.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => crate::secret::Secret::new(v),
                _ => return Err(ClientError::SecretUnset(id.to_string(), var.to_string())),
            },
            None => secret,
        };
        Ok(Client {
            id: id.to_string(),
            secret,
        })
    }

    /// Every client id at `provider`: its own, and the routes' `idp_client_id` at it.
    pub fn client_ids(&self, provider: &Provider) -> Vec<String> {
        let name = provider.config.name.as_str();
        let one = self.list.len() == 1;
        let mut ids = vec![provider.config.client_id.clone()];
        for r in self.policy.load().routes() {
            if let Some(c) = r.sign_in.client_at(name, one) {
                if !ids.contains(&c.id) {
                    ids.push(c.id.clone());
                }
            }
        }
        ids
    }
}

/// A part of the state: a struct of some of [`AppState`]'s fields, each a shared handle, and
/// its `FromRef` (taking the part clones those handles).
macro_rules! part {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            $(pub(super) $field: $ty),*
        }

        impl FromRef<Arc<AppState>> for $name {
            fn from_ref(st: &Arc<AppState>) -> Self {
                $name { $($field: st.$field.clone()),* }
            }
        }
    };
}

part! {
    /// What sign-in reads (`/oauth2/start`, `/oauth2/callback`): everything the pipeline does
    /// but the bearer verifier. The configuration (the site, the redirect URI, the login
    /// cookies), the policies (step-up, the group names a session keeps), the providers and
    /// their clients, the sessions it opens, the clock, the randomness of state, nonce and PKCE,
    /// the sign-in counters, and the claims an identity keeps.
    SigningIn {
        config: Arc<Config>,
        policy: Policies,
        providers: Providers,
        sessions: Arc<SessionKeeper>,
        clock: Clock,
        entropy: Entropy,
        metrics: Metrics,
        extra_claims: Arc<[String]>,
    }
}

part! {
    /// What the three sign-out handlers read (`/oauth2/sign_out`, the back- and front-channel
    /// logouts): the configuration (which site the browser is on, where it may return), the
    /// providers (whose logout it is, and their clients), the sessions and the clock.
    SignOut {
        config: Arc<Config>,
        providers: Providers,
        sessions: Arc<SessionKeeper>,
        clock: Clock,
    }
}

part! {
    /// What `/oauth2/refresh` reads: the session and its provider (with the route's client), the
    /// claims a refreshed identity keeps, the policies (the group names a session keeps), the
    /// clock and the refresh counters.
    Refreshing {
        config: Arc<Config>,
        policy: Policies,
        providers: Providers,
        sessions: Arc<SessionKeeper>,
        clock: Clock,
        metrics: Metrics,
        extra_claims: Arc<[String]>,
    }
}

part! {
    /// What the hand-off between registrable domains reads (`/oauth2/handoff`, `…/issue`,
    /// `…/accept`): no provider is involved, only the sessions, the policies (which hosts may
    /// receive one), the configuration, the clock and the randomness of its codes.
    HandOff {
        config: Arc<Config>,
        policy: Policies,
        sessions: Arc<SessionKeeper>,
        clock: Clock,
        entropy: Entropy,
    }
}
