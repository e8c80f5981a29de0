//! `forwarden explain`: one request decided as the server would (the same `Request::pin` and
//! narrowing), for an identity given on the command line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{CommandError, Out, load};
use crate::identity::Identity;
use crate::policy::Narrowing;
use crate::request::Request;

/// What `explain` decides on.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The configuration file.
    #[arg(long, env = "FORWARDEN_CONFIG")]
    pub config: PathBuf,
    /// The requested URL.
    #[arg(long)]
    pub url: String,
    /// The method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The user's (verified) email.
    #[arg(long)]
    pub email: Option<String>,
    /// The user id (subject).
    #[arg(long)]
    pub user: Option<String>,
    /// A group the user is in (repeat for more).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// An app role the user has (repeat for more).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// A claim as name=value (repeat for more; the same name again makes it a list claim).
    #[arg(long = "claim")]
    pub claims: Vec<String>,
    /// As an API client: the calling application's id (a bearer token's `azp`/`appid`).
    /// Without --email or --user, the application's own token (client credentials).
    #[arg(long)]
    pub client_id: Option<String>,
    /// As an API client: a delegated scope of its token (repeat for more).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The identity provider the user signed in with (a name of `providers:`), or for an API
    /// client the provider its token's issuer is tied to. The user id then reads `<idp>#<user>`.
    #[arg(long)]
    pub idp: Option<String>,
    /// The app registration the session signed in through (a route's `idp_client_id`).
    #[arg(long)]
    pub idp_client: Option<String>,
    /// The client's address.
    #[arg(long)]
    pub source_ip: Option<IpAddr>,
    /// Decide for a request without a session.
    #[arg(long)]
    pub anonymous: bool,
    /// The auth endpoint's query, as the proxy sends it (allowed_groups=…, policy=…).
    #[arg(long, default_value = "")]
    pub auth_query: String,
}

/// Decide the request; print the verdict, the route and the rule. Returns whether the
/// configuration loaded.
pub fn explain(args: ExplainArgs, o: &mut Out<'_>) -> Result<bool, CommandError> {
    let ExplainArgs {
        config,
        url,
        method,
        email,
        user,
        groups,
        roles,
        claims,
        client_id,
        scopes,
        idp,
        idp_client,
        source_ip,
        anonymous,
        auth_query,
    } = args;
    let (cfg, set) = match load(&config) {
        Ok(x) => x,
        Err(diags) => {
            o.problems(&diags);
            return Ok(false);
        }
    };
    let mut req = Request::from_url(&url, &method)
        .map_err(|e| CommandError::Argument(format!("cannot use --url {url}: {e}")))?;
    req.client_ip = source_ip;
    // A claim given once is a string; given more than once, a list of its values.
    let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in claims {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| CommandError::Argument(format!("--claim {c}: expected name=value")))?;
        given.entry(k.to_string()).or_default().push(v.to_string());
    }
    let claim_map = given
        .into_iter()
        .map(|(k, v)| match v.as_slice() {
            [one] => (k, one.clone()),
            many => (k, crate::identity::list_claim(many.iter().map(String::as_str))),
        })
        .collect();
    // An application's own token names no user: no email, no groups.
    let application = client_id.is_some() && user.is_none() && email.is_none();
    let identity = Identity {
        subject: user
            .clone()
            .or_else(|| email.clone())
            .or_else(|| client_id.clone())
            .unwrap_or_else(|| "explain-user".into()),
        email,
        groups: if application { Vec::new() } else { groups },
        roles,
        claims: claim_map,
        token: client_id.is_some(),
        client_id,
        scopes,
        application,
        ..Identity::default()
    };
    let mut identity = identity;
    if idp.is_some() || idp_client.is_some() {
        let name = idp.unwrap_or_default();
        let (sign_in, bearer) = cfg.provider_names();
        if !sign_in.contains(&name.as_str()) && !bearer.contains(&name.as_str()) {
            return Err(CommandError::Argument(format!(
                "--idp {name}: not a provider of {}",
                config.display()
            )));
        }
        identity.signed_in_by(&name, idp_client.as_deref().unwrap_or(""));
    }
    let who = (!anonymous).then_some(&identity);
    let narrow = Narrowing::from_query(&auth_query).map_err(|e| {
        CommandError::Argument(format!(
            "--auth-query {auth_query}: the server would refuse every request: {e}"
        ))
    })?;
    if let Some(pin) = &narrow.host {
        req.site.pin(pin);
    }
    let d = set.decide(&req, who, &narrow);
    writeln!(o.out, "{}", d.verdict)?;
    match d.route {
        Some(r) => writeln!(o.out, "route: {} ({})", r.label, r.describe())?,
        None => writeln!(o.out, "route: none")?,
    }
    writeln!(o.out, "rule: {}", d.reason)?;
    Ok(true)
}
