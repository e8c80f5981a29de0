//! Proof that the contracts agree: generated requests and identities go through nginx's
//! `/oauth2/auth`, forward-auth, Envoy's gRPC `Check`, Envoy's HTTP mode and `forwarden
//! explain`, and every one reaches the same verdict (allow, sign in, or forbidden). They share
//! one pipeline; this checks that no adapter reads a request differently.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use proptest::prelude::*;

use crate::envoy::peer;
use crate::util::*;

/// The proxy tests' routes (on https) and more, under `routes:`.
fn policy() -> String {
    format!("{POLICY_HEAD}{}{POLICY_TAIL}", app_policy_https("  "))
}

const POLICY_HEAD: &str = "\
policies:
  admins:
    - allow:
        or:
          - groups: {has: admins}
routes:
";

const POLICY_TAIL: &str = "  - from: https://app.test
    prefix: /api
    methods: [GET]
    allow_any_authenticated_user: true
  - from: https://www.test
    allow_public_unauthenticated_access: true
  - from: https://ops.test
    policy:
      - allow:
          and:
            - email: {ends_with: \"@example.com\"}
            - http_method: {is: GET}
      - deny:
          or:
            - groups: {has: contractors}
";

/// One generated case.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    user: Option<u8>,
    html: bool,
    narrowing: Option<(&'static str, &'static str)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec!["GET", "POST", "DELETE", "OPTIONS", "HEAD"]),
        prop::sample::select(vec!["app.test", "www.test", "ops.test", "nowhere.test"]),
        prop::sample::select(vec![
            "/",
            "/docs?a=1",
            "/admin",
            "/admin/x",
            "/administrator",
            "/public/y",
            "/api/z",
            "/a/../admin/x",
            "/public/../admin",
            "//admin",
            "/%61dmin/x",
        ]),
        prop::option::of(0u8..3),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            ("allowed_groups", "admins"),
            ("allowed_emails", "alice@example.com"),
            ("allowed_email_domains", "example.com"),
            ("policy", "admins"),
        ])),
    )
        .prop_map(|(method, host, path, user, html, narrowing)| Case {
            method,
            host,
            path,
            user,
            html,
            narrowing,
        })
}

fn identity(n: u8) -> forwarden::identity::Identity {
    match n {
        0 => alice(),
        1 => bob(),
        _ => forwarden::identity::Identity {
            subject: "carol-oid".into(),
            email: Some("carol@example.com".into()),
            groups: vec!["contractors".into()],
            ..forwarden::identity::Identity::default()
        },
    }
}

/// The verdict from an HTTP status under the nginx or forward-auth contract.
fn from_status(code: u16) -> &'static str {
    match code {
        200 => "allow",
        302 | 401 => "login",
        403 => "forbidden",
        other => panic!("status {other}"),
    }
}

async fn verdicts(
    fw: &Fw,
    grpc: &AuthorizationClient<tonic::transport::Channel>,
    c: &Case,
) -> Vec<(&'static str, &'static str)> {
    let cookie = c.user.map(|u| fw.cookie(&identity(u)));
    let query = c.narrowing.map(|(k, v)| format!("?{k}={v}")).unwrap_or_default();
    let accept = if c.html { "text/html" } else { "application/json" };
    let http = client(&[]);
    let ask = |endpoint: &str| {
        let mut r = http
            .get(fw.url(&format!("{endpoint}{query}")))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", c.host)
            .header("x-forwarded-port", "443")
            .header("x-forwarded-uri", c.path)
            .header("x-forwarded-method", c.method)
            .header("x-forwarded-for", "203.0.113.7")
            .header("accept", accept);
        if let Some(cookie) = &cookie {
            r = r.header("cookie", cookie);
        }
        r
    };
    let mut out = Vec::new();
    let nginx = ask("/oauth2/auth").sent().await.status().as_u16();
    out.push(("nginx", from_status(nginx)));
    let fa = ask("/oauth2/forward-auth").sent().await.status().as_u16();
    out.push(("forward-auth", from_status(fa)));
    // Envoy gRPC: the typed description, the listener's port, the route's context extensions.
    let mut headers: HashMap<String, String> = [("accept", accept)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(cookie) = &cookie {
        headers.insert("cookie".into(), cookie.clone());
    }
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            source: peer("203.0.113.7", 52_000),
            destination: peer("10.0.0.5", 443),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: c.method.into(),
                    headers,
                    path: c.path.into(),
                    host: c.host.into(),
                    scheme: "https".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: c
                .narrowing
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
    };
    let r = grpc.clone().check(req).await.unwrap().into_inner();
    let grpc_verdict = match (r.status.map(|s| s.code), r.http_response) {
        (Some(0), Some(HttpResponse::OkResponse(_))) => "allow",
        (Some(16), _) => "login",
        (Some(7), _) => "forbidden",
        other => panic!("gRPC answer {other:?}"),
    };
    out.push(("envoy-grpc", grpc_verdict));
    // Envoy's HTTP mode has no narrowing of its own.
    if c.narrowing.is_none() {
        let mut r = http
            .request(
                reqwest::Method::from_bytes(c.method.as_bytes()).unwrap(),
                fw.url(&format!("/oauth2/ext-authz{}", c.path)),
            )
            .header("host", c.host)
            .header("x-forwarded-proto", "https")
            .header("accept", accept);
        if let Some(cookie) = &cookie {
            r = r.header("cookie", cookie);
        }
        let code = r.sent().await.status().as_u16();
        out.push(("envoy-http", from_status(code)));
    }
    out
}

