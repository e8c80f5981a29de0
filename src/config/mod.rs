//! The configuration file: read raw with positions, then validated into typed values.
//!
//! `raw` holds the file as written (serde, `deny_unknown_fields`); `validate` walks it
//! beside its positioned YAML node and returns every problem at once as
//! `file:line:column: message`. Secrets can be written inline, as `${ENV_VAR}`, or read from a
//! file (`secrets_file`, one secret a line: the Docker-secrets convention); both the
//! environment and the file reader are parameters ([`Inputs`]), so [`Config::parse`] is pure.
//! Relative paths resolve against the config file's folder.
//!
//! This module depends on the modules it configures (`oidc`, `session`, `jwt`, `request`),
//! never the other way round: they take plain values.

mod raw;
pub mod report;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::diag::Diagnostic;
use crate::oidc::ProviderConfig;
use crate::secret::Secret;
use crate::session::Keys;

/// The shortest secret accepted: 32 bytes, as many as the AES-256 key derived from it.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the auth server listens.
    pub listen: SocketAddr,
    /// Peers whose forwarded headers count.
    pub trusted_proxies: Vec<IpNet>,
    /// The session cookie.
    pub cookie: CookieConfig,
    /// Policy files, resolved against the config file's folder.
    pub policy_files: Vec<PathBuf>,
    /// Identity headers sent to the upstream on allow.
    pub headers: HeaderNames,
    /// How often policy files are checked for changes.
    pub reload_interval: Duration,
    /// Central mode: the one public address of forwarden (`https://auth.example.com`), where the
    /// callback lives. Without it, each protected host serves `/oauth2/` itself.
    pub public_url: Option<url::Url>,
    /// Where redirects after login and sign-out may go besides the protected host.
    pub allowed_redirect_domains: Vec<crate::oidc::redirect::AllowedDomain>,
    /// The identity providers: the one `oidc:` (named `""`), or the named `providers:`, in
    /// the order written (the chooser page's). Empty until one is configured.
    pub providers: Vec<ProviderConfig>,
    /// Where Prometheus metrics are served (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization/Check`) on its own
    /// listener (cleartext HTTP/2), off unless set.
    pub ext_authz_listen: Option<SocketAddr>,
    /// TLS for that listener (`ext_authz_tls`): otherwise it is cleartext HTTP/2.
    pub ext_authz_tls: Option<Tls>,
    /// Which decisions get an audit log line.
    pub audit: Audit,
    /// A signed JWT for upstreams on every allowed request with a session.
    pub identity_jwt: Option<IdentityJwt>,
    /// Bounds on connections and policy files.
    pub limits: Limits,
    /// Bearer tokens from API clients (`bearer:`); without it, `Authorization` is ignored.
    pub bearer: Option<BearerConfig>,
    /// Server-side sessions (`session_store:`); without it, sessions live in the cookies.
    pub session_store: Option<RedisConfig>,
}

impl Config {
    /// The site's scheme when a request does not state one (no `X-Forwarded-Proto`, a browser
    /// that reached forwarden directly): `https` with `Secure` cookies (browsers send them only
    /// over https), `http` with `cookie.secure: false`. Every caller takes it from here
    /// (`request::Site`).
    pub fn scheme(&self) -> &'static str {
        if self.cookie.secure { "https" } else { "http" }
    }

    /// The names routes' `identity_providers` may use: the sign-in providers' (`""` for the
    /// one `oidc:` provider), and the bearer issuers' ties (or, untied, their issuer URLs).
    pub fn provider_names(&self) -> (Vec<&str>, Vec<&str>) {
        let sign_in = self.providers.iter().map(|p| p.name.as_str()).collect();
        let bearer = self
            .bearer
            .iter()
            .flat_map(|b| &b.issuers)
            .map(|i| i.provider.as_deref().unwrap_or(i.issuer.as_str()))
            .collect();
        (sign_in, bearer)
    }
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The certificate chain.
    pub cert_pem: String,
    /// The private key (never printed).
    pub key_pem: Secret,
}

/// Sessions on Redis or Valkey (`session_store.redis`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Where: one server, or the master Sentinel names.
    pub server: RedisServer,
    /// The password (or an ACL user's, with the user in the URL).
    pub password: Option<Secret>,
    /// Prefix of every key and channel.
    pub key_prefix: String,
    /// How long a replica trusts a session it read without asking Redis again (revocations
    /// reach it sooner, through the channel).
    pub cache_ttl: Duration,
}

/// One Redis server or a Sentinel-managed master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServer {
    /// `redis://…` or `rediss://…` (TLS).
    Url(String),
    /// The master named `master`, found through these Sentinels (`host:port`), database `db`.
    Sentinel {
        /// The master's name in Sentinel.
        master: String,
        /// Sentinel addresses.
        nodes: Vec<String>,
        /// The database number.
        db: i64,
    },
}

