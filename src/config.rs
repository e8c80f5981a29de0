//! The configuration file: read raw with positions, then validated into typed values.
//!
//! Every problem is collected and reported at once as `file:line:column: message`. Secrets can
//! be written inline, as `${ENV_VAR}`, or read from a file (`secrets_file`, one secret a line:
//! the Docker-secrets convention). Relative paths resolve against the config file's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::diag::Diagnostic;
use crate::session::Keys;
use crate::yaml::{self, Node, Pos, Problem};

/// The shortest secret accepted: 32 bytes, as many as the AES-256 key derived from it.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    trusted_proxies: Option<Vec<String>>,
    cookie: RawCookie,
    #[serde(default)]
    policy_files: Vec<String>,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default)]
    reload_interval: Option<String>,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default)]
    allowed_redirect_domains: Vec<String>,
    #[serde(default)]
    oidc: Option<RawOidc>,
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    audit: Option<String>,
    #[serde(default)]
    identity_jwt: Option<RawIdentityJwt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityJwt {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    lifetime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_file: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    end_session: bool,
    #[serde(default)]
    azure: Option<RawAzure>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzure {
    #[serde(default)]
    allowed_tenants: Vec<String>,
    #[serde(default)]
    graph_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCookie {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    secrets_file: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    secure: Option<bool>,
    #[serde(default)]
    lifetime: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    groups: Option<String>,
    #[serde(default)]
    roles: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
}

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
    /// The identity provider; `None` until one is configured.
    pub oidc: Option<OidcConfig>,
    /// Where Prometheus metrics are served (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Which decisions get an audit log line.
    pub audit: Audit,
    /// A signed JWT for upstreams on every allowed request with a session.
    pub identity_jwt: Option<IdentityJwt>,
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

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client (application) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Entra tenants allowed to sign in (their users' UPNs count as email).
    pub allowed_tenants: Vec<String>,
    /// Microsoft Graph, for group overage.
    pub graph_url: String,
    /// Sign-out continues to the provider's `end_session_endpoint`.
    pub end_session: bool,
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
    /// `Secure` attribute.
    pub secure: bool,
    /// How long a session lasts.
    pub lifetime: Duration,
    /// Sessions older than this are refreshed at the provider on the next page load (groups
    /// and roles re-read; a disabled account loses access). `None`: never.
    pub refresh: Option<Duration>,
    /// The first (sealing) secret: the identity JWT key is derived from it unless a key file
    /// is configured.
    pub(crate) first_secret: Option<Secret>,
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
        ];
        v.extend(self.claims.iter().map(|(_, h)| h.as_str()));
        v
    }
}

/// Where environment variables come from (a parameter, so tests need not touch the process).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Read and validate the config file at `path`.
    pub fn load(path: &Path, env: Env<'_>) -> Result<Config, Vec<Diagnostic>> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic::file_error(
                &name,
                format!("cannot read config file: {e}"),
            )]
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&name, &text, base, env)
    }

    /// Validate config text; `base` is the folder relative paths resolve against.
    pub fn parse(name: &str, text: &str, base: &Path, env: Env<'_>) -> Result<Config, Vec<Diagnostic>> {
        let node = yaml::parse(text).map_err(|p| vec![Diagnostic::error(name, p)])?;
        let raw: RawConfig = node.typed().map_err(|p| vec![Diagnostic::error(name, p)])?;
        let mut v = Validator {
            node: &node,
            problems: Vec::new(),
        };
        let cfg = v.config(raw, base, env);
        if v.problems.is_empty() {
            cfg.ok_or_else(Vec::new)
        } else {
            let mut d: Vec<Diagnostic> = v
                .problems
                .into_iter()
                .map(|p| Diagnostic::error(name, p))
                .collect();
            d.sort();
            Err(d)
        }
    }
}