/// `forwarden explain` for the same case; `None` when explain cannot take the URL (a path
/// forwarden refuses to normalize), which the server contracts answer 403.
fn explain(fw: &Fw, c: &Case) -> Option<&'static str> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"));
    cmd.args(["explain", "--config"])
        .arg(fw.dir.path().join("forwarden.yaml"))
        .args([
            "--url",
            &format!("https://{}{}", c.host, c.path),
            "--method",
            c.method,
        ]);
    match c.user.map(identity) {
        None => {
            cmd.arg("--anonymous");
        }
        Some(id) => {
            cmd.args(["--user", &id.subject]);
            if let Some(e) = &id.email {
                cmd.args(["--email", e]);
            }
            for g in &id.groups {
                cmd.args(["--group", g]);
            }
        }
    }
    if let Some((k, v)) = c.narrowing {
        cmd.args(["--auth-query", &format!("{k}={v}")]);
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return None;
    }
    match String::from_utf8_lossy(&out.stdout).lines().next() {
        Some("allow") => Some("allow"),
        Some("login") => Some("login"),
        Some("forbidden") => Some("forbidden"),
        other => panic!("explain said {other:?}"),
    }
}

#[test]
fn every_contract_reaches_the_same_verdict_for_the_same_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fw = rt.block_on(Fw::start_with(
        &policy(),
        "trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n",
    ));
    let grpc = rt
        .block_on(AuthorizationClient::connect(format!(
            "http://{}",
            fw.ext_authz.unwrap()
        )))
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 96,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    let result = runner.run(&case(), |c| {
        let got = rt.block_on(verdicts(&fw, &grpc, &c));
        let first = got[0].1;
        for (contract, verdict) in &got {
            prop_assert_eq!(*verdict, first, "{} disagrees: {:?} for {:?}", contract, got, c);
        }
        // A page load without a session that must sign in is sent to sign in by every
        // contract; explain names the verdict.
        match explain(&fw, &c) {
            Some(v) => prop_assert_eq!(v, first, "explain disagrees: {:?} for {:?}", got, c),
            None => prop_assert_eq!(first, "forbidden", "explain refused the URL: {:?}", c),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A proxy that states no scheme (no `X-Forwarded-Proto`): every door reads the site's
/// configured one (`cookie.secure: false` here, so http), the auth subrequests, Envoy's HTTP
/// mode and gRPC `Check` alike (sign-in and sign-out read it through the same `Site`). Before,
/// a missing scheme meant https to nginx and forward-auth, http to Envoy and `cookie.secure`'s
/// scheme to sign-in and sign-out.
#[tokio::test]
async fn an_unstated_scheme_is_read_alike_by_every_contract() {
    let (fw, http, alice) = every_door(APP_POLICY).await;
    let login = "/oauth2/start?rd=http%3A%2F%2Fapp%2Etest%2Fdocs";
    // nginx: the http route applies (a 401 names no place; the cookie is accepted).
    let nginx = |cookie: Option<&str>| {
        let mut r = http
            .get(fw.url("/oauth2/auth"))
            .header("x-forwarded-host", "app.test")
            .header("x-forwarded-uri", "/docs");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.sent()
    };
    assert_eq!(nginx(Some(&alice)).await.status(), 200);
    assert_eq!(nginx(None).await.status(), 401);
    // forward-auth and Envoy's HTTP mode send a page load to sign in on http.
    let envoy_http = format!("http://app.test:{}/oauth2/ext-authz/docs", fw.addr.port());
    for r in [
        http.get(fw.url("/oauth2/forward-auth"))
            .header("x-forwarded-host", "app.test")
            .header("x-forwarded-uri", "/docs"),
        http.get(envoy_http).header("host", "app.test"),
    ] {
        let r = r.page().sent().await;
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], format!("http://app.test{login}"));
    }
    // The gRPC check with no scheme: the same.
    let ext = fw.ext_authz.unwrap();
    let mut grpc = AuthorizationClient::connect(format!("http://{ext}"))
        .await
        .unwrap();
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            source: peer("203.0.113.7", 50000),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "app.test".into(),
                    path: "/docs".into(),
                    headers: HashMap::from([("cookie".to_string(), alice.clone())]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let r = grpc.check(check).await.unwrap().into_inner();
    assert_eq!(r.status.map(|s| s.code), Some(0));
}

/// A proxy that appends to the client's `X-Forwarded-Proto` sends a list whose first value is
/// the client's: refused by every door, never read as its first value.
#[tokio::test]
async fn scheme_smuggling_a_forwarded_proto_list_is_refused_by_every_contract() {
    let (fw, http, alice) = every_door(&app_policy_https("")).await;
    let described = |path: &str| {
        http.get(fw.url(path))
            .header("x-forwarded-host", "app.test")
            .header("x-forwarded-uri", "/docs")
    };
    let envoy_http = format!("http://app.test:{}/oauth2/ext-authz/docs", fw.addr.port());
    for r in [
        described("/oauth2/auth"),
        described("/oauth2/forward-auth"),
        http.get(envoy_http).header("host", "app.test"),
    ] {
        let r = r
            .header("x-forwarded-proto", "https, http")
            .header("cookie", &alice)
            .sent()
            .await;
        assert_eq!(r.status(), 403, "{}", r.url());
    }
}

/// forwarden with `policy` behind every door (HTTP and Envoy's gRPC listener), a client that
/// reaches it as `app.test`, and Alice's session cookie.
async fn every_door(policy: &str) -> (Fw, reqwest::Client, String) {
    let extra = "trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n";
    let fw = Fw::start_with(policy, extra).await;
    let http = client(&[("app.test", fw.addr.port())]);
    let alice = fw.cookie(&alice());
    (fw, http, alice)
}
