//! Validation: each raw section is checked beside the YAML node it was read from, and returns
//! its typed value or every problem it found, as values. [`gather!`] joins the results of
//! several sections so that one section's problems never hide another's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawConfig, RawCookie, RawHeaders, RawLimits};
use super::{
    Audit, Config, CookieConfig, HeaderNames, Inputs, Limits, MIN_SECRET_LEN, Tls, clean,
    header_name_problem, parse_duration,
};
use crate::oidc::redirect::AllowedDomain;
use crate::secret::Secret;
use crate::session::Keys;
use crate::yaml::{Node, Problem, Value};

/// A section's typed value, or every problem in it.
type Checked<T> = Result<T, Vec<Problem>>;

/// `Ok` of every result, or every problem of all of them: `gather!(a, b)` gives `(a, b)`, and
/// `gather!(Type { a, b })` gives `Type { a, b }` from results named like its fields.
macro_rules! gather {
    ($ty:ident { $($r:ident),+ $(,)? }) => {{
        let ($($r,)+) = gather!($($r),+)?;
        Ok($ty { $($r),+ })
    }};
    ($($r:ident),+ $(,)?) => {{
        let mut problems: Vec<Problem> = Vec::new();
        $(
            let $r = match $r {
                Ok(v) => Some(v),
                Err(mut e) => {
                    problems.append(&mut e);
                    None
                }
            };
        )+
        match ($($r,)+) {
            ($(Some($r),)+) if problems.is_empty() => Ok(($($r,)+)),
            _ => Err(problems),
        }
    }};
}

// After `gather!`: a macro is in scope only below its definition.
mod services;
use services::{bearer, identity_jwt, oidc, redis};

/// The node of a field that is present in the raw struct (so present in the file).
fn field<'n>(node: &'n Node, name: &str) -> &'n Node {
    let found = node.get(name);
    debug_assert!(found.is_some(), "validator asked for absent field `{name}`");
    found.unwrap_or(node)
}

/// The list items of a node (none for a non-list).
fn items(node: &Node) -> &[Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ => &[],
    }
}

/// One problem at a node.
fn fail<T>(node: &Node, message: impl Into<String>) -> Checked<T> {
    Err(vec![Problem::new(node.pos, message)])
}