struct Validator<'n> {
    node: &'n Node,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    /// Position of the value at a path of keys and list indexes ("cookie.secrets.0").
    fn pos(&self, path: &str) -> Pos {
        let mut n = self.node;
        for seg in path.split('.') {
            let next = match (seg.parse::<usize>(), &n.value) {
                (Ok(i), yaml::Value::Seq(items)) => items.get(i),
                _ => n.get(seg),
            };
            match next {
                Some(x) => n = x,
                None => break,
            }
        }
        n.pos
    }

    fn err(&mut self, path: &str, msg: impl Into<String>) {
        let pos = self.pos(path);
        self.problems.push(Problem::new(pos, msg));
    }

    fn config(&mut self, raw: RawConfig, base: &Path, env: Env<'_>) -> Option<Config> {
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:4180");
        let listen = listen.parse::<SocketAddr>().map_err(|_| {
            self.err(
                "listen",
                format!("`{listen}` is not an address:port like 127.0.0.1:4180"),
            )
        });
        let trusted = raw
            .trusted_proxies
            .unwrap_or_else(|| vec!["127.0.0.1/32".into(), "::1/128".into()]);
        let mut trusted_proxies = Vec::new();
        for (i, t) in trusted.iter().enumerate() {
            match crate::policy::ppl::parse_cidr(t) {
                Some(n) => trusted_proxies.push(n),
                None => self.err(
                    &format!("trusted_proxies.{i}"),
                    format!("`{t}` is not an IP address or CIDR range"),
                ),
            }
        }
        let cookie = self.cookie(raw.cookie, base, env);
        if raw.policy_files.is_empty() {
            self.err("policy_files", "no policy_files: list at least one policy file");
        }
        let policy_files = raw.policy_files.iter().map(|p| clean(&base.join(p))).collect();
        let headers = self.headers(raw.headers);
        let reload_interval = match raw.reload_interval.as_deref() {
            None => Some(Duration::from_secs(2)),
            Some(s) => self.duration("reload_interval", s),
        };
        let public_url = raw.public_url.as_deref().and_then(|u| match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Some(url),
            _ => {
                self.err(
                    "public_url",
                    format!("`{u}` is not an http(s) URL like https://auth.example.com"),
                );
                None
            }
        });
        let mut allowed_redirect_domains = Vec::new();
        for (i, d) in raw.allowed_redirect_domains.iter().enumerate() {
            match crate::oidc::redirect::AllowedDomain::parse(d) {
                Some(a) => allowed_redirect_domains.push(a),
                None => self.err(
                    &format!("allowed_redirect_domains.{i}"),
                    format!("`{d}` is not a domain like .example.com"),
                ),
            }
        }
        let metrics_listen = raw
            .metrics_listen
            .as_deref()
            .and_then(|m| match m.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        "metrics_listen",
                        format!("`{m}` is not an address:port like 127.0.0.1:9180"),
                    );
                    None
                }
            });
        let audit = match raw.audit.as_deref() {
            None | Some("denials") => Audit::Denials,
            Some("all") => Audit::All,
            Some(other) => {
                self.err(
                    "audit",
                    format!("`{other}` is not an audit mode: use `denials` (the default) or `all`"),
                );
                Audit::Denials
            }
        };
        let identity_jwt = match raw.identity_jwt {
            Some(j) => self.identity_jwt(j, cookie.as_ref(), base),
            None => None,
        };
        let oidc = match raw.oidc {
            Some(o) => Some(self.oidc(o, base, env)?),
            None => None,
        };
        Some(Config {
            listen: listen.ok()?,
            trusted_proxies,
            cookie: cookie?,
            policy_files,
            headers,
            reload_interval: reload_interval?,
            public_url,
            allowed_redirect_domains,
            oidc,
            metrics_listen,
            audit,
            identity_jwt,
        })
    }

    fn identity_jwt(
        &mut self,
        raw: RawIdentityJwt,
        cookie: Option<&CookieConfig>,
        base: &Path,
    ) -> Option<IdentityJwt> {
        let header = raw.header.unwrap_or_else(|| "X-Forwarden-Jwt".into());
        if !is_header_name(&header) {
            self.err(
                "identity_jwt.header",
                format!("`{header}` is not a valid header name"),
            );
        }
        let lifetime = match raw.lifetime.as_deref() {
            None => Some(Duration::from_secs(60)),
            Some(s) => self.duration("identity_jwt.lifetime", s),
        };
        let signer = match &raw.key_file {
            Some(f) => {
                let p = base.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(pem) => crate::jwt::Signer::from_pem(&pem)
                        .map_err(|e| self.err("identity_jwt.key_file", format!("{}: {e}", p.display())))
                        .ok(),
                    Err(e) => {
                        self.err(
                            "identity_jwt.key_file",
                            format!("cannot read {}: {e}", p.display()),
                        );
                        None
                    }
                }
            }
            // Derived from the first cookie secret (the cookie section reports its own problems).
            None => cookie
                .and_then(|c| c.first_secret.as_ref())
                .and_then(|s| crate::jwt::Signer::from_secret(s.expose().as_bytes()).ok()),
        };
        Some(IdentityJwt {
            header,
            lifetime: lifetime?,
            signer: std::sync::Arc::new(signer?),
        })
    }

    fn oidc(&mut self, raw: RawOidc, base: &Path, env: Env<'_>) -> Option<OidcConfig> {
        match url::Url::parse(&raw.issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => self.err("oidc.issuer", format!("`{}` is not an issuer URL", raw.issuer)),
        }
        if raw.client_id.trim().is_empty() {
            self.err("oidc.client_id", "client_id is empty");
        }
        let secret = match (&raw.client_secret, &raw.client_secret_file) {
            (Some(s), None) => self.env_value("oidc.client_secret", s, env),
            (None, Some(f)) => {
                let p = base.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                    Ok(_) => {
                        self.err("oidc.client_secret_file", format!("{} is empty", p.display()));
                        None
                    }
                    Err(e) => {
                        self.err(
                            "oidc.client_secret_file",
                            format!("cannot read {}: {e}", p.display()),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.err(
                    "oidc.client_secret_file",
                    "set client_secret or client_secret_file, not both",
                );
                None
            }
            (None, None) => {
                self.err(
                    "oidc",
                    "no client_secret: set oidc.client_secret or oidc.client_secret_file",
                );
                None
            }
        };
        let azure = raw.azure.unwrap_or_default();
        for (i, t) in azure.allowed_tenants.iter().enumerate() {
            if !crate::oidc::idtoken::is_guid(&t.to_ascii_lowercase()) {
                self.err(
                    &format!("oidc.azure.allowed_tenants.{i}"),
                    format!("`{t}` is not a tenant id (a GUID)"),
                );
            }
        }
        let scopes = raw.scopes.unwrap_or_else(|| {
            ["openid", "profile", "email", "offline_access"]
                .map(String::from)
                .to_vec()
        });
        Some(OidcConfig {
            issuer: raw.issuer.trim_end_matches('/').to_string(),
            client_id: raw.client_id,
            client_secret: Secret(secret?),
            scopes,
            allowed_tenants: azure
                .allowed_tenants
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            end_session: raw.end_session,
            graph_url: azure
                .graph_url
                .unwrap_or_else(|| "https://graph.microsoft.com".into())
                .trim_end_matches('/')
                .to_string(),
        })
    }

    /// A value written inline or as `${ENV_VAR}`.
    fn env_value(&mut self, path: &str, s: &str, env: Env<'_>) -> Option<String> {
        match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            Some(var) => match env(var) {
                Some(v) => Some(v),
                None => {
                    self.err(path, format!("environment variable {var} is not set"));
                    None
                }
            },
            None => Some(s.to_string()),
        }
    }

    fn cookie(&mut self, raw: RawCookie, base: &Path, env: Env<'_>) -> Option<CookieConfig> {
        let name = raw.name.unwrap_or_else(|| "_forwarden".into());
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            self.err(
                "cookie.name",
                format!("`{name}` is not a valid cookie name (letters, digits, _ - .)"),
            );
        }
        let mut secrets: Vec<String> = Vec::new();
        for (i, s) in raw.secrets.iter().enumerate() {
            let path = format!("cookie.secrets.{i}");
            if let Some(v) = self.secret(&path, s, env) {
                secrets.push(v);
            }
        }
        if let Some(f) = &raw.secrets_file {
            let p = base.join(f);
            match std::fs::read_to_string(&p) {
                Ok(text) => {
                    for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
                        if line.len() < MIN_SECRET_LEN {
                            self.err("cookie.secrets_file", format!(
                                "secret {} in {} is {} bytes; at least {MIN_SECRET_LEN} are needed (openssl rand -base64 32)",
                                i + 1, p.display(), line.len()
                            ));
                        } else {
                            secrets.push(line.to_string());
                        }
                    }
                }
                Err(e) => self.err("cookie.secrets_file", format!("cannot read {}: {e}", p.display())),
            }
        }
        if secrets.is_empty() && raw.secrets.is_empty() {
            self.err(
                "cookie",
                "no cookie secret: set cookie.secrets or cookie.secrets_file (openssl rand -base64 32)",
            );
        }
        let domain = raw.domain.filter(|d| !d.is_empty());
        if let Some(d) = &domain {
            let bare = d.trim_start_matches('.');
            if crate::request::parse_host(bare).is_err() || bare.contains(':') {
                self.err(
                    "cookie.domain",
                    format!("`{d}` is not a domain like .example.com"),
                );
            }
        }
        let lifetime = match raw.lifetime.as_deref() {
            None => Some(Duration::from_secs(12 * 3600)),
            Some(s) => self.duration("cookie.lifetime", s),
        };
        let refresh = match raw.refresh.as_deref() {
            None => None,
            Some(r) => Some(self.duration("cookie.refresh", r)?),
        };
        Some(CookieConfig {
            refresh,
            name,
            first_secret: secrets.first().cloned().map(Secret),
            keys: Keys::new(&secrets),
            domain,
            secure: raw.secure.unwrap_or(true),
            lifetime: lifetime?,
        })
    }

    /// A secret written inline or as `${ENV_VAR}`.
    fn secret(&mut self, path: &str, s: &str, env: Env<'_>) -> Option<String> {
        let value = self.env_value(path, s, env)?;
        if value.len() < MIN_SECRET_LEN {
            self.err(
                path,
                format!(
                    "secret is {} bytes; at least {MIN_SECRET_LEN} are needed (openssl rand -base64 32)",
                    value.len()
                ),
            );
            return None;
        }
        Some(value)
    }

    fn headers(&mut self, raw: RawHeaders) -> HeaderNames {
        let d = HeaderNames::default();
        let mut h = HeaderNames {
            user: raw.user.unwrap_or(d.user),
            email: raw.email.unwrap_or(d.email),
            preferred_username: raw.preferred_username.unwrap_or(d.preferred_username),
            groups: raw.groups.unwrap_or(d.groups),
            roles: raw.roles.unwrap_or(d.roles),
            claims: raw.claims.into_iter().collect(),
        };
        let named = [
            ("headers.user", h.user.clone()),
            ("headers.email", h.email.clone()),
            ("headers.preferred_username", h.preferred_username.clone()),
            ("headers.groups", h.groups.clone()),
            ("headers.roles", h.roles.clone()),
        ];
        for (path, name) in named {
            if !is_header_name(&name) {
                self.err(path, format!("`{name}` is not a valid header name"));
            }
        }
        for (claim, name) in &h.claims {
            if !is_header_name(name) {
                self.err(
                    &format!("headers.claims.{claim}"),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        h.claims.sort();
        h
    }

    fn duration(&mut self, path: &str, s: &str) -> Option<Duration> {
        match parse_duration(s) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.err(path, format!("`{s}` is not a duration like 90s, 30m, 12h or 7d"));
                None
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

/// `90s`, `30m`, `12h`, `7d`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
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
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn errors(text: &str) -> String {
        match Config::parse("f.yaml", text, Path::new("."), &no_env) {
            Ok(_) => String::new(),
            Err(d) => d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        }
    }

    #[test]
    fn minimal_config() {
        let env = |k: &str| (k == "S").then(|| "s".repeat(40));
        let c = Config::parse(
            "f.yaml",
            "cookie:\n  secrets: ['${S}']\npolicy_files: [p.yaml]\n",
            Path::new("/etc/fw"),
            &env,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:4180");
        assert_eq!(c.policy_files, vec![PathBuf::from("/etc/fw/p.yaml")]);
        assert_eq!(c.cookie.lifetime, Duration::from_secs(43200));
        assert!(c.cookie.secure);
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn every_problem_at_once() {
        let e = errors(
            "listen: nowhere\ntrusted_proxies: [10.0.0.0/8, bogus]\ncookie:\n  secrets: [short, '${MISSING}']\n  lifetime: 12 hours\npolicy_files: []\nheaders:\n  user: 'X User'\n",
        );
        insta::assert_snapshot!(e, @r"
        f.yaml:1:9: `nowhere` is not an address:port like 127.0.0.1:4180
        f.yaml:2:31: `bogus` is not an IP address or CIDR range
        f.yaml:4:13: secret is 5 bytes; at least 32 are needed (openssl rand -base64 32)
        f.yaml:4:20: environment variable MISSING is not set
        f.yaml:5:13: `12 hours` is not a duration like 90s, 30m, 12h or 7d
        f.yaml:6:15: no policy_files: list at least one policy file
        f.yaml:8:9: `X User` is not a valid header name
        ");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = errors(
            "cookie:\n  secrets: [aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n  secure_: true\npolicy_files: [p]\n",
        );
        assert!(e.starts_with("f.yaml:3:3: unknown field `secure_`"), "{e}");
    }

    #[test]
    fn oidc_section() {
        let env = |k: &str| (k == "CS").then(|| "client-secret-value".to_string());
        let text = r"cookie:
  secrets: ['0123456789abcdef0123456789abcdef']
policy_files: [p]
public_url: https://auth.example.com
allowed_redirect_domains: [.example.com]
oidc:
  issuer: https://login.microsoftonline.com/organizations/v2.0/
  client_id: app
  client_secret: ${CS}
  azure:
    allowed_tenants: [72F988BF-86F1-41AF-91AB-2D7CD011DB47]
";
        let c = Config::parse("f.yaml", text, Path::new("."), &env).unwrap();
        let o = c.oidc.as_ref().unwrap();
        assert_eq!(o.issuer, "https://login.microsoftonline.com/organizations/v2.0");
        assert_eq!(o.client_secret.expose(), "client-secret-value");
        assert_eq!(o.allowed_tenants, vec!["72f988bf-86f1-41af-91ab-2d7cd011db47"]);
        assert_eq!(o.scopes, vec!["openid", "profile", "email", "offline_access"]);
        assert!(
            !format!("{c:?}").contains("client-secret-value"),
            "Debug never prints secrets"
        );
        let e = errors(
            r"cookie:
  secrets: ['0123456789abcdef0123456789abcdef']
policy_files: [p]
oidc:
  issuer: nope
  client_id: app
  azure:
    allowed_tenants: [contoso]
",
        );
        insta::assert_snapshot!(e, @r"
        f.yaml:5:3: no client_secret: set oidc.client_secret or oidc.client_secret_file
        f.yaml:5:11: `nope` is not an issuer URL
        f.yaml:8:23: `contoso` is not a tenant id (a GUID)
        ");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604800)));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
