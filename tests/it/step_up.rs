//! Step-up to a stronger sign-in per route (`amr`, `acr`, Entra's `acrs`): a session that
//! lacks what a route's allow rule asks for is sent back to the provider with the request for
//! it (`max_age=0`, `acr_values`, the `claims` parameter), and let in afterwards; a route that
//! does not ask keeps working; a provider that does not grant it gets a 403, not a loop. Run
//! through nginx against the test provider (which grants the second factor on such a request,
//! except to carol, whose account cannot do it).

use crate::util::*;

const POLICY: &str = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /code
  policy:
    allow:
      and:
        - domain: contoso.com
        - amr: mfa
- from: http://app.test
  prefix: /finance
  policy:
    allow:
      and:
        - domain: contoso.com
        - acrs: c1
- from: http://app.test
  prefix: /gold
  policy:
    allow:
      and:
        - domain: contoso.com
        - acr: urn:forwarden:test:gold
";

/// The test provider, forwarden with [`POLICY`], and nginx in front of it on `port`.
struct Site {
    port: u16,
    idp: Idp,
    fw: Fw,
    _nginx: Proc,
}

async fn site() -> Option<Site> {
    let port = free_port();
    let idp = idp(&[app_at(port, "/oauth2/callback")]).await?;
    let fw = Fw::start_with(POLICY, &oidc_config(&idp.issuer, "openid, email", &home_tenant())).await;
    let nginx = fw.behind_nginx(port).await?;
    Some(Site {
        port,
        idp,
        fw,
        _nginx: nginx,
    })
}

/// Each page answers 200 at once: no sign-in round.
async fn pass_at_once(http: &reqwest::Client, issuer: &str, pages: &[String]) {
    for p in pages {
        let (r, path) = browse(http, p, issuer, "alice").await;
        assert_eq!(r.status(), 200, "{p}: {path:#?}");
        assert_eq!(path.len(), 1, "{p}: no sign-in: {path:#?}");
    }
}

/// The authorization request among the URLs a sign-in went through.
fn authorize<'a>(path: &'a [String], issuer: &str) -> Vec<&'a String> {
    path.iter()
        .filter(|u| u.starts_with(&format!("{issuer}/auth?")))
        .collect()
}

