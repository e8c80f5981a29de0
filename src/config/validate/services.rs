//! Validation of the sections that name outside services: the identity provider (`oidc:`, with
//! the signed identity it feeds), the bearer-token issuers (`bearer:`) and the session store
//! (`session_store:`). The helpers and the rest of the configuration are in the parent module.

use std::path::Path;

use super::super::raw::{RawBearer, RawBearerIssuer, RawIdentityJwt, RawOidc, RawRedis, RawTenants};
use super::super::{BearerConfig, ExtraIssuer, IdentityJwt, Inputs, RedisConfig, RedisServer};
use super::*;
use crate::oidc::ProviderConfig;

pub(super) fn redis(node: &Node, raw: RawRedis, _base: &Path, inputs: Inputs<'_>) -> Checked<RedisConfig> {
    let server = match (raw.url, raw.sentinel) {
        (Some(url), None) => {
            let url = env_value(field(node, "url"), &url, inputs)?;
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {
                    // What the Redis client itself reads from the URL (database number,
                    // protocol): a URL it would refuse at start is refused here, with its place.
                    match redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
                        Ok(_) => Ok(RedisServer::Url(url)),
                        Err(e) => {
                            let mut shown = u.clone();
                            if shown.password().is_some() {
                                let _ = shown.set_password(Some("***"));
                            }
                            fail(field(node, "url"), format!("`{shown}`: {e}"))
                        }
                    }
                }
                _ => fail(
                    field(node, "url"),
                    format!("`{url}` is not a Redis URL like redis://127.0.0.1:6379/0 (rediss:// for TLS)"),
                ),
            }
        }
        (None, Some(s)) => {
            let at = field(node, "sentinel");
            if s.nodes.is_empty() || s.master.trim().is_empty() {
                fail(
                    at,
                    "sentinel needs a master name and at least one node (host:port)",
                )
            } else if let Some(bad) = s
                .nodes
                .iter()
                .find(|n| n.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()))
            {
                fail(
                    at,
                    format!("`{bad}` is not a Sentinel address like 10.0.0.1:26379"),
                )
            } else {
                Ok(RedisServer::Sentinel {
                    master: s.master,
                    nodes: s.nodes,
                    db: s.db.unwrap_or(0),
                })
            }
        }
        (Some(_), Some(_)) => fail(node, "set redis.url or redis.sentinel, not both"),
        (None, None) => fail(node, "session_store.redis needs url (one server) or sentinel"),
    };
    let password = match &raw.password {
        Some(p) => env_value(field(node, "password"), p, inputs).map(|p| Some(Secret::new(p))),
        None => Ok(None),
    };
    let cache_ttl = optional(
        node,
        "cache_ttl",
        raw.cache_ttl,
        Duration::from_secs(10),
        |n, t| duration(n, &t),
    );
    let (server, password, cache_ttl) = gather!(server, password, cache_ttl)?;
    Ok(RedisConfig {
        server,
        password,
        key_prefix: raw.key_prefix.unwrap_or_else(|| "forwarden:".into()),
        cache_ttl,
    })
}

pub(super) fn bearer(node: &Node, raw: RawBearer, has_oidc: bool) -> Checked<BearerConfig> {
    let audiences = match node.get("audiences") {
        Some(n) if !raw.audiences.is_empty() => each(n, &raw.audiences, |n, a: &String| {
            if a.trim().is_empty() {
                fail(n, "an audience is empty")
            } else {
                Ok(a.clone())
            }
        }),
        at => fail(
            at.unwrap_or(node),
            "bearer.audiences is empty: list the audiences your API's tokens carry (for Entra its application ID URI, api://…, and its client id)",
        ),
    };
    let url = |n: &Node, u: &str, what: &str| match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => Ok(u.to_string()),
        _ => fail(n, format!("`{u}` is not an http(s) URL ({what})")),
    };
    let issuers = match node.get("issuers") {
        None => Ok(Vec::new()),
        Some(n) => each(n, &raw.issuers, |n, i: &RawBearerIssuer| {
            let issuer = url(field(n, "issuer"), &i.issuer, "the issuer");
            let jwks_url = url(field(n, "jwks_url"), &i.jwks_url, "its key set");
            let trusted_for = match n.get("trusted_for") {
                None => Ok((false, false)),
                Some(t) => each(t, &i.trusted_for, |n, v: &String| match v.as_str() {
                    "client_id" | "email" => Ok(v.clone()),
                    other => fail(
                        n,
                        format!("`{other}` is not something an issuer can be trusted for (client_id, email)"),
                    ),
                })
                .map(|v| (v.iter().any(|x| x == "client_id"), v.iter().any(|x| x == "email"))),
            };
            let provider = match &i.provider {
                None => Ok(None),
                Some(p) => provider_name(field(n, "provider"), p).map(Some),
            };
            let (issuer, jwks_url, (trust_client_id, trust_email), provider) =
                gather!(issuer, jwks_url, trusted_for, provider)?;
            Ok(ExtraIssuer {
                issuer,
                jwks_url,
                trust_client_id,
                trust_email,
                provider,
            })
        }),
    };
    let (audiences, issuers) = gather!(audiences, issuers)?;
    if !has_oidc && issuers.is_empty() {
        return fail(
            node,
            "bearer needs an issuer: configure oidc: or providers: (their issuers are trusted) or list bearer.issuers",
        );
    }
    Ok(BearerConfig { audiences, issuers })
}