/// Which bearer tokens are accepted (`bearer:` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerConfig {
    /// The accepted audiences (for Entra the API's application ID URI and its client id).
    pub audiences: Vec<String>,
    /// Issuers trusted besides the `oidc:` provider, each with its key set's URL.
    pub issuers: Vec<ExtraIssuer>,
}

/// An issuer trusted for bearer tokens besides the `oidc:` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraIssuer {
    /// `iss`, exactly.
    pub issuer: String,
    /// Where its signing keys are published (a JWKS document).
    pub jwks_url: String,
    /// `trusted_for: [client_id]`: its tokens' calling application (`azp`/`appid`) is the same
    /// name space as the sign-in provider's (`client_id` criteria match it as it is).
    /// Otherwise it reads `<issuer>#<azp>`.
    pub trust_client_id: bool,
    /// `trusted_for: [email]`: its tokens' verified email counts for email and domain rules.
    /// Otherwise its users have no email.
    pub trust_email: bool,
    /// The provider name its tokens count as (`provider:`): for `identity_providers` and the
    /// `idp` criterion, and its subjects read `<name>#<sub>`. Without it, the issuer URL is
    /// its name.
    pub provider: Option<String>,
}

/// Bounds on what the outside can make forwarden hold (`limits:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once on each listener; more wait to be accepted. `0` (the default):
    /// sized at start from the file-descriptor limit ([`crate::server::capacity`]).
    pub max_connections: usize,
    /// A connection that has not sent a whole request head in this time is closed (slowloris,
    /// and keep-alive connections idle between requests).
    pub header_read_timeout: Duration,
    /// Header lines in one request; a request with more is answered 431.
    pub max_headers: usize,
    /// How long shutdown waits for requests in flight before closing what is left.
    pub shutdown_timeout: Duration,
    /// The largest policy file read, in bytes.
    pub max_policy_bytes: usize,
}

impl Limits {
    /// hyper's own header-count limit: any other value costs a heap allocation per request.
    pub const HYPER_MAX_HEADERS: usize = 100;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 0,
            header_read_timeout: Duration::from_secs(10),
            max_headers: Self::HYPER_MAX_HEADERS,
            shutdown_timeout: Duration::from_secs(10),
            max_policy_bytes: 64 << 20,
        }
    }
}

/// Which decisions are written to the audit log (target `forwarden::audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Audit {
    /// Every decision that is not a plain allow: login required, forbidden, refresh due,
    /// and requests whose original URL cannot be trusted.
    #[default]
    Denials,
    /// Every decision, allows included.
    All,
}

/// The signed identity header.
#[derive(Debug, Clone)]
pub struct IdentityJwt {
    /// The header name (default `X-Forwarden-Jwt`).
    pub header: String,
    /// How long a token is valid.
    pub lifetime: Duration,
    /// The signing key.
    pub signer: std::sync::Arc<crate::jwt::Signer>,
}

/// The session cookie's settings.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name (chunks add `_0`, `_1`, …).
    pub name: String,
    /// Sealing keys, derived from the secrets; the first seals.
    pub keys: Keys,
    /// `Domain` attribute, to share the session across subdomains.
    pub domain: Option<String>,
    /// More registrable domains whose hosts get the session from the central sign-in host
    /// (`public_url`) by a one-time hand-off (`.example.org`, lower case, with the dot).
    pub other_domains: Vec<String>,
    /// `Secure` attribute.
    pub secure: bool,
    /// How long a session lasts.
    pub lifetime: Duration,
    /// Sessions older than this are refreshed at the provider on the next page load (groups
    /// and roles re-read; a disabled account loses access). `None`: never.
    pub refresh: Option<Duration>,
}

/// Names of the identity headers; every one is always sent, empty when there is no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    /// The user id.
    pub user: String,
    /// The email.
    pub email: String,
    /// `preferred_username`.
    pub preferred_username: String,
    /// Groups, comma-separated.
    pub groups: String,
    /// Roles, comma-separated.
    pub roles: String,
    /// A bearer token's calling application (empty for a browser session).
    pub client_id: String,
    /// Claim name to header name.
    pub claims: Vec<(String, String)>,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: "X-Auth-Request-User".into(),
            email: "X-Auth-Request-Email".into(),
            preferred_username: "X-Auth-Request-Preferred-Username".into(),
            groups: "X-Auth-Request-Groups".into(),
            roles: "X-Auth-Request-Roles".into(),
            client_id: "X-Auth-Request-Client-Id".into(),
            claims: Vec::new(),
        }
    }
}

