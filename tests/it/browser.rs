//! The same sign-in in a real browser (Debian chromium, playwright-core), with screenshots of
//! the protected page and of the 403 page saved under tests/artifacts/.

use crate::util::*;

#[tokio::test]
async fn sign_in_with_chromium_and_screenshots() {
    let Some(_) = require("chromium") else { return };
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    // Alice is in group …03e9; /admin is for …03ea (Bob's).
    let policy = CONTOSO_POLICY;
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant());
    let fw = Fw::start_with(policy, &extra).await;
    let Some(nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let start = app_at(port, "/docs?tab=1&b=2");
    let out = node_run(
        "tests/e2e/browser.mjs",
        vec![
            ("START_URL", start.clone()),
            ("FORBIDDEN_URL", app_at(port, "/admin/")),
            ("USER", "alice".into()),
            ("HOST_RULES", "MAP app.test 127.0.0.1".into()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed: {}\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nginx.logs(),
        idp.proc.logs()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert!(
        seen["provider_url"].as_str().unwrap().starts_with(&idp.issuer),
        "{seen}"
    );
    assert_eq!(seen["protected_url"], start.as_str());
    saw(&seen, "protected_text", "alice@contoso.com");
    assert_eq!(seen["forbidden_status"], 403);
    let forbidden = seen["forbidden_text"].as_str().unwrap();
    assert!(
        forbidden.contains("Access denied")
            && forbidden.contains("alice@contoso.com")
            && forbidden.contains("Sign out"),
        "{seen}"
    );
    let artifacts = repo().join("tests/artifacts");
    for shot in ["protected.png", "forbidden.png"] {
        let len = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot} was not saved");
    }
}
