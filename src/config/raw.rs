//! The configuration file as written: every field optional where the file may leave it out,
//! unknown fields refused. [`super::validate`] turns these into typed values.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) cookie: RawCookie,
    #[serde(default)]
    pub(super) policy_files: Vec<String>,
    #[serde(default)]
    pub(super) headers: RawHeaders,
    #[serde(default)]
    pub(super) reload_interval: Option<String>,
    #[serde(default)]
    pub(super) public_url: Option<String>,
    #[serde(default)]
    pub(super) allowed_redirect_domains: Vec<String>,
    #[serde(default)]
    pub(super) oidc: Option<RawOidc>,
    #[serde(default)]
    pub(super) providers: Option<Vec<RawOidc>>,
    #[serde(default)]
    pub(super) metrics_listen: Option<String>,
    #[serde(default)]
    pub(super) ext_authz_listen: Option<String>,
    #[serde(default)]
    pub(super) ext_authz_tls: Option<RawTls>,
    #[serde(default)]
    pub(super) audit: Option<String>,
    #[serde(default)]
    pub(super) identity_jwt: Option<RawIdentityJwt>,
    #[serde(default)]
    pub(super) limits: Option<RawLimits>,
    #[serde(default)]
    pub(super) bearer: Option<RawBearer>,
    #[serde(default)]
    pub(super) session_store: Option<RawSessionStore>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: String,
    pub(super) key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessionStore {
    pub(super) redis: RawRedis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) sentinel: Option<RawSentinel>,
    #[serde(default)]
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) key_prefix: Option<String>,
    #[serde(default)]
    pub(super) cache_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSentinel {
    pub(super) master: String,
    pub(super) nodes: Vec<String>,
    #[serde(default)]
    pub(super) db: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBearer {
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) issuers: Vec<RawBearerIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBearerIssuer {
    pub(super) issuer: String,
    pub(super) jwks_url: String,
    #[serde(default)]
    pub(super) trusted_for: Vec<String>,
    #[serde(default)]
    pub(super) provider: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default)]
    pub(super) max_connections: Option<u64>,
    #[serde(default)]
    pub(super) header_read_timeout: Option<String>,
    #[serde(default)]
    pub(super) max_headers: Option<u64>,
    #[serde(default)]
    pub(super) shutdown_timeout: Option<String>,
    #[serde(default)]
    pub(super) max_policy_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentityJwt {
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) key_file: Option<String>,
    #[serde(default)]
    pub(super) lifetime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    /// The provider's name (`providers:` entries only).
    #[serde(default)]
    pub(super) name: Option<String>,
    /// What the chooser page shows (`providers:` entries only; the name by default).
    #[serde(default)]
    pub(super) display_name: Option<String>,
    pub(super) issuer: String,
    pub(super) client_id: String,
    #[serde(default)]
    pub(super) client_secret: Option<String>,
    #[serde(default)]
    pub(super) client_secret_file: Option<String>,
    #[serde(default)]
    pub(super) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) end_session: bool,
    #[serde(default)]
    pub(super) azure: Option<RawAzure>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAzure {
    #[serde(default)]
    pub(super) allowed_tenants: Option<RawTenants>,
    #[serde(default)]
    pub(super) graph_url: Option<String>,
}

/// `allowed_tenants`: a list of tenant ids, or the word `any`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTenants {
    List(Vec<String>),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCookie {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) secrets: Vec<String>,
    #[serde(default)]
    pub(super) secrets_file: Option<String>,
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) other_domains: Vec<String>,
    #[serde(default)]
    pub(super) secure: Option<bool>,
    #[serde(default)]
    pub(super) lifetime: Option<String>,
    #[serde(default)]
    pub(super) refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) email: Option<String>,
    #[serde(default)]
    pub(super) preferred_username: Option<String>,
    #[serde(default)]
    pub(super) groups: Option<String>,
    #[serde(default)]
    pub(super) roles: Option<String>,
    #[serde(default)]
    pub(super) client_id: Option<String>,
    #[serde(default)]
    pub(super) claims: BTreeMap<String, String>,
}