#[tokio::test]
async fn a_route_asking_for_mfa_sends_the_session_back_to_sign_in_with_the_request_and_lets_it_in() {
    let Some(site) = site().await else { return };
    let (port, idp) = (site.port, &site.idp);
    let http = browser(port, &["app.test"]);
    let app = |p: &str| format!("http://app.test:{port}{p}");

    // An ordinary sign-in: no step-up asked, the app passes.
    let (r, path) = browse(&http, &app("/"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(
        authorize(&path, &idp.issuer)
            .iter()
            .all(|u| !u.contains("max_age")),
        "{path:#?}"
    );

    // /code asks for mfa: back to the provider with max_age=0, and in afterwards.
    let (r, path) = browse(&http, &app("/code/x"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let asked = authorize(&path, &idp.issuer);
    assert_eq!(asked.len(), 1, "{path:#?}");
    assert!(asked[0].contains("max_age=0"), "{path:#?}");
    assert!(path.iter().any(|u| u.contains("step_up=amr%3Amfa")), "{path:#?}");
    assert_eq!(r.url().path(), "/code/x");
    // The stronger session keeps working everywhere, without another round.
    pass_at_once(&http, &idp.issuer, &[app("/"), app("/code/y")]).await;

    // An Entra authentication context: the claims parameter asks for acrs c1; the session
    // then holds both levels (mfa still passes /code).
    let (r, path) = browse(&http, &app("/finance/report"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let asked = authorize(&path, &idp.issuer);
    assert_eq!(asked.len(), 1, "{path:#?}");
    let query: Vec<(String, String)> = url::Url::parse(asked[0])
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let claims = query.iter().find(|(k, _)| k == "claims").map(|(_, v)| v.as_str());
    assert_eq!(
        claims,
        Some(r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#),
        "{path:#?}"
    );
    // Both levels held.
    pass_at_once(&http, &idp.issuer, &[app("/code/z"), app("/finance/other")]).await;

    // A class of sign-in: acr_values.
    let (r, path) = browse(&http, &app("/gold/"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let asked = authorize(&path, &idp.issuer);
    assert!(
        asked.len() == 1 && asked[0].contains("acr_values=urn%3Aforwarden%3Atest%3Agold"),
        "{path:#?}"
    );
}

/// Regression (redirect loop): a provider that does not grant the step-up sent the browser
/// round between the page and the provider forever. The second time the session still lacks
/// it, the answer is 403 saying why.
#[tokio::test]
async fn step_up_the_provider_does_not_grant_ends_in_403_not_a_redirect_loop() {
    let Some(site) = site().await else { return };
    let (port, idp) = (site.port, &site.idp);
    let http = browser(port, &["app.test"]);
    let (r, path) = browse(&http, &app_at(port, "/code/x"), &idp.issuer, "carol").await;
    assert_eq!(r.status(), 403, "{path:#?}");
    assert_eq!(
        authorize(&path, &idp.issuer).len(),
        1,
        "one round only: {path:#?}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("stronger sign-in"), "{page}");
    // The route that does not ask still lets her in.
    let (r, path) = browse(&http, &app_at(port, "/"), &idp.issuer, "carol").await;
    assert_eq!(r.status(), 200, "{path:#?}");
}

/// A forged step-up parameter (one no policy could have written) is refused before anything
/// reaches the provider: its values would go into the provider's request as written.
#[tokio::test]
async fn forged_step_up_parameter_is_refused_not_passed_to_the_provider() {
    let Some(Site {
        fw,
        idp: _idp,
        _nginx,
        ..
    }) = site().await
    else {
        return;
    };
    for forged in [
        "acrs%3Ac1%22%7D%7D",
        "amr%3Amfa%26prompt%3Dnone",
        "acr%3Aa%20acr%3Ab%20acr%3Ac%20acr%3Ad%20acr%3Ae%20acr%3Af%20acr%3Ag%20acr%3Ah%20acr%3Ai%20acr%3Aj%20acr%3Ak%20acr%3Al%20acr%3Am%20acr%3An%20acr%3Ao%20acr%3Ap%20acr%3Aq",
        "redirect_uri%3Ahttp%3A%2F%2Fevil",
    ] {
        let r = client(&[])
            .get(format!("http://{}/oauth2/start?rd=%2F&step_up={forged}", fw.addr))
            .header("host", "app.test")
            .sent()
            .await;
        assert_eq!(r.status(), 400, "{forged}");
        assert!(r.headers().get("location").is_none(), "{forged}");
    }
}

/// `explain` gives the step-up the server would ask for (examples/step-up/policy.yaml, the
/// README's example, and examples/step-up/acrs.yaml, docs/azure.md's): a session without it is
/// sent to sign in again, one with it passes.
#[test]
fn explain_names_the_step_up_a_session_lacks() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::copy(
        repo().join("examples/step-up/policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("examples/step-up/acrs.yaml"),
        dir.path().join("acrs.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("forwarden.yaml"),
        format!("listen: 127.0.0.1:4180\ncookie:\n  secrets: [\"{SECRET}\"]\npolicy_files: [policy.yaml, acrs.yaml]\n"),
    )
    .unwrap();
    let explain_at = |url: &str, more: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"))
            .args(["explain", "--config"])
            .arg(dir.path().join("forwarden.yaml"))
            .args(["--url", url, "--email", "dana@example.com"])
            .args(more)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let explain = |more: &[&str]| explain_at("https://code.example.com/", more);
    let without = explain(&[]);
    assert!(without.starts_with("login\n"), "{without}");
    assert!(
        without.contains("asks for a stronger sign-in (amr mfa)"),
        "{without}"
    );
    let with = explain(&["--claim", "amr=pwd", "--claim", "amr=mfa"]);
    assert!(with.starts_with("allow\n"), "{with}");
    let finance = "https://wiki.example.com/finance/q4";
    let without = explain_at(finance, &[]);
    assert!(
        without.starts_with("login\n") && without.contains("authentication context c1"),
        "{without}"
    );
    assert!(explain_at(finance, &["--claim", "acrs=c1"]).starts_with("allow\n"));
    assert!(explain_at("https://wiki.example.com/", &[]).starts_with("allow\n"));
}

/// In Chromium: signed in without MFA, a route asking for it sends the browser back to the
/// provider's sign-in page, and after it to the page; the app stays open.
#[tokio::test]
async fn step_up_to_mfa_in_chromium() {
    let Some(_) = require("chromium") else { return };
    let Some(site) = site().await else { return };
    let (port, idp) = (site.port, &site.idp);
    let seen = journey(vec![
        ("JOURNEY", "step_up".into()),
        ("FIRST_URL", app_at(port, "/")),
        ("SECOND_URL", app_at(port, "/code/x")),
        ("USER", "alice".into()),
        ("ISSUER", idp.issuer.clone()),
        ("HOST_RULES", "MAP app.test 127.0.0.1".into()),
    ])
    .await;
    assert!(seen.get("error").is_none(), "{seen}");
    let chain: Vec<&str> = urls(&seen, "step_up_chain");
    assert!(
        chain
            .iter()
            .any(|u| u.starts_with(&idp.issuer) && u.contains("max_age=0")),
        "{seen}"
    );
    saw(&seen, "second_text", "alice@contoso.com");
    assert_eq!(seen["first_again_url"], app_at(port, "/"), "{seen}");
}
