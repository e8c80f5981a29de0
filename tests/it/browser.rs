//! The same sign-in in a real browser (Debian chromium, playwright-core), with screenshots of
//! the protected page and of the 403 page saved under tests/artifacts/.

use std::process::Command;

use crate::util::*;

#[tokio::test]
async fn sign_in_with_chromium_and_screenshots() {
    let Some(_) = require("chromium") else { return };
    let port = free_port();
    let Some(idp) = idp(&[format!("http://app.test:{port}/oauth2/callback")]).await else {
        return;
    };
    // Alice is in group …03e9; /admin is for …03ea (Bob's).
    let policy = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /admin
  allowed_groups: [000003ea-aaaa-4bbb-8ccc-0000000003ea]
";
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant());
    let fw = Fw::start_with(policy, &extra).await;
    let Some(nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let start = format!("http://app.test:{port}/docs?tab=1&b=2");
    let out = tokio::task::spawn_blocking({
        let (start, artifacts) = (start.clone(), artifacts.clone());
        move || {
            Command::new("node")
                .arg(repo().join("tests/e2e/browser.mjs"))
                .env("START_URL", &start)
                .env("FORBIDDEN_URL", format!("http://app.test:{port}/admin/"))
                .env("USER", "alice")
                .env("HOST_RULES", "MAP app.test 127.0.0.1")
                .env("ARTIFACTS", &artifacts)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
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
    assert!(
        seen["protected_text"]
            .as_str()
            .unwrap()
            .contains("alice@contoso.com"),
        "{seen}"
    );
    assert_eq!(seen["forbidden_status"], 403);
    let forbidden = seen["forbidden_text"].as_str().unwrap();
    assert!(
        forbidden.contains("Access denied")
            && forbidden.contains("alice@contoso.com")
            && forbidden.contains("Sign out"),
        "{seen}"
    );
    for shot in ["protected.png", "forbidden.png"] {
        let len = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot} was not saved");
    }
}