pub(super) fn identity_jwt(
    node: &Node,
    raw: RawIdentityJwt,
    first_secret: Result<Option<Secret>, ()>,
    base: &Path,
    inputs: Inputs<'_>,
) -> Checked<IdentityJwt> {
    let header = optional(
        node,
        "header",
        raw.header,
        "X-Forwarden-Jwt".to_string(),
        |n, h| match header_name_problem(&h) {
            None => Ok(h),
            Some(p) => fail(n, p),
        },
    );
    let lifetime = optional(node, "lifetime", raw.lifetime, Duration::from_secs(60), |n, s| {
        duration(n, &s)
    });
    let signer = match &raw.key_file {
        Some(f) => {
            let at = field(node, "key_file");
            let p = base.join(f);
            match (inputs.read)(&p) {
                Ok(pem) => crate::jwt::Signer::from_pem(&pem)
                    .map_or_else(|e| fail(at, format!("{}: {e}", p.display())), Ok),
                Err(e) => fail(at, format!("cannot read {}: {e}", p.display())),
            }
        }
        // Derived from the first cookie secret.
        None => match first_secret {
            Ok(Some(s)) => crate::jwt::Signer::from_secret(s.expose().as_bytes()).map_or_else(
                |e| fail(node, format!("cannot derive the identity JWT key: {e}")),
                Ok,
            ),
            Ok(None) => fail(node, "identity_jwt needs a cookie secret or a key_file"),
            // The cookie section reported why there is no secret.
            Err(()) => Err(Vec::new()),
        },
    };
    let (header, lifetime, signer) = gather!(header, lifetime, signer)?;
    Ok(IdentityJwt {
        header,
        lifetime,
        signer: std::sync::Arc::new(signer),
    })
}

/// A provider's name: lower-case letters, digits, `-` and `_`, at most 32, starting with a
/// letter or digit (it is written into subjects, `<name>#<sub>`, and cookie values).
fn provider_name(node: &Node, name: &str) -> Checked<String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        fail(
            node,
            format!(
                "`{name}` is not a provider name: use lower-case letters, digits, - and _ (at most 32), like entra or partners"
            ),
        )
    }
}

