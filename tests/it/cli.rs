//! The `forwarden` command: check and explain, with their output under snapshot.

use std::process::Command;

use crate::util::*;

fn forwarden(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forwarden"))
        .args(args)
        .current_dir(repo())
        .env("FORWARDEN_COOKIE_SECRET", SECRET)
        .env_remove("FORWARDEN_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_seed_and_the_examples() {
    let (code, out, err) = forwarden(&["check", "--config", "examples/forwarden.yaml"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out, @r"
    policies/homelab.yaml:13:3: note: `allow_websockets` is accepted and ignored (1 route): it is a Pomerium proxy setting; configure it in your proxy
    policies/homelab.yaml:4:3: note: `to` is accepted and ignored (3 routes): the proxy forwards the traffic, forwarden only decides
    ok: examples/forwarden.yaml is valid (9 routes, 3 named policies, 2 policy files)
    ");
}

#[test]
fn check_lists_every_problem_with_file_line_column() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "- from: https://a.example.com\n  allowed_user: [x]\n- from: https://b.example.com\n  regex: '(['\n  policy:\n    allow:\n      or:\n        - emial: x@example.com\n        - source_ip: 10.0.0.300/8\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("f.yaml"),
        "cookie:\n  secrets: [too-short]\n  lifetime: forever\npolicy_files: [bad.yaml, missing.yaml]\n",
    )
    .unwrap();
    let cfg = dir.path().join("f.yaml");
    let (code, out, err) = forwarden(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let err = err.replace(&dir.path().display().to_string(), "DIR");
    // Every problem of one run: the config's, and the policy files' it names.
    insta::assert_snapshot!(err, @r"
    DIR/f.yaml:2:13: secret is 9 bytes; at least 32 are needed (openssl rand -base64 32)
    DIR/f.yaml:3:13: `forever` is not a duration like 90s, 30m, 12h or 7d
    DIR/missing.yaml: cannot read policy file: No such file or directory (os error 2)
    DIR/bad.yaml:2:3: unknown field `allowed_user`, expected one of `from`, `prefix`, `path`, `regex`, `methods`, `allowed_users`, `allowed_domains`, `allowed_groups`, `allowed_roles`, `roles`, `allowed_idp_claims`, `allowed_client_ids`, `allowed_scopes`, `allow_any_authenticated_user`, `allow_public_unauthenticated_access`, `cors_allow_preflight`, `identity_providers`, `idp_client_id`, `idp_client_secret`, `policy`
    DIR/bad.yaml:4:10: invalid regex: error: unclosed character class
    DIR/bad.yaml:8:11: unknown criterion `emial`: expected accept, reject, authenticated_user, email, domain, user, groups, client_id, scope, amr, acr, acrs, claim/<name>, http_method, http_path or source_ip
    DIR/bad.yaml:9:22: `10.0.0.300/8` is not an IP address or CIDR range
    7 problem(s); DIR/f.yaml is not valid
    ");
    // Structural problems (an unknown key, a value of the wrong type) are all reported too,
    // with the rest, in one run.
    std::fs::write(
        dir.path().join("g.yaml"),
        "lifetme: 8h\nmetrics_listen: 9180\ncookie:\n  secrets: [too-short]\n  lifetme: 8h\npolicy_files: [missing.yaml]\n",
    )
    .unwrap();
    let cfg_g = dir.path().join("g.yaml");
    let (code, _, err) = forwarden(&["check", "--config", cfg_g.to_str().unwrap()]);
    assert_eq!(code, 1);
    let err = err.replace(&dir.path().display().to_string(), "DIR");
    for expected in [
        "DIR/g.yaml:1:1: unknown field `lifetme`",
        "DIR/g.yaml:2:1: invalid type: integer `9180`, expected a string",
        "DIR/g.yaml:5:3: unknown field `lifetme`",
        "DIR/missing.yaml: cannot read policy file",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    // With the config fixed, every problem of the policy files, at once.
    std::fs::write(
        dir.path().join("f.yaml"),
        format!("cookie:\n  secrets: ['{SECRET}']\npolicy_files: [bad.yaml, missing.yaml]\n"),
    )
    .unwrap();
    let (code, _, err) = forwarden(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    let err = err.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(err, @r"
    DIR/missing.yaml: cannot read policy file: No such file or directory (os error 2)
    DIR/bad.yaml:2:3: unknown field `allowed_user`, expected one of `from`, `prefix`, `path`, `regex`, `methods`, `allowed_users`, `allowed_domains`, `allowed_groups`, `allowed_roles`, `roles`, `allowed_idp_claims`, `allowed_client_ids`, `allowed_scopes`, `allow_any_authenticated_user`, `allow_public_unauthenticated_access`, `cors_allow_preflight`, `identity_providers`, `idp_client_id`, `idp_client_secret`, `policy`
    DIR/bad.yaml:4:10: invalid regex: error: unclosed character class
    DIR/bad.yaml:8:11: unknown criterion `emial`: expected accept, reject, authenticated_user, email, domain, user, groups, client_id, scope, amr, acr, acrs, claim/<name>, http_method, http_path or source_ip
    DIR/bad.yaml:9:22: `10.0.0.300/8` is not an IP address or CIDR range
    5 problem(s); DIR/f.yaml is not valid
    ");
}

#[test]
fn explain_first_line_is_one_word() {
    let explain = |url: &str, more: &[&str]| {
        let mut args = vec!["explain", "--config", "examples/forwarden.yaml", "--url", url];
        args.extend(more);
        let (code, out, _) = forwarden(&args);
        (code, out)
    };
    let (code, out) = explain(
        "https://app1.external.domain/",
        &["--email", "user1@azuread.domain"],
    );
    assert_eq!(code, 0);
    insta::assert_snapshot!(out, @r"
    allow
    route: policies/homelab.yaml:3 (https://app1.external.domain)
    rule: allow if user is user1@azuread.domain (policies/homelab.yaml:5:3)
    ");
    let (_, out) = explain(
        "https://grafana.example.com/admin/x",
        &["--email", "a@example.com"],
    );
    insta::assert_snapshot!(out, @r"
    forbidden
    route: policies/platform.yaml:27 (https://grafana.example.com prefix /admin/)
    rule: no allow rule of the route matches this user
    ");
    let (_, out) = explain(
        "https://grafana.example.com/admin/x",
        &["--group", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"],
    );
    assert_eq!(out.lines().next(), Some("allow"));
    let (_, out) = explain("https://wiki.example.com/", &["--anonymous"]);
    assert_eq!(out.lines().next(), Some("login"));
    let (_, out) = explain("https://nowhere.example.org/", &["--email", "a@example.com"]);
    insta::assert_snapshot!(out, @r"
    forbidden
    route: none
    rule: no route covers this URL; requests no route covers are denied
    ");
    let (_, out) = explain(
        "https://demo.example.com/x",
        &["--method", "DELETE", "--email", "alice@partner.org"],
    );
    assert_eq!(out.lines().next(), Some("forbidden"));
    assert!(out.contains("deny if method is DELETE"), "{out}");
}

#[test]
fn check_prints_the_redirect_uris_to_register() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "- from: https://app.example.com\n  allow_any_authenticated_user: true\n- from: https://wiki.example.com\n  allow_any_authenticated_user: true\n",
    )
    .unwrap();
    let oidc = "oidc:\n  issuer: https://login.microsoftonline.com/organizations/v2.0\n  client_id: app\n  client_secret: s3cret\n  azure:\n    allowed_tenants: any\n";
    let base = format!("cookie:\n  secrets: ['{SECRET}']\npolicy_files: [p.yaml]\n{oidc}");
    std::fs::write(dir.path().join("a.yaml"), &base).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        format!("{base}public_url: https://auth.example.com\n"),
    )
    .unwrap();
    let (code, out, err) = forwarden(&["check", "--config", dir.path().join("a.yaml").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = out.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(out, @r"
    redirect URIs to register at the identity provider (one per protected host):
      https://app.example.com/oauth2/callback
      https://wiki.example.com/oauth2/callback
    ok: DIR/a.yaml is valid (2 routes, 0 named policies, 1 policy file)
    ");
    let (_, out, _) = forwarden(&["check", "--config", dir.path().join("b.yaml").to_str().unwrap()]);
    let out = out.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(out, @r"
    redirect URI to register at the identity provider: https://auth.example.com/oauth2/callback
    ok: DIR/b.yaml is valid (2 routes, 0 named policies, 1 policy file)
    ");
}

#[test]
fn check_warns_about_shadowed_routes_overlapping_wildcards_and_rules_that_never_match() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "\
- from: https://*.example.com
  allowed_domains: [example.com]
- from: https://*.dev.example.com
  allowed_groups: [developers]
- from: https://*.dev.example.com
  allowed_users: [alice@example.com]
- from: https://wiki.example.com
  allowed_domains: ['@example.com']
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("f.yaml"),
        format!("cookie:\n  secrets: ['{SECRET}']\npolicy_files: [p.yaml]\n"),
    )
    .unwrap();
    let cfg = dir.path().join("f.yaml");
    let (code, out, err) = forwarden(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings do not fail the check: {err}");
    let out = out.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(out, @r"
    DIR/p.yaml:5:3: warning: this route is never used: the route at DIR/p.yaml:3 matches the same requests (https://*.dev.example.com) and comes first
    DIR/p.yaml:3:3: warning: wildcard hosts *.dev.example.com and *.example.com (at DIR/p.yaml:1) overlap: a host under dev.example.com is decided by the *.dev.example.com routes; *.example.com routes apply to it only for paths none of those cover
    DIR/p.yaml:8:3: warning: this rule can never match: `@example.com` is not a domain (write it without `@` or a scheme), so no email domain equals it (allow if email domain is @example.com (DIR/p.yaml:8:3))
    ok: DIR/f.yaml is valid (4 routes, 0 named policies, 1 policy file, 3 warnings)
    ");
}

/// Regression: `check … | head -n 1` and `explain … | true` made the CLI panic (exit 101) on
/// the closed pipe; a full disk did too. Now a closed pipe ends it quietly and a full disk is an
/// error with a message.
#[test]
fn cli_output_to_a_closed_pipe_or_a_full_disk_does_not_panic() {
    use std::process::Stdio;
    for args in [
        vec!["check", "--config", "examples/forwarden.yaml"],
        vec![
            "explain",
            "--config",
            "examples/forwarden.yaml",
            "--url",
            "https://grafana.example.com/",
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_forwarden"))
            .args(&args)
            .current_dir(repo())
            .env("FORWARDEN_COOKIE_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_forwarden"))
            .args(["check", "--config", "examples/forwarden.yaml"])
            .current_dir(repo())
            .env("FORWARDEN_COOKIE_SECRET", SECRET)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot write to standard output"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn policy_files_that_are_empty_not_utf8_or_over_a_limit_are_named_with_their_position() {
    let dir = tempfile::TempDir::new().unwrap();
    let cfg = |policy: &str| {
        let c = dir.path().join(format!("{policy}.cfg.yaml"));
        std::fs::write(
            &c,
            format!("cookie:\n  secrets: ['{SECRET}']\npolicy_files: [{policy}]\nlimits:\n  max_policy_bytes: 2048\n"),
        )
        .unwrap();
        c
    };
    let run = |c: &std::path::Path| {
        let (code, out, err) = forwarden(&["check", "--config", c.to_str().unwrap()]);
        let dir = dir.path().display().to_string();
        (code, out.replace(&dir, "DIR"), err.replace(&dir, "DIR"))
    };
    std::fs::write(dir.path().join("empty.yaml"), "  \n").unwrap();
    let (code, out, _) = run(&cfg("empty.yaml"));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("DIR/empty.yaml: warning: the file is empty"),
        "{out}"
    );
    std::fs::write(
        dir.path().join("latin1.yaml"),
        b"- from: https://a.example.com\n  allowed_users: [j\xf6rg@example.com]\n",
    )
    .unwrap();
    let (code, _, err) = run(&cfg("latin1.yaml"));
    assert_eq!(code, 1);
    assert!(
        err.starts_with("DIR/latin1.yaml:2:20: the file is not UTF-8 (byte 0xf6 here): save it as UTF-8"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("dup.yaml"),
        "- from: https://a.example.com\n  from: https://b.example.com\n",
    )
    .unwrap();
    let (_, _, err) = run(&cfg("dup.yaml"));
    assert!(
        err.starts_with("DIR/dup.yaml:2:3: `from` is written twice in the same mapping: keep one"),
        "{err}"
    );
    std::fs::write(dir.path().join("big.yaml"), "#".repeat(4096)).unwrap();
    let (_, _, err) = run(&cfg("big.yaml"));
    assert!(
        err.starts_with("DIR/big.yaml: the policy file is larger than limits.max_policy_bytes (2048 bytes)"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("many.yaml"),
        "[".to_string() + &"1,".repeat(1001) + "1]",
    )
    .unwrap();
    let (_, _, err) = run(&cfg("many.yaml"));
    assert!(err.contains("may have at most 1000 YAML values"), "{err}");
    assert!(
        !err.contains("Options") && !err.contains("{ "),
        "no library hints or debug output: {err}"
    );
}

/// A guide's first run over plain http failed with "state mismatch" and no word of why: a
/// Secure cookie is never sent back over http. `check` says so before anyone tries.
#[test]
fn check_warns_when_a_secure_cookie_meets_an_http_site() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "- from: http://code.example.com\n  allowed_domains: [example.com]\n- from: http://open.example.com\n  allow_public_unauthenticated_access: true\n",
    )
    .unwrap();
    let cfg = |secure: bool| {
        let c = dir.path().join(format!("f{secure}.yaml"));
        std::fs::write(
            &c,
            format!("cookie:\n  secrets: ['{SECRET}']\n  secure: {secure}\npolicy_files: [p.yaml]\n"),
        )
        .unwrap();
        c
    };
    let (code, out, _) = forwarden(&["check", "--config", cfg(true).to_str().unwrap()]);
    assert_eq!(code, 0);
    let out = out.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(out, @r#"
    warning: cookie.secure is on, but DIR/p.yaml:1 use http: browsers do not send Secure cookies over http, so signing in there fails with "state mismatch". Serve those sites over https, or set cookie.secure: false for a local test
    ok: DIR/ftrue.yaml is valid (2 routes, 0 named policies, 1 policy file, 1 warning)
    "#);
    let (_, out, _) = forwarden(&["check", "--config", cfg(false).to_str().unwrap()]);
    assert!(!out.contains("warning"), "{out}");
}

/// `explain` as an API client: the calling application and its scopes decide `client_id` and
/// `scope` rules; an application's own token is not an authenticated user.
#[test]
fn explain_as_an_api_client() {
    let policy = "- from: https://api.example.com\n  prefix: /jobs\n  allowed_client_ids: [svc-a]\n- from: https://api.example.com\n  prefix: /files\n  allowed_scopes: [Files.Read]\n- from: https://api.example.com\n  allow_any_authenticated_user: true\n";
    let (_dir, cfg) = config_with_policy(policy);
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        let (code, out, err) = forwarden(&all);
        assert_eq!(code, 0, "{err}");
        out.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(
        explain(&["--url", "https://api.example.com/jobs/1", "--client-id", "svc-a"]),
        "allow"
    );
    assert_eq!(
        explain(&["--url", "https://api.example.com/jobs/1", "--client-id", "svc-b"]),
        "forbidden"
    );
    let files = [
        "--url",
        "https://api.example.com/files/x",
        "--client-id",
        "svc-b",
        "--email",
        "a@example.com",
    ];
    assert_eq!(
        explain(&[&files[..], &["--scope", "Files.Read"]].concat()),
        "allow"
    );
    assert_eq!(explain(&files), "forbidden");
    // An application's own token is not a signed-in user.
    assert_eq!(
        explain(&["--url", "https://api.example.com/", "--client-id", "svc-a"]),
        "forbidden"
    );
    assert_eq!(
        explain(&["--url", "https://api.example.com/", "--email", "a@example.com"]),
        "allow"
    );
}

/// A folder with a policy file `p.yaml` and a configuration `f.yaml` naming it; the
/// configuration's path.
fn config_with_policy(policy: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("p.yaml"), policy).unwrap();
    let cfg = dir.path().join("f.yaml");
    std::fs::write(
        &cfg,
        format!("cookie:\n  secrets: ['{SECRET}']\npolicy_files: [p.yaml]\n"),
    )
    .unwrap();
    (dir, cfg)
}
