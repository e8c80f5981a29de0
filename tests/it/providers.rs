//! Several identity providers (`providers:`): the chooser page, routes limited to a provider
//! (`identity_providers`) or to another app registration at it (`idp_client_id`), the `idp`
//! criterion, subjects kept apart by provider, and bearer issuers narrowed per route before any
//! signature check. Two test providers at once (the same oidc-provider server, twice): `entra`,
//! configured as Entra ID (its users are their `oid`), and `partners`, a generic provider (its
//! users are their `sub`). Run through nginx.

use crate::util::*;
use forwarden::identity::Identity;

const PAYROLL_CLIENT: &str = "payroll-app";
const PAYROLL_SECRET: &str = "payroll-secret-0123456789abcdef";

fn policy() -> String {
    format!(
        "\
- from: http://app.test
  allow_any_authenticated_user: true
- from: http://app.test
  prefix: /staff
  identity_providers: [entra]
  allow_any_authenticated_user: true
- from: http://app.test
  prefix: /partners-desk
  policy:
    allow:
      and:
        - idp: {{is: partners}}
- from: http://app.test
  prefix: /code
  policy:
    allow:
      and:
        - amr: mfa
- from: http://app.test
  prefix: /payroll
  identity_providers: [entra]
  idp_client_id: {PAYROLL_CLIENT}
  idp_client_secret: {PAYROLL_SECRET}
  allow_any_authenticated_user: true
- from: http://app.test
  prefix: /unset-secret
  identity_providers: [entra]
  idp_client_id: other-app
  idp_client_secret: ${{FORWARDEN_TEST_SURELY_UNSET}}
  allow_any_authenticated_user: true
"
    )
}

/// A `providers:` entry for the test provider at `issuer`.
fn entry(name: &str, display: &str, issuer: &str, more: &str) -> String {
    format!(
        "  - name: {name}\n    display_name: {display}\n    issuer: {issuer}\n    client_id: {IDP_CLIENT}\n    client_secret: {IDP_SECRET}\n    scopes: [openid, email]\n{more}"
    )
}

struct Site {
    port: u16,
    entra: Idp,
    partners: Idp,
    _fw: Fw,
    _nginx: Proc,
}

impl Site {
    /// A new browser (no session) opening `path` on app.test and signing in at `idp` as `user`:
    /// the browser, the last answer and the URLs on the way.
    async fn fresh_sign_in(
        &self,
        path: &str,
        idp: &Idp,
        user: &str,
    ) -> (reqwest::Client, reqwest::Response, Vec<String>) {
        let http = browser(self.port, &["app.test"]);
        let (r, urls) = browse(&http, &app_at(self.port, path), &idp.issuer, user).await;
        (http, r, urls)
    }
}

async fn site(policy: &str, entra_azure: bool) -> Option<Site> {
    site_with(policy, entra_azure, "").await
}

async fn site_with(policy: &str, entra_azure: bool, more: &str) -> Option<Site> {
    let port = free_port();
    let callback = [app_at(port, "/oauth2/callback")];
    let entra = idp_with(
        &callback,
        &[
            ("CLIENT2_ID", PAYROLL_CLIENT),
            ("CLIENT2_SECRET", PAYROLL_SECRET),
            ("CLIENT2_USERS", "alice"),
        ],
    )
    .await?;
    let partners = idp(&callback).await?;
    let azure = format!("    azure:\n      allowed_tenants: [{IDP_TENANT}]\n");
    let cfg = format!(
        "trusted_proxies: [127.0.0.1/32]\nproviders:\n{}{}",
        entry(
            "entra",
            "Contoso staff (Entra ID)",
            &entra.issuer,
            if entra_azure { &azure } else { "" }
        ),
        entry("partners", "Partners", &partners.issuer, "")
    ) + more;
    let fw = Fw::start_with(policy, &cfg).await;
    let nginx = fw.behind_nginx(port).await?;
    Some(Site {
        port,
        entra,
        partners,
        _fw: fw,
        _nginx: nginx,
    })
}