/// `providers:`: named providers, each what `oidc:` holds, names unique.
pub(super) fn providers(
    node: &Node,
    raw: Vec<RawOidc>,
    base: &Path,
    inputs: Inputs<'_>,
) -> Checked<Vec<ProviderConfig>> {
    if raw.is_empty() {
        return fail(
            node,
            "providers: is empty: list at least one identity provider, or remove it",
        );
    }
    let mut problems = Vec::new();
    let mut out: Vec<ProviderConfig> = Vec::new();
    for (mut r, n) in raw.into_iter().zip(items(node)) {
        let name = match r.name.take() {
            Some(name) => provider_name(field(n, "name"), &name).and_then(|name| {
                if out.iter().any(|p| p.name == name) {
                    fail(
                        field(n, "name"),
                        format!("a second provider named `{name}`: names must differ"),
                    )
                } else {
                    Ok(name)
                }
            }),
            None => fail(
                n,
                "this provider has no name: every entry of providers: needs one (name: entra)",
            ),
        };
        let display = r.display_name.take();
        let provider = oidc(n, r, base, inputs);
        match gather!(name, provider) {
            Ok((name, mut p)) => {
                p.display_name = display.unwrap_or_else(|| name.clone());
                p.name = name;
                out.push(p);
            }
            Err(mut e) => problems.append(&mut e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

pub(super) fn oidc(node: &Node, raw: RawOidc, base: &Path, inputs: Inputs<'_>) -> Checked<ProviderConfig> {
    // The issuer as written or from its environment variable: Entra detection reads this one.
    let issuer = env_value(field(node, "issuer"), &raw.issuer, inputs);
    let written = issuer.clone().unwrap_or_default();
    let issuer = issuer.and_then(|issuer| match url::Url::parse(&issuer) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(issuer.trim_end_matches('/').to_string()),
        _ => fail(field(node, "issuer"), format!("`{issuer}` is not an issuer URL")),
    });
    let client_id = env_value(field(node, "client_id"), &raw.client_id, inputs).and_then(|id| {
        if id.trim().is_empty() {
            fail(field(node, "client_id"), "client_id is empty")
        } else {
            Ok(id)
        }
    });
    let client_secret = match (&raw.client_secret, &raw.client_secret_file) {
        (Some(s), None) => env_value(field(node, "client_secret"), s, inputs).map(Secret::new),
        (None, Some(f)) => {
            let at = field(node, "client_secret_file");
            let p = base.join(f);
            match (inputs.read)(&p) {
                Ok(t) if !t.trim().is_empty() => Ok(Secret::new(t.trim())),
                Ok(_) => fail(at, format!("{} is empty", p.display())),
                Err(e) => fail(at, format!("cannot read {}: {e}", p.display())),
            }
        }
        (Some(_), Some(_)) => fail(
            field(node, "client_secret_file"),
            "set client_secret or client_secret_file, not both",
        ),
        (None, None) => fail(
            node,
            "no client_secret: set oidc.client_secret or oidc.client_secret_file",
        ),
    };
    let entra = raw.azure.is_some() || crate::oidc::is_entra_issuer(&written);
    let azure = raw.azure.unwrap_or_default();
    let tenants_node = node.get("azure").and_then(|a| a.get("allowed_tenants"));
    let allowed_tenants = match (&azure.allowed_tenants, tenants_node) {
        (Some(RawTenants::List(list)), Some(n)) => each(n, list, |n, t: &String| {
            let lower = t.to_ascii_lowercase();
            if crate::oidc::idtoken::is_guid(&lower) {
                Ok(lower)
            } else {
                fail(n, format!("`{t}` is not a tenant id (a GUID)"))
            }
        }),
        (Some(RawTenants::Word(w)), Some(_)) if w == "any" => Ok(Vec::new()),
        (Some(RawTenants::Word(w)), Some(n)) => fail(
            n,
            format!("`{w}` is not a list of tenant ids: write [<tenant id>, …], or `any`"),
        ),
        // A multi-tenant authority without a list lets accounts of every tenant in.
        _ if crate::oidc::is_multi_tenant_issuer(&written) => fail(
            field(node, "issuer"),
            format!(
                "`{written}` is a multi-tenant authority: accounts of every Entra tenant (and, for common, personal accounts) could sign in. List yours in oidc.azure.allowed_tenants, or write `allowed_tenants: any` if that is really meant"
            ),
        ),
        _ => Ok(Vec::new()),
    };
    let timeout = optional(node, "timeout", raw.timeout, Duration::from_secs(10), |n, t| {
        duration(n, &t)
    });
    let (issuer, client_id, client_secret, allowed_tenants, timeout) =
        gather!(issuer, client_id, client_secret, allowed_tenants, timeout)?;
    let scopes = raw.scopes.unwrap_or_else(|| {
        ["openid", "profile", "email", "offline_access"]
            .map(String::from)
            .to_vec()
    });
    Ok(ProviderConfig {
        name: String::new(),
        display_name: String::new(),
        issuer,
        client_id,
        client_secret,
        scopes,
        allowed_tenants,
        entra,
        end_session: raw.end_session,
        timeout,
        graph_url: azure
            .graph_url
            .unwrap_or_else(|| "https://graph.microsoft.com".into())
            .trim_end_matches('/')
            .to_string(),
    })
}