/// A `Vec` of the items that validate, or the problems of all that do not.
fn each<T, U>(node: &Node, raw: &[T], check: impl Fn(&Node, &T) -> Checked<U>) -> Checked<Vec<U>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (item, n) in raw.iter().zip(items(node)) {
        match check(n, item) {
            Ok(v) => out.push(v),
            Err(mut e) => problems.append(&mut e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// An optional field: its default when absent, else checked at its node.
fn optional<T, U>(
    node: &Node,
    name: &str,
    raw: Option<T>,
    default: U,
    check: impl FnOnce(&Node, T) -> Checked<U>,
) -> Checked<U> {
    match raw {
        None => Ok(default),
        Some(v) => check(field(node, name), v),
    }
}

pub(super) fn config(node: &Node, raw: RawConfig, base: &Path, inputs: Inputs<'_>) -> Checked<Config> {
    let listen = optional(
        node,
        "listen",
        raw.listen,
        "127.0.0.1:4180".parse().ok(),
        |n, s| address(n, &s, "127.0.0.1:4180").map(Some),
    )
    .and_then(|a| a.ok_or_else(Vec::new));
    let trusted_proxies = match &raw.trusted_proxies {
        None => Ok(["127.0.0.1/32", "::1/128"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()),
        Some(list) => each(field(node, "trusted_proxies"), list, |n, t: &String| {
            crate::request::parse_cidr(t).map_or_else(
                || fail(n, format!("`{t}` is not an IP address or CIDR range")),
                Ok,
            )
        }),
    };
    let cookie_node = field(node, "cookie");
    let secrets = secrets(cookie_node, &raw.cookie, base, inputs);
    let policy_files = if raw.policy_files.is_empty() {
        let at = node.get("policy_files").unwrap_or(node);
        fail(at, "no policy_files: list at least one policy file")
    } else {
        Ok(raw.policy_files.iter().map(|p| clean(&base.join(p))).collect())
    };
    let headers = match node.get("headers") {
        Some(n) => headers(n, raw.headers),
        None => Ok(HeaderNames::default()),
    };
    let reload_interval = optional(
        node,
        "reload_interval",
        raw.reload_interval,
        Duration::from_secs(2),
        |n, s| duration(n, &s),
    );
    let public_url = optional(
        node,
        "public_url",
        raw.public_url,
        None,
        |n, u| match url::Url::parse(&u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(Some(url)),
            _ => fail(
                n,
                format!("`{u}` is not an http(s) URL like https://auth.example.com"),
            ),
        },
    );
    let allowed_redirect_domains = match node.get("allowed_redirect_domains") {
        None => Ok(Vec::new()),
        Some(n) => each(n, &raw.allowed_redirect_domains, |n, d: &String| {
            AllowedDomain::parse(d)
                .map_or_else(|| fail(n, format!("`{d}` is not a domain like .example.com")), Ok)
        }),
    };
    let metrics_listen = optional(node, "metrics_listen", raw.metrics_listen, None, |n, m| {
        address(n, &m, "127.0.0.1:9180").map(Some)
    });
    let ext_authz_listen = optional(node, "ext_authz_listen", raw.ext_authz_listen, None, |n, m| {
        address(n, &m, "127.0.0.1:4181").map(Some)
    });
    let ext_authz_tls = optional(node, "ext_authz_tls", raw.ext_authz_tls, None, |n, t| {
        let pem = |key: &str, file: &str| {
            let at = field(n, key);
            let p = base.join(file);
            match (inputs.read)(&p) {
                Ok(t) if t.contains("-----BEGIN ") => Ok(t),
                Ok(_) => fail(at, format!("{} is not PEM", p.display())),
                Err(e) => fail(at, format!("cannot read {}: {e}", p.display())),
            }
        };
        let (cert, key) = (pem("cert_file", &t.cert_file), pem("key_file", &t.key_file));
        let (cert_pem, key) = gather!(cert, key)?;
        Ok(Some(Tls {
            cert_pem,
            key_pem: Secret::new(key),
        }))
    });
    let audit = optional(node, "audit", raw.audit, Audit::Denials, |n, a| {
        match a.as_str() {
            "denials" => Ok(Audit::Denials),
            "all" => Ok(Audit::All),
            other => fail(
                n,
                format!("`{other}` is not an audit mode: use `denials` (the default) or `all`"),
            ),
        }
    });
    let has_oidc = raw.oidc.is_some() || raw.providers.as_ref().is_some_and(|p| !p.is_empty());
    let providers = match (raw.oidc, raw.providers) {
        (Some(_), Some(list)) => {
            // The entries' own problems are listed too.
            let mut problems = vec![Problem::new(
                field(node, "providers").pos,
                "set oidc: (one identity provider) or providers: (several, each with a name), not both",
            )];
            if let Err(mut more) = services::providers(field(node, "providers"), list, base, inputs) {
                problems.append(&mut more);
            }
            Err(problems)
        }
        (Some(o), None) => {
            let n = field(node, "oidc");
            if o.name.is_some() || o.display_name.is_some() {
                fail(
                    n.get("name").or(n.get("display_name")).unwrap_or(n),
                    "name and display_name are for entries of providers:; oidc: is the one unnamed provider",
                )
            } else {
                oidc(n, o, base, inputs).map(|p| vec![p])
            }
        }
        (None, Some(list)) => services::providers(field(node, "providers"), list, base, inputs),
        (None, None) => Ok(Vec::new()),
    };
    let limits = optional(node, "limits", raw.limits, Limits::default(), limits);
    // The identity JWT key derives from the first cookie secret; when the secrets have problems,
    // the cookie section reports them and the JWT section adds none of its own.
    let first = secrets.as_ref().map(|s| s.first().cloned()).map_err(|_| ());
    let identity_jwt = optional(node, "identity_jwt", raw.identity_jwt, None, |n, j| {
        identity_jwt(n, j, first, base, inputs).map(Some)
    });
    let bearer = optional(node, "bearer", raw.bearer, None, |n, b| {
        bearer(n, b, has_oidc).map(Some)
    });
    let session_store = optional(node, "session_store", raw.session_store, None, |n, s| {
        let r = field(n, "redis");
        redis(r, s.redis, base, inputs).map(Some)
    });
    let cookie = cookie(cookie_node, raw.cookie, secrets).and_then(|c| {
        // Other domains get the session from the central sign-in host, on cookie.domain.
        if !c.other_domains.is_empty() && (!matches!(public_url, Ok(Some(_))) || c.domain.is_none()) {
            return fail(
                field(cookie_node, "other_domains"),
                "cookie.other_domains needs public_url (the central sign-in host) and cookie.domain (its domain)",
            );
        }
        Ok(c)
    });
    gather!(Config {
        listen,
        trusted_proxies,
        cookie,
        policy_files,
        headers,
        reload_interval,
        public_url,
        allowed_redirect_domains,
        providers,
        metrics_listen,
        ext_authz_listen,
        ext_authz_tls,
        audit,
        identity_jwt,
        limits,
        bearer,
        session_store,
    })
}

fn limits(node: &Node, raw: RawLimits) -> Checked<Limits> {
    let d = Limits::default();
    let count = |key: &str, v: Option<u64>, default: usize, min: u64, max: u64| {
        optional(node, key, v, default, |n, v| {
            if (min..=max).contains(&v) {
                Ok(usize::try_from(v).unwrap_or(default))
            } else {
                fail(n, format!("`{key}` must be between {min} and {max}"))
            }
        })
    };
    let max_connections = count(
        "max_connections",
        raw.max_connections,
        d.max_connections,
        1,
        1 << 20,
    );
    let max_headers = count("max_headers", raw.max_headers, d.max_headers, 16, 10_000);
    let max_policy_bytes = count(
        "max_policy_bytes",
        raw.max_policy_bytes,
        d.max_policy_bytes,
        1024,
        1 << 32,
    );
    let header_read_timeout = optional(
        node,
        "header_read_timeout",
        raw.header_read_timeout,
        d.header_read_timeout,
        |n, s| duration(n, &s),
    );
    let shutdown_timeout = optional(
        node,
        "shutdown_timeout",
        raw.shutdown_timeout,
        d.shutdown_timeout,
        |n, s| duration(n, &s),
    );
    gather!(Limits {
        max_connections,
        header_read_timeout,
        max_headers,
        shutdown_timeout,
        max_policy_bytes,
    })
}

fn address(node: &Node, s: &str, example: &str) -> Checked<SocketAddr> {
    s.parse::<SocketAddr>().map_or_else(
        |_| fail(node, format!("`{s}` is not an address:port like {example}")),
        Ok,
    )
}

fn duration(node: &Node, s: &str) -> Checked<Duration> {
    match parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => fail(node, format!("`{s}` is not a duration like 90s, 30m, 12h or 7d")),
    }
}

/// A value written inline or as `${ENV_VAR}`.
fn env_value(node: &Node, s: &str, inputs: Inputs<'_>) -> Checked<String> {
    match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(var) => (inputs.env)(var).map_or_else(
            || fail(node, format!("environment variable {var} is not set")),
            Ok,
        ),
        None => Ok(s.to_string()),
    }
}

/// A cookie secret written inline or as `${ENV_VAR}`, long enough.
fn secret(node: &Node, s: &str, inputs: Inputs<'_>) -> Checked<Secret> {
    let value = env_value(node, s, inputs)?;
    if value.len() < MIN_SECRET_LEN {
        return fail(
            node,
            format!(
                "secret is {} bytes; at least {MIN_SECRET_LEN} are needed (openssl rand -base64 32)",
                value.len()
            ),
        );
    }
    Ok(Secret::new(value))
}

/// The cookie secrets: inline ones first, then `secrets_file`'s lines.
fn secrets(node: &Node, raw: &RawCookie, base: &Path, inputs: Inputs<'_>) -> Checked<Vec<Secret>> {
    let inline = match node.get("secrets") {
        Some(n) => each(n, &raw.secrets, |n, s: &String| secret(n, s, inputs)),
        None => Ok(Vec::new()),
    };
    let from_file = match &raw.secrets_file {
        None => Ok(Vec::new()),
        Some(f) => {
            let at = field(node, "secrets_file");
            let p = base.join(f);
            match (inputs.read)(&p) {
                Err(e) => fail(at, format!("cannot read {}: {e}", p.display())),
                Ok(text) => {
                    let mut problems = Vec::new();
                    let mut out = Vec::new();
                    for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
                        if line.len() < MIN_SECRET_LEN {
                            problems.push(Problem::new(at.pos, format!(
                                "secret {} in {} is {} bytes; at least {MIN_SECRET_LEN} are needed (openssl rand -base64 32)",
                                i + 1, p.display(), line.len()
                            )));
                        } else {
                            out.push(Secret::new(line));
                        }
                    }
                    if problems.is_empty() {
                        Ok(out)
                    } else {
                        Err(problems)
                    }
                }
            }
        }
    };
    let (mut inline, mut from_file) = gather!(inline, from_file)?;
    inline.append(&mut from_file);
    if inline.is_empty() {
        return fail(
            node,
            "no cookie secret: set cookie.secrets or cookie.secrets_file (openssl rand -base64 32)",
        );
    }
    Ok(inline)
}

fn cookie(node: &Node, raw: RawCookie, secrets: Checked<Vec<Secret>>) -> Checked<CookieConfig> {
    let name = optional(node, "name", raw.name, "_forwarden".to_string(), |n, name| {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if valid {
            Ok(name)
        } else {
            fail(
                n,
                format!("`{name}` is not a valid cookie name (letters, digits, _ - .)"),
            )
        }
    });
    let central = raw
        .domain
        .as_deref()
        .map(|c| c.trim_start_matches('.').to_ascii_lowercase());
    let domain = optional(
        node,
        "domain",
        raw.domain.filter(|d| !d.is_empty()),
        None,
        |n, d| {
            let bare = d.trim_start_matches('.');
            if crate::request::parse_host(bare).is_err() || bare.contains(':') {
                fail(n, format!("`{d}` is not a domain like .example.com"))
            } else {
                Ok(Some(d))
            }
        },
    );
    let lifetime = optional(
        node,
        "lifetime",
        raw.lifetime,
        Duration::from_secs(12 * 3600),
        |n, s| duration(n, &s),
    );
    let refresh = optional(node, "refresh", raw.refresh, None, |n, s| {
        duration(n, &s).map(Some)
    });
    let other_domains = match node.get("other_domains") {
        None => Ok(Vec::new()),
        Some(n) => {
            let seen: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(Vec::new());
            each(n, &raw.other_domains, |n, d: &String| {
                let lower = d.to_ascii_lowercase();
                let bare = lower.trim_start_matches('.');
                if !d.starts_with('.')
                    || crate::request::parse_host(bare).is_err()
                    || bare.contains(':')
                    || !bare.contains('.')
                {
                    return fail(n, format!("`{d}` is not a domain like .example.org"));
                }
                let under = |a: &str, b: &str| a == b || a.ends_with(&format!(".{b}"));
                if let Some(central) = &central {
                    if under(bare, central) || under(central, bare) {
                        return fail(
                            n,
                            format!("`{d}` overlaps cookie.domain: its hosts already share the session"),
                        );
                    }
                }
                if seen.borrow().iter().any(|s| under(bare, s) || under(s, bare)) {
                    return fail(n, format!("`{d}` overlaps another of other_domains"));
                }
                seen.borrow_mut().push(bare.to_string());
                Ok(format!(".{bare}"))
            })
        }
    };
    let (secrets, name, domain, lifetime, refresh, other_domains) =
        gather!(secrets, name, domain, lifetime, refresh, other_domains)?;
    let keys: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    Ok(CookieConfig {
        name,
        keys: Keys::new(&keys),
        domain,
        other_domains,
        secure: raw.secure.unwrap_or(true),
        lifetime,
        refresh,
    })
}

fn headers(node: &Node, raw: RawHeaders) -> Checked<HeaderNames> {
    let d = HeaderNames::default();
    let check = |key: &str, value: Option<String>, default: String| {
        optional(node, key, value, default, |n, name| {
            match header_name_problem(&name) {
                None => Ok(name),
                Some(p) => fail(n, p),
            }
        })
    };
    let user = check("user", raw.user, d.user);
    let email = check("email", raw.email, d.email);
    let preferred_username = check("preferred_username", raw.preferred_username, d.preferred_username);
    let groups = check("groups", raw.groups, d.groups);
    let roles = check("roles", raw.roles, d.roles);
    let client_id = check("client_id", raw.client_id, d.client_id);
    let claims = match node.get("claims") {
        None => Ok(Vec::new()),
        Some(cn) => {
            let mut problems = Vec::new();
            for (claim, name) in &raw.claims {
                if let Some(p) = header_name_problem(name) {
                    problems.push(Problem::new(field(cn, claim).pos, p));
                }
            }
            if problems.is_empty() {
                Ok(raw.claims.into_iter().collect::<Vec<_>>())
            } else {
                Err(problems)
            }
        }
    };
    gather!(HeaderNames {
        user,
        email,
        preferred_username,
        groups,
        roles,
        client_id,
        claims,
    })
}