/// The identity header the upstream received.
async fn user_of(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.unwrap();
    v["headers"]["x-auth-request-user"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The chooser's links, as (text, href).
fn choices(html: &str) -> Vec<(String, String)> {
    html.split("<li><a href=\"")
        .skip(1)
        .map(|rest| {
            let href = rest.split('"').next().unwrap().replace("&amp;", "&");
            let text = rest
                .split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_string();
            (text, href)
        })
        .collect()
}

#[tokio::test]
async fn several_providers_a_chooser_then_each_route_takes_only_its_own_providers_sessions() {
    let Some(s) = site(&policy(), true).await else {
        return;
    };
    let http = browser(s.port, &["app.test"]);
    let app = |p: &str| format!("http://app.test:{}{p}", s.port);

    // Anonymous, on a route every provider may sign in to: the chooser page.
    let (r, path) = browse(&http, &app("/"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let page = r.text().await.unwrap();
    let links = choices(&page);
    assert_eq!(
        links.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["Contoso staff (Entra ID)", "Partners"],
        "{page}"
    );
    assert!(page.contains("aria-label=\"Sign-in choices\""), "{page}");
    assert!(links[1].1.contains("idp=partners"), "{links:?}");

    // Partners' alice: a generic provider's user is its `sub`, under the provider's name.
    let (r, path) = browse(&http, &app(&links[1].1), &s.partners.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(r.url().path(), "/");
    assert!(path.iter().all(|u| !u.starts_with(&s.entra.issuer)), "{path:#?}");
    assert_eq!(user_of(r).await, "partners#alice");
    let (r, _) = browse(&http, &app("/partners-desk/x"), &s.partners.issuer, "alice").await;
    assert_eq!(r.status(), 200, "the idp criterion lets partners' user in");
    // A step-up signs in again at the session's own provider: no chooser.
    let (r, path) = browse(&http, &app("/code/x"), &s.partners.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(
        path.iter()
            .any(|u| u.contains("idp=partners") && u.contains("step_up=")),
        "{path:#?}"
    );
    assert_eq!(user_of(r).await, "partners#alice");

    // /staff takes only Entra's sessions: straight to Entra (no chooser), and in as Entra's
    // alice, whose user is her oid.
    let (r, path) = browse(&http, &app("/staff/x"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(path.iter().any(|u| u.contains("idp=entra")), "{path:#?}");
    assert!(
        path.iter().all(|u| !u.starts_with(&s.partners.issuer)),
        "{path:#?}"
    );
    let user = user_of(r).await;
    assert!(user.starts_with("entra#") && user != "entra#alice", "{user}");
    // Entra's alice is not the partners' desk's: 403, not a sign-in loop.
    let (r, path) = browse(&http, &app("/partners-desk/x"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 403, "{path:#?}");
    assert_eq!(path.len(), 1, "{path:#?}");
}

#[tokio::test]
async fn the_same_sub_from_two_providers_is_two_users() {
    // Both providers generic: each says `sub: alice`.
    let policy = "\
- from: http://app.test
  allowed_users: [partners#alice]
";
    let Some(s) = site(policy, false).await else {
        return;
    };
    let app = |p: &str| format!("http://app.test:{}{p}", s.port);
    let (http, r, path) = s
        .fresh_sign_in("/oauth2/start?rd=%2F&idp=entra", &s.entra, "alice")
        .await;
    assert_eq!(r.status(), 403, "entra's alice is not partners#alice: {path:#?}");
    let info = get_json(&http, &app("/oauth2/userinfo")).await;
    assert_eq!(info["user"], "entra#alice", "{info}");
    assert_eq!(info["idp"], "entra", "{info}");
    assert!(info["claims"].get("forwarden:idp").is_none(), "{info}");

    let (_, r, path) = s
        .fresh_sign_in("/oauth2/start?rd=%2F&idp=partners", &s.partners, "alice")
        .await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(user_of(r).await, "partners#alice");
}

#[tokio::test]
async fn a_route_with_its_own_app_registration_signs_in_through_it_and_the_provider_enforces_assignment() {
    let Some(s) = site(&policy(), true).await else {
        return;
    };
    let app = |p: &str| format!("http://app.test:{}{p}", s.port);

    // alice is assigned to the payroll app: signed in through it (its client id at Entra).
    let http = browser(s.port, &["app.test"]);
    let (r, path) = browse(&http, &app("/payroll/slip"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let asked: Vec<&String> = path
        .iter()
        .filter(|u| u.starts_with(&format!("{}/auth?", s.entra.issuer)))
        .collect();
    assert_eq!(asked.len(), 1, "{path:#?}");
    assert!(
        asked[0].contains(&format!("client_id={PAYROLL_CLIENT}")),
        "{path:#?}"
    );
    // The session of the payroll app is not the site's own app's: "/" signs in again through
    // forwarden's client (at once: the provider has its session), then passes.
    let (r, path) = browse(&http, &app("/"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");

    // bob is not assigned: the provider refuses him (Entra's AADSTS50105), and forwarden says so.
    let (_, r, path) = s
        .fresh_sign_in(
            "/oauth2/start?rd=%2Fpayroll%2F&idp=entra&client=payroll-app",
            &s.entra,
            "bob",
        )
        .await;
    assert_eq!(r.status(), 403, "{path:#?}");
    let body = r.text().await.unwrap();
    assert!(body.contains("AADSTS50105"), "{body}");

    // A client no route names, and a route whose secret's variable is unset: refused before the
    // provider is asked.
    let (http, r, path) = s
        .fresh_sign_in(
            "/oauth2/start?rd=%2F&idp=entra&client=made-up-app",
            &s.entra,
            "alice",
        )
        .await;
    assert_eq!(r.status(), 400, "{path:#?}");
    assert!(path.iter().all(|u| !u.starts_with(&s.entra.issuer)), "{path:#?}");
    let (r, path) = browse(&http, &app("/unset-secret/"), &s.entra.issuer, "alice").await;
    assert_eq!(r.status(), 400, "{path:#?}");
    assert!(path.iter().all(|u| !u.starts_with(&s.entra.issuer)), "{path:#?}");
    // An unknown provider's name in the link: refused too.
    let (r, _) = browse(
        &http,
        &app("/oauth2/start?rd=%2F&idp=evil"),
        &s.entra.issuer,
        "alice",
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn idp_mix_up_a_callback_claiming_another_issuer_is_refused() {
    // The attack (RFC 9207): the answer to a sign-in at one provider presented as another's.
    let Some(s) = site(&policy(), true).await else {
        return;
    };
    let http = browser(s.port, &["app.test"]);
    let app = |p: &str| format!("http://app.test:{}{p}", s.port);
    let callback = to_callback(
        &http,
        &app("/oauth2/start?rd=%2F&idp=entra"),
        &s.entra.issuer,
        "alice",
    )
    .await;
    let mut forged = url::Url::parse(&callback).unwrap();
    let kept: Vec<(String, String)> = forged
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    forged
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("iss", &s.partners.issuer);
    let r = http.get(forged.as_str()).sent().await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("another identity provider"));
}

#[tokio::test]
async fn the_chooser_page_by_keyboard_in_chromium_remembers_the_last_choice() {
    let Some(_) = require("chromium") else { return };
    let Some(s) = site(&policy(), true).await else {
        return;
    };
    let url = |p: &str| format!("http://app.test:{}{p}", s.port);
    let seen = journey(vec![
        ("JOURNEY", "chooser".into()),
        ("FIRST_URL", url("/x")),
        ("SECOND_URL", url("/x")),
        ("USER", "alice".into()),
        ("ISSUER", s.partners.issuer.clone()),
        ("HOST_RULES", "MAP * 127.0.0.1".into()),
    ])
    .await;
    assert!(seen.get("error").is_none(), "{seen}");
    assert_eq!(seen["chooser_title"], "Sign in", "{seen}");
    assert_eq!(
        seen["chooser_choices"],
        serde_json::json!(["Contoso staff (Entra ID)", "Partners"]),
        "{seen}"
    );
    assert_eq!(seen["focused_first"], "Contoso staff (Entra ID)", "{seen}");
    assert_eq!(seen["focused_after_tab"], "Partners", "{seen}");
    saw(&seen, "first_text", "partners#alice");
    assert_eq!(
        seen["chooser_again_choices"],
        serde_json::json!(["Partners", "Contoso staff (Entra ID)"]),
        "{seen}"
    );
    assert_eq!(seen["focused_again"], "Partners", "{seen}");
    saw(&seen, "again_text", "partners#alice");
}

const CALLER: &str = "11112222-3333-4444-5555-666677778888";
const CALLER_SECRET: &str = "caller-secret-0123456789abcdef";
const API: &str = "api://forwarden-apps";

#[tokio::test]
async fn another_providers_token_on_a_route_limited_to_one_is_refused_before_its_signature_is_checked() {
    let policy = format!(
        "\
- from: http://app.test
  prefix: /api
  identity_providers: [entra]
  allowed_client_ids: [{CALLER}]
- from: http://app.test
  allowed_client_ids: [{CALLER}]
"
    );
    let Some(s) = site_with(&policy, true, &format!("bearer:\n  audiences: [{API}]\n")).await else {
        return;
    };
    let http = browser(s.port, &["app.test"]);
    let app = |p: &str| format!("http://app.test:{}{p}", s.port);
    let call = |url: String, token: String| {
        let http = http.clone();
        async move { http.get(url).bearer_auth(token).sent().await }
    };
    let entra = app_token(&s.entra.issuer, CALLER, CALLER_SECRET, API).await;
    let partners = app_token(&s.partners.issuer, CALLER, CALLER_SECRET, API).await;
    let r = call(app("/api/tasks"), entra.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(user_of(r).await.starts_with("entra#"));
    // Partners' token passes where every provider is accepted, as partners' application.
    let r = call(app("/other"), partners.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(user_of(r).await.starts_with("partners#"));
    // On /api: refused, cached or not, and a forged one is refused for its issuer, not its
    // signature (never checked).
    let forged = {
        let (head, sig) = partners.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}.{flipped}{}", &sig[1..])
    };
    for token in [partners, forged] {
        let r = call(app("/api/tasks"), token).await;
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("issuer is not trusted"), "{challenge}");
    }
}

#[tokio::test]
async fn sign_out_and_back_channel_logout_go_to_and_come_from_the_sessions_own_provider() {
    let Some(redis) = redis_server(&[]).await else {
        return;
    };
    let port = free_port();
    let callback = [app_at(port, "/oauth2/callback")];
    let backchannel = format!("http://127.0.0.1:{port}/oauth2/backchannel-logout");
    let Some(entra) = idp(&callback).await else { return };
    let Some(partners) = idp_with(&callback, &[("BACKCHANNEL_LOGOUT_URI", backchannel.as_str())]).await
    else {
        return;
    };
    let cfg = format!(
        "trusted_proxies: [127.0.0.1/32]\nproviders:\n{}{}session_store:\n  redis:\n    url: redis://127.0.0.1:{}/0\n",
        entry("entra", "Contoso staff", &entra.issuer, ""),
        entry(
            "partners",
            "Partners",
            &partners.issuer,
            "    end_session: true\n"
        ),
        redis.port
    );
    let fw = Fw::start_with(
        "- from: http://app.test\n  allow_any_authenticated_user: true\n",
        &cfg,
    )
    .await;
    let Some(_nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let app = |p: &str| format!("http://app.test:{port}{p}");
    let signed_in = async |idp: &Idp, name: &str| {
        let http = browser(port, &["app.test"]);
        let start = app(&format!("/oauth2/start?rd=%2F&idp={name}"));
        let (r, path) = browse(&http, &start, &idp.issuer, "alice").await;
        assert_eq!(r.status(), 200, "{path:#?}");
        http
    };
    let userinfo = async |http: &reqwest::Client| http.get(app("/oauth2/userinfo")).sent().await.status();

    // Sign-out of a partners session goes on to partners' end_session endpoint; of an Entra
    // session (end_session off there), it does not.
    let p = signed_in(&partners, "partners").await;
    let r = p.get(app("/oauth2/sign_out")).sent().await;
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with(&format!("{}/session/end", partners.issuer)),
        "{to}"
    );
    let e = signed_in(&entra, "entra").await;
    let r = e.get(app("/oauth2/sign_out")).sent().await;
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        !to.starts_with(&entra.issuer) && !to.starts_with(&partners.issuer),
        "{to}"
    );

    // A logout at partners (its own page, in the browser that has its session) reaches
    // forwarden by back-channel: partners' session ends, Entra's alice keeps hers.
    let p = signed_in(&partners, "partners").await;
    let e = signed_in(&entra, "entra").await;
    assert_eq!(userinfo(&p).await, 200);
    sign_out_at_provider(&p, &partners.issuer).await;
    let mut ended = false;
    for _ in 0..150 {
        if userinfo(&p).await == 401 {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ended, "partners' back-channel logout did not end its session");
    assert_eq!(userinfo(&e).await, 200, "Entra's session is not partners'");
}

/// examples/providers (docs/providers.md's configuration) loads; `explain --idp` decides as the
/// server would: a partners' session on a staff-only route is sent to sign in with Entra.
#[test]
fn the_providers_example_loads_and_explain_takes_the_provider() {
    let dir = tempfile::TempDir::new().unwrap();
    for f in ["forwarden.yaml", "policy.yaml"] {
        std::fs::copy(repo().join("examples/providers").join(f), dir.path().join(f)).unwrap();
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"))
            .args(args)
            .arg("--config")
            .arg(dir.path().join("forwarden.yaml"))
            .env("FORWARDEN_COOKIE_SECRET", SECRET)
            .env("ENTRA_CLIENT_SECRET", "x")
            .env("PARTNERS_CLIENT_SECRET", "y")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["check"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("idp_client_secret is ${PAYROLL_CLIENT_SECRET}, which is not set here"),
        "{out}"
    );
    let explain = |url: &str, more: &[&str]| {
        let mut args = vec!["explain", "--url", url, "--email", "pat@partner.example"];
        args.extend(more);
        run(&args).1
    };
    let internal = "https://wiki.contoso.example/internal/x";
    let out = explain(internal, &["--idp", "partners"]);
    assert!(
        out.starts_with("login\n") && out.contains("identity_providers"),
        "{out}"
    );
    assert!(explain(internal, &["--idp", "entra"]).starts_with("allow\n"));
    assert!(explain("https://desk.contoso.example/", &["--idp", "partners"]).starts_with("allow\n"));
    assert!(explain("https://desk.contoso.example/", &["--idp", "entra"]).starts_with("forbidden\n"));
    let payroll = "https://payroll.contoso.example/";
    assert!(explain(payroll, &["--idp", "entra"]).starts_with("login\n"));
    let client = [
        "--idp",
        "entra",
        "--idp-client",
        "<payroll-application-client-id>",
    ];
    assert!(explain(payroll, &client).starts_with("allow\n"));
    let (ok, _, err) = run(&["explain", "--url", internal, "--idp", "nobody"]);
    assert!(!ok && err.contains("--idp nobody: not a provider"), "{err}");
    // A route naming a provider the configuration lacks: check says where.
    let mut policy = std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap();
    policy.push_str("- from: https://x.contoso.example\n  identity_providers: [entra, partner]\n  allow_any_authenticated_user: true\n");
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let (ok, _, err) = run(&["check"]);
    assert!(
        !ok && err.contains("identity_providers names `partner`, which is not a provider"),
        "{err}"
    );
}

/// Single sign-on across domains with several providers: the central host hands over only a
/// session the page's route accepts; with another provider's session it signs in with the
/// route's provider first (no loop between the hand-off and the route).
#[tokio::test]
async fn a_hand_off_to_a_route_of_another_provider_signs_in_with_that_provider_first() {
    let port = free_port();
    let callback = [format!("http://auth.example.com:{port}/oauth2/callback")];
    let Some(entra) = idp(&callback).await else { return };
    let Some(partners) = idp(&callback).await else {
        return;
    };
    let cfg = format!(
        "trusted_proxies: [127.0.0.1/32]\npublic_url: http://auth.example.com:{port}\nallowed_redirect_domains: [.example.com]\nproviders:\n{}{}",
        entry("entra", "Contoso staff", &entra.issuer, ""),
        entry("partners", "Partners", &partners.issuer, "")
    );
    let policy = "\
- from: http://app.example.com
  identity_providers: [entra]
  allow_any_authenticated_user: true
- from: http://wiki.example.org
  identity_providers: [partners]
  allow_any_authenticated_user: true
";
    let fw = Fw::start_full(
        policy,
        "  domain: .example.com\n  other_domains: [.example.org]\n",
        &cfg,
    )
    .await;
    let Some(_nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let http = browser(port, &["auth.example.com", "app.example.com", "wiki.example.org"]);
    let url = |host: &str, p: &str| format!("http://{host}:{port}{p}");
    let (r, path) = browse(&http, &url("app.example.com", "/"), &entra.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(user_of(r).await.starts_with("entra#"));
    let (r, path) = browse(
        &http,
        &url("wiki.example.org", "/page"),
        &partners.issuer,
        "alice",
    )
    .await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(
        path.iter().any(|u| u.contains("/oauth2/handoff/accept?")),
        "{path:#?}"
    );
    assert!(path.iter().any(|u| u.starts_with(&partners.issuer)), "{path:#?}");
    assert!(
        path.iter()
            .all(|u| !u.contains("/oauth2/start") || !u.contains("idp=entra")),
        "{path:#?}"
    );
    assert_eq!(user_of(r).await, "partners#alice");
}

/// A session of a provider the configuration no longer has (removed, or the unnamed `oidc:`
/// one after a move to `providers:`) is no session: never judged as if it were still valid.
#[tokio::test]
async fn a_session_of_a_provider_no_longer_configured_counts_as_none() {
    let cfg = format!(
        "trusted_proxies: [127.0.0.1/32]\nproviders:\n{}",
        entry("entra", "Contoso staff", "http://127.0.0.1:9/unreachable", "")
    );
    let fw = Fw::start_with(
        "- from: http://app.test\n  allow_any_authenticated_user: true\n",
        &cfg,
    )
    .await;
    let check = async |idp: Option<&str>| {
        let mut id = Identity {
            subject: "alice".into(),
            email: Some("alice@contoso.com".into()),
            ..Identity::default()
        };
        if let Some(name) = idp {
            id.signed_in_by(name, "");
        }
        client(&[])
            .get(fw.url("/oauth2/auth"))
            .forwarded("http", "app.test", "/")
            .header("cookie", fw.cookie(&id))
            .sent()
            .await
            .status()
            .as_u16()
    };
    assert_eq!(check(Some("entra")).await, 200);
    assert_eq!(check(Some("retired")).await, 401);
    assert_eq!(
        check(None).await,
        401,
        "the unnamed provider's session, after the move to providers:"
    );
}
