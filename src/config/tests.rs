use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn no_files(p: &Path) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    ))
}

fn inputs<'a>(env: crate::config::Env<'a>) -> Inputs<'a> {
    Inputs { env, read: &no_files }
}

fn errors(text: &str) -> String {
    match Config::parse("f.yaml", text, Path::new("."), inputs(&no_env)) {
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
        inputs(&env),
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

/// Attack: an identity header named after a framing or connection header (`Content-Length`,
/// `Host`, `Transfer-Encoding`) would let a claim's value change how the upstream reads the
/// request it is set on (request smuggling); such names are refused, in any case.
#[test]
fn identity_header_named_content_length_or_host_is_refused() {
    let e = errors(
        "listen: 127.0.0.1:4180\ncookie:\n  secrets: ['0123456789abcdef0123456789abcdef']\npolicy_files: [p.yaml]\nheaders:\n  user: Content-Length\n  email: host\n  claims:\n    name: Transfer-Encoding\n",
    );
    insta::assert_snapshot!(e, @r"
    f.yaml:6:9: `Content-Length` frames the request or its connection, or carries cookies; forwarden never sets it: choose another name
    f.yaml:7:10: `host` frames the request or its connection, or carries cookies; forwarden never sets it: choose another name
    f.yaml:9:11: `Transfer-Encoding` frames the request or its connection, or carries cookies; forwarden never sets it: choose another name
    ");
}

/// Regression (newcomer path): a structural problem (an unknown key, a value of the wrong type)
/// hid every check of the values: three mistakes took three runs of `check`.
#[test]
fn value_checks_run_alongside_structural_problems() {
    let e = errors(
        "listen: 127.0.0.1:4180\nlifetme: 3h\nmetrics_listen: 9180\ncookie:\n  secrets: [short]\n  lifetime: soon\npolicy_files: [p.yaml]\n",
    );
    insta::assert_snapshot!(e, @r"
    f.yaml:2:1: unknown field `lifetme`, expected one of `listen`, `trusted_proxies`, `cookie`, `policy_files`, `headers`, `reload_interval`, `public_url`, `allowed_redirect_domains`, `oidc`, `providers`, `metrics_listen`, `ext_authz_listen`, `ext_authz_tls`, `audit`, `identity_jwt`, `limits`, `bearer`, `session_store`
    f.yaml:3:1: invalid type: integer `9180`, expected a string
    f.yaml:5:13: secret is 5 bytes; at least 32 are needed (openssl rand -base64 32)
    f.yaml:6:13: `soon` is not a duration like 90s, 30m, 12h or 7d
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
    let c = Config::parse("f.yaml", text, Path::new("."), inputs(&env)).unwrap();
    let o = c.providers.first().unwrap();
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
fn oidc_issuer_and_client_id_from_the_environment() {
    let env = |k: &str| match k {
        "ISSUER" => Some("https://login.microsoftonline.com/common/v2.0".to_string()),
        "CLIENT" => Some("app-id".to_string()),
        _ => None,
    };
    let text = "cookie:\n  secrets: ['0123456789abcdef0123456789abcdef']\npolicy_files: [p]\noidc:\n  issuer: ${ISSUER}\n  client_id: ${CLIENT}\n  client_secret: x\n";
    // The resolved issuer is the one judged: common is multi-tenant and needs a tenant list.
    let e = match Config::parse("f.yaml", text, Path::new("."), inputs(&env)) {
        Ok(_) => String::new(),
        Err(d) => d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
    };
    assert!(
        e.starts_with("f.yaml:5:11: `https://login.microsoftonline.com/common/v2.0` is a multi-tenant"),
        "{e}"
    );
    let text = text.replace(
        "  client_secret: x\n",
        "  client_secret: x\n  azure: {allowed_tenants: any}\n",
    );
    let c = Config::parse("f.yaml", &text, Path::new("."), inputs(&env)).unwrap();
    let o = c.providers.first().unwrap();
    assert_eq!(
        (o.issuer.as_str(), o.client_id.as_str(), o.entra),
        ("https://login.microsoftonline.com/common/v2.0", "app-id", true)
    );
    let unset = errors(&text);
    assert!(
        unset.contains("f.yaml:5:11: environment variable ISSUER is not set"),
        "{unset}"
    );
    assert!(
        unset.contains("f.yaml:6:14: environment variable CLIENT is not set"),
        "{unset}"
    );
}

#[test]
fn bearer_section() {
    let base = "cookie:\n  secrets: ['0123456789abcdef0123456789abcdef']\npolicy_files: [p]\n";
    let ok = format!(
        "{base}bearer:\n  audiences: [api://x]\n  issuers: [{{issuer: 'https://other.example/', jwks_url: 'https://other.example/keys'}}]\n"
    );
    let c = Config::parse("f.yaml", &ok, Path::new("."), inputs(&no_env)).unwrap();
    let b = c.bearer.unwrap();
    assert_eq!(b.audiences, ["api://x"]);
    assert_eq!(b.issuers[0].jwks_url, "https://other.example/keys");
    insta::assert_snapshot!(errors(&format!("{base}bearer:\n  audiences: []\n  issuers: [{{issuer: nope, jwks_url: 'ftp://x'}}]\n")), @r"
    f.yaml:5:14: bearer.audiences is empty: list the audiences your API's tokens carry (for Entra its application ID URI, api://…, and its client id)
    f.yaml:6:22: `nope` is not an http(s) URL (the issuer)
    f.yaml:6:38: `ftp://x` is not an http(s) URL (its key set)
    ");
    insta::assert_snapshot!(errors(&format!("{base}bearer:\n  audiences: [api://x]\n")), @"f.yaml:5:3: bearer needs an issuer: configure oidc: or providers: (their issuers are trusted) or list bearer.issuers");
}

#[test]
fn session_store_section() {
    let base = "cookie:\n  secrets: ['0123456789abcdef0123456789abcdef']\npolicy_files: [p]\n";
    let c = Config::parse(
        "f.yaml",
        &format!(
            "{base}session_store:\n  redis:\n    sentinel: {{master: mymaster, nodes: ['10.0.0.1:26379']}}\n"
        ),
        Path::new("."),
        inputs(&no_env),
    )
    .unwrap();
    let r = c.session_store.unwrap();
    assert_eq!(
        r.server,
        RedisServer::Sentinel {
            master: "mymaster".into(),
            nodes: vec!["10.0.0.1:26379".into()],
            db: 0
        }
    );
    assert_eq!(
        (r.key_prefix.as_str(), r.cache_ttl),
        ("forwarden:", Duration::from_secs(10))
    );
    insta::assert_snapshot!(errors(&format!("{base}session_store:\n  redis:\n    url: http://x\n    cache_ttl: soon\n    password: ${{NOPE}}\n")), @r"
    f.yaml:6:10: `http://x` is not a Redis URL like redis://127.0.0.1:6379/0 (rediss:// for TLS)
    f.yaml:7:16: `soon` is not a duration like 90s, 30m, 12h or 7d
    f.yaml:8:15: environment variable NOPE is not set
    ");
    insta::assert_snapshot!(errors(&format!("{base}session_store:\n  redis:\n    sentinel: {{master: m, nodes: [nowhere]}}\n")), @"f.yaml:6:15: `nowhere` is not a Sentinel address like 10.0.0.1:26379");
    insta::assert_snapshot!(errors(&format!("{base}session_store:\n  redis: {{}}\n")), @"f.yaml:5:10: session_store.redis needs url (one server) or sentinel");
    // A URL the Redis client would refuse at start (so that the server would have no store):
    // refused by `check`, with its place and without the password.
    insta::assert_snapshot!(errors(&format!("{base}session_store:\n  redis:\n    url: redis://u:hunter2@127.0.0.1:6379/notadb\n")), @"f.yaml:6:10: `redis://u:***@127.0.0.1:6379/notadb`: Invalid database number- InvalidClientConfig");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604800)));
    assert_eq!(parse_duration("12"), None);
    assert_eq!(parse_duration("h"), None);
}

#[test]
fn other_domains_need_the_central_host_and_may_not_overlap() {
    let base = "listen: 127.0.0.1:4180\npolicy_files: [p.yaml]\n";
    let secret = "  secrets: ['0123456789abcdef0123456789abcdef']\n";
    insta::assert_snapshot!(errors(&format!("{base}cookie:\n{secret}  other_domains: [.example.org]\n")), @"f.yaml:5:18: cookie.other_domains needs public_url (the central sign-in host) and cookie.domain (its domain)");
    insta::assert_snapshot!(errors(&format!("{base}public_url: https://auth.example.com\ncookie:\n{secret}  domain: .example.com\n  other_domains: [example.org, .a.example.com, .example.net, .x.example.net, .nodot]\n")), @r"
    f.yaml:7:19: `example.org` is not a domain like .example.org
    f.yaml:7:32: `.a.example.com` overlaps cookie.domain: its hosts already share the session
    f.yaml:7:62: `.x.example.net` overlaps another of other_domains
    f.yaml:7:78: `.nodot` is not a domain like .example.org
    ");
}

#[test]
fn providers_section() {
    let base = "cookie:\n  secrets: ['0123456789abcdef0123456789abcdef']\npolicy_files: [p]\n";
    let p = |name: &str| {
        format!(
            "  - name: {name}\n    issuer: https://{name}.example/\n    client_id: c-{name}\n    client_secret: s\n"
        )
    };
    let ok = format!(
        "{base}providers:\n{}    display_name: Contoso staff\n{}bearer:\n  audiences: [api://x]\n  issuers: [{{issuer: 'https://api.example/', jwks_url: 'https://api.example/keys', provider: entra}}]\n",
        p("entra"),
        p("partners")
    );
    let c = Config::parse("f.yaml", &ok, Path::new("."), inputs(&no_env)).unwrap();
    let names: Vec<(&str, &str)> = c
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.display_name.as_str()))
        .collect();
    assert_eq!(names, [("entra", "Contoso staff"), ("partners", "partners")]);
    assert_eq!(c.bearer.unwrap().issuers[0].provider.as_deref(), Some("entra"));
    // Every problem at once: a bad name, a name twice, a missing name, oidc: beside providers:.
    insta::assert_snapshot!(errors(&format!(
        "{base}providers:\n{}{}{}  - issuer: https://x.example/\n    client_id: c\n    client_secret: s\noidc:\n  issuer: https://o.example/\n  client_id: c\n  client_secret: s\n",
        p("Entra Staff"),
        p("partners"),
        p("partners")
    )), @r"
    f.yaml:5:3: set oidc: (one identity provider) or providers: (several, each with a name), not both
    f.yaml:5:11: `Entra Staff` is not a provider name: use lower-case letters, digits, - and _ (at most 32), like entra or partners
    f.yaml:6:13: `https://Entra Staff.example/` is not an issuer URL
    f.yaml:13:11: a second provider named `partners`: names must differ
    f.yaml:17:5: this provider has no name: every entry of providers: needs one (name: entra)
    ");
    insta::assert_snapshot!(errors(&format!(
        "{base}oidc:\n  name: entra\n  issuer: https://o.example/\n  client_id: c\n  client_secret: s\n"
    )), @"f.yaml:5:9: name and display_name are for entries of providers:; oidc: is the one unnamed provider");
}