impl HeaderNames {
    /// Every configured header name, in the order they are sent.
    pub fn all(&self) -> Vec<&str> {
        let mut v = vec![
            self.user.as_str(),
            self.email.as_str(),
            self.preferred_username.as_str(),
            self.groups.as_str(),
            self.roles.as_str(),
            self.client_id.as_str(),
        ];
        v.extend(self.claims.iter().map(|(_, h)| h.as_str()));
        v
    }
}

/// Where environment variables come from (a parameter, so tests need not touch the process).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where secret and key files are read from (a parameter, so tests need no files).
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// What a configuration may read besides its own text.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// Environment variables, for `${VAR}` values.
    pub env: Env<'a>,
    /// Files named by the config (`secrets_file`, `client_secret_file`, `key_file`).
    pub read: ReadFile<'a>,
}

/// The real file system.
fn read_file(p: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(p)
}

impl Config {
    /// Read and validate the config file at `path`, with the process's files.
    pub fn load(path: &Path, env: Env<'_>) -> Result<Config, Vec<Diagnostic>> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            vec![Diagnostic::file_error(
                &name,
                format!("cannot read config file: {e}"),
            )]
        })?;
        let text = crate::yaml::text(bytes).map_err(|p| vec![Diagnostic::error(&name, p)])?;
        let base = path.parent().unwrap_or(Path::new("."));
        let inputs = Inputs {
            env,
            read: &read_file,
        };
        Self::parse(&name, &text, base, inputs)
    }

    /// The policy files a config file names, read from its YAML alone (for `check` to report
    /// their problems beside the config's own when the config is not valid).
    pub fn policy_files_named(path: &Path) -> Vec<PathBuf> {
        let Ok(bytes) = std::fs::read(path) else {
            return Vec::new();
        };
        let Ok(text) = crate::yaml::text(bytes) else {
            return Vec::new();
        };
        let Ok(node) = crate::yaml::parse(&text) else {
            return Vec::new();
        };
        let base = path.parent().unwrap_or(Path::new("."));
        match node.get("policy_files").map(|n| &n.value) {
            Some(crate::yaml::Value::Seq(items)) => items
                .iter()
                .filter_map(|n| n.as_scalar())
                .map(|f| clean(&base.join(f)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Validate config text; `base` is the folder relative paths resolve against.
    pub fn parse(name: &str, text: &str, base: &Path, inputs: Inputs<'_>) -> Result<Config, Vec<Diagnostic>> {
        let to_diags = |problems: Vec<crate::yaml::Problem>| {
            let mut d: Vec<Diagnostic> = problems.into_iter().map(|p| Diagnostic::error(name, p)).collect();
            d.sort();
            d
        };
        let node = crate::yaml::parse(text).map_err(|p| to_diags(vec![p]))?;
        // Every problem of one run: the values that are well-formed are checked even when
        // others have the wrong type or an unknown key (a check about a line that already has
        // a structural problem is left out: it would be about the value set aside).
        let (raw, mut problems) = node.typed_partial::<raw::RawConfig>();
        let Some(raw) = raw else {
            return Err(to_diags(problems));
        };
        match validate::config(&node, raw, base, inputs) {
            Ok(cfg) if problems.is_empty() => Ok(cfg),
            Ok(_) => Err(to_diags(problems)),
            Err(more) => {
                let lines: Vec<u32> = problems.iter().map(|p| p.pos.line).collect();
                problems.extend(more.into_iter().filter(|p| !lines.contains(&p.pos.line)));
                Err(to_diags(problems))
            }
        }
    }
}

/// `a/b/../c` to `a/c`, lexically, so messages name files as a person would.
fn clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Headers that frame the message, manage the connection or carry the browser's own state: an
/// identity header under one of these names would let a claim's value (a user's display name,
/// a group) change how the upstream reads the request (request smuggling through
/// `Content-Length`, another `Host`), so forwarden never sets one.
const NOT_IDENTITY: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "cookie",
    "set-cookie",
];

/// What is wrong with `s` as the name of a header forwarden sets, if anything.
pub(crate) fn header_name_problem(s: &str) -> Option<String> {
    if !is_header_name(s) {
        return Some(format!("`{s}` is not a valid header name"));
    }
    NOT_IDENTITY.iter().any(|n| n.eq_ignore_ascii_case(s)).then(|| {
        format!("`{s}` frames the request or its connection, or carries cookies; forwarden never sets it: choose another name")
    })
}

/// `90s`, `30m`, `12h`, `7d`, `1h30m`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut num = String::new();
    if s.is_empty() {
        return None;
    }
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests;
