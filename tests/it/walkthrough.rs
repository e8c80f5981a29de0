//! Every proxy guide, followed as written: its commands, taken from the guide (never copied
//! here), run from an empty folder with a clone of forwarden on a throwaway copy of this machine
//! (`tests/walkthrough/sandbox`), to a signed-in, allowed page in Chromium and the sign-out.
//!
//! The guides' commands are the `$ ` lines of the `console` blocks in one section of the guide;
//! `<!-- steps: install.md -->` there takes in the steps of `docs/install.md` (which copies
//! `examples/guides/forwarden.yaml`). The only words filled in are the three a reader fills in:
//! `<issuer>`, `<client-id>` and `<client-secret>`, here the test identity provider's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The identity provider's port inside the sandbox (its own network namespace).
const IDP_PORT: u16 = 9000;

/// The commands of `section` in `guide` (a file under docs/), in order.
fn steps(guide: &Path, section: &str) -> Vec<String> {
    let text = std::fs::read_to_string(guide).unwrap();
    let heading = format!("## {section}");
    let mut lines = text.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "{} has no section {heading:?}",
        guide.display()
    );
    let mut steps: Vec<String> = Vec::new();
    let mut console = false;
    for line in lines.take_while(|l| !l.starts_with("## ")) {
        let t = line.trim();
        if t.starts_with("```") {
            console = t == "```console";
            continue;
        }
        if !console {
            if t == "<!-- after sign-in -->" {
                // Where the reader signs in with the browser (the sandbox's `# after sign-in`).
                steps.push("# after sign-in".to_string());
                continue;
            }
            if let Some(other) = t
                .strip_prefix("<!-- steps: ")
                .and_then(|r| r.strip_suffix(" -->"))
            {
                steps.extend(self::steps(&guide.with_file_name(other), "Step by step"));
            }
            continue;
        }
        match (t.strip_prefix("$ "), steps.last_mut()) {
            (Some(command), _) => steps.push(command.to_string()),
            // A continuation of the previous command.
            (None, Some(last)) if last.ends_with('\\') => {
                last.pop();
                last.push(' ');
                last.push_str(t);
            }
            // Output shown in the guide.
            _ => {}
        }
    }
    assert!(
        !steps.is_empty(),
        "{} {heading:?} has no commands",
        guide.display()
    );
    steps
}

/// What the machine has before the guide's first step, and where the reader goes afterwards.
struct Machine {
    guide: &'static str,
    section: &'static str,
    /// The packaged services already running (`apt install nginx` starts nginx).
    services: &'static str,
    /// The app the guide protects.
    app: &'static str,
    /// The page the reader opens.
    start: &'static str,
    /// The proxy the guide runs.
    proxy: &'static str,
    /// What the guide's commands must print (in the transcript), in this order.
    prints: &'static [&'static str],
}

/// A proxy guide: the site, signed in and out in the browser after the last step.
const SITE: Machine = Machine {
    guide: "",
    section: "Step by step",
    services: "",
    app: "",
    start: "",
    proxy: "",
    prints: &[],
};

fn walk(m: &Machine) {
    for tool in ["unshare", "ip", "curl", "openssl", "chromium", "node", m.proxy] {
        if !tool.is_empty() && require(tool).is_none() {
            return;
        }
    }
    assert!(
        repo().join("tests/e2e/node_modules/playwright-core").exists(),
        "tests/e2e/node_modules is missing; scripts/test runs npm ci there"
    );
    let issuer = format!("http://127.0.0.1:{IDP_PORT}/{IDP_TENANT}/v2.0");
    let steps: Vec<String> = steps(&repo().join(m.guide), m.section)
        .into_iter()
        .map(|s| {
            s.replace("<issuer>", &issuer)
                .replace("<client-id>", IDP_CLIENT)
                .replace("<client-secret>", IDP_SECRET)
        })
        .collect();
    for s in &steps {
        assert!(!s.contains("'<"), "a placeholder the test cannot fill: {s}");
    }
    let work = tempfile::TempDir::new().unwrap();
    let w = work.path();
    std::fs::write(w.join("steps"), steps.join("\n") + "\n").unwrap();
    let callback = format!("{}oauth2/callback", m.start);
    let after_sign_in = steps.iter().any(|s| s == "# after sign-in");
    let machine = [
        ("IDP_PORT", IDP_PORT.to_string()),
        ("TENANT", IDP_TENANT.to_string()),
        ("CLIENT_ID", IDP_CLIENT.to_string()),
        ("CLIENT_SECRET", IDP_SECRET.to_string()),
        ("REDIRECT_URI", callback),
        ("APP_ADDR", m.app.to_string()),
        ("START_URL", m.start.to_string()),
        ("USER_BUTTON", "dana".to_string()),
        ("SERVICES", m.services.to_string()),
        // With steps after the sign-in, the reader signs out only after them (never: those
        // steps end the session themselves).
        ("SIGN_OUT_AFTER", if after_sign_in { "" } else { "1" }.to_string()),
        ("FORWARDEN_BIN", env!("CARGO_BIN_EXE_forwarden").to_string()),
    ]
    .map(|(k, v)| format!("{k}='{v}'\n"))
    .concat();
    std::fs::write(w.join("machine"), machine).unwrap();
    let out = Command::new("timeout")
        .args(["-k", "5", "150"])
        .arg(repo().join("tests/walkthrough/sandbox"))
        .arg(w)
        .output()
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(w.join(p)).unwrap_or_default();
    let logs = || {
        let mut all = format!(
            "{}\n--- transcript\n{}",
            String::from_utf8_lossy(&out.stderr),
            read("transcript")
        );
        let mut names: Vec<PathBuf> = std::fs::read_dir(w.join("logs"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            all += &format!("\n--- {}\n", p.display());
            all += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        }
        all
    };
    assert!(out.status.success(), "the walkthrough stopped: {}", logs());
    let transcript = read("transcript");
    let mut rest = transcript.as_str();
    for expected in m.prints {
        let at = rest.find(expected).unwrap_or_else(|| {
            panic!(
                "the guide's commands never printed {expected:?} (in order): {}",
                logs()
            )
        });
        rest = &rest[at + expected.len()..];
    }
    if m.start.is_empty() {
        return;
    }
    let seen: serde_json::Value = serde_json::from_str(read("result.json").trim())
        .unwrap_or_else(|e| panic!("no result ({e}): {}", logs()));
    let provider = seen["provider_url"].as_str().unwrap_or_default();
    assert!(provider.starts_with(&issuer), "{seen}\n{}", logs());
    assert_eq!(seen["protected_url"], m.start, "{seen}\n{}", logs());
    let page = seen["protected_text"].as_str().unwrap_or_default();
    assert!(page.contains("dana@example.com"), "{seen}\n{}", logs());
    if after_sign_in {
        return;
    }
    // Signed out: the same page asks to sign in again.
    let chain = seen["after_sign_out_chain"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let again = |prefix: &str| {
        chain
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.starts_with(prefix)))
    };
    assert!(
        again(&format!("{}oauth2/start?rd=", m.start)) && again(&issuer),
        "{seen}\n{}",
        logs()
    );
}

#[test]
fn walkthrough_nginx_plain_http() {
    walk(&Machine {
        guide: "docs/nginx.md",
        section: "Step by step",
        services: "nginx",
        app: "127.0.0.1:8443",
        start: "http://code.example.com/",
        proxy: "nginx",
        ..SITE
    });
}

#[test]
fn walkthrough_nginx_letsencrypt() {
    walk(&Machine {
        guide: "docs/nginx.md",
        section: "With Let's Encrypt (certbot)",
        services: "nginx",
        app: "127.0.0.1:8443",
        start: "https://code.example.com/",
        proxy: "nginx",
        ..SITE
    });
}

#[test]
fn walkthrough_caddy() {
    walk(&Machine {
        guide: "docs/caddy.md",
        section: "Step by step",
        services: "",
        app: "127.0.0.1:3000",
        start: "http://app.example.com/",
        proxy: "caddy",
        ..SITE
    });
}

#[test]
fn walkthrough_haproxy() {
    walk(&Machine {
        guide: "docs/haproxy.md",
        section: "Step by step",
        services: "",
        app: "127.0.0.1:8080",
        start: "http://app.example.com/",
        proxy: "haproxy",
        ..SITE
    });
}

#[test]
fn walkthrough_traefik() {
    walk(&Machine {
        guide: "docs/traefik.md",
        section: "Step by step",
        services: "",
        app: "127.0.0.1:8080",
        start: "http://app.example.com/",
        proxy: "traefik",
        ..SITE
    });
}

#[test]
fn walkthrough_sessions() {
    if require("redis-server").is_none() {
        return;
    }
    walk(&Machine {
        guide: "docs/sessions.md",
        services: "nginx redis-server",
        app: "127.0.0.1:8443",
        start: "http://code.example.com/",
        proxy: "nginx",
        prints: &[
            "$ redis-cli ping\nPONG",
            "ok: /etc/forwarden/forwarden.yaml is valid",
            "(the reader signs in, in the browser)",
            "$ forwarden sessions list",
            "dana@example.com",
            "$ forwarden sessions revoke",
            "revoked 1 session",
            "$ forwarden sessions list",
            "0 sessions",
        ],
        ..SITE
    });
}

#[test]
fn walkthrough_api_clients() {
    walk(&Machine {
        guide: "docs/api-clients.md",
        services: "nginx",
        app: "127.0.0.1:8443",
        start: "http://code.example.com/",
        proxy: "nginx",
        prints: &[
            "ok: /etc/forwarden/forwarden.yaml is valid",
            "$ curl -s -H \"Authorization: Bearer $TOKEN\"",
            "Tasks.Write",
            "11112222-3333-4444-5555-666677778888",
            "$ curl -s -o /dev/null",
            "401",
        ],
        ..SITE
    });
}

#[test]
fn walkthrough_kubernetes() {
    walk(&Machine {
        guide: "docs/kubernetes.md",
        section: "Step by step, without a cluster",
        proxy: "kubectl",
        prints: &[
            "Deployment/forwarden: valid",
            "SecurityPolicy/forwarden: valid (its CRD)",
            "kind: Deployment",
            "image: forwarden:latest",
        ],
        ..SITE
    });
}

/// The fragments the sessions and API-client guides append to the install guide's
/// configuration (examples/guides/session-store.yaml, examples/guides/bearer.yaml) load onto
/// it, and the API client's policy (examples/guides/api-policy.yaml) loads: the walkthroughs
/// above run them for real.
#[test]
fn guide_fragments_load_onto_the_install_configuration() {
    let dir = tempfile::TempDir::new().unwrap();
    let base = std::fs::read_to_string(repo().join("examples/guides/forwarden.yaml")).unwrap();
    let env = |name: &str| match name {
        "FORWARDEN_COOKIE_SECRET" => Some(SECRET.to_string()),
        "FORWARDEN_ISSUER" => Some("https://login.example.com/tenant/v2.0".to_string()),
        _ => Some("x".to_string()),
    };
    std::fs::copy(
        repo().join("examples/guides/api-policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    for fragment in [
        "examples/guides/session-store.yaml",
        "examples/guides/bearer.yaml",
    ] {
        let text = base.clone() + &std::fs::read_to_string(repo().join(fragment)).unwrap();
        let file = dir.path().join("forwarden.yaml");
        std::fs::write(&file, text).unwrap();
        let config =
            forwarden::config::Config::load(&file, &env).unwrap_or_else(|e| panic!("{fragment}: {e:?}"));
        forwarden::policy::PolicySet::load(&config.policy_files, config.limits.max_policy_bytes)
            .unwrap_or_else(|e| panic!("examples/guides/api-policy.yaml: {e:?}"));
    }
}

/// Bug (CI, 2026-12-07): `pkill -x forwarden; forwarden serve …` in a guide returned before
/// the old server had let go of its port, and the new one failed with "Address already in use"
/// (`walkthrough_api_clients`, one CI run). A guide that stops forwarden and starts it in the same command
/// waits, in between, until no forwarden is left (and does so without failing when the old one
/// is already gone: the walkthroughs run each command with `set -e`).
#[test]
fn restart_in_a_guide_waits_for_the_old_server_to_free_its_port() {
    let wait = "while pgrep -x forwarden >/dev/null; do sleep 0.1; done;";
    let mut restarts = 0;
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Some(command) = line.trim().strip_prefix("$ ") else {
                continue;
            };
            let (Some(stop), Some(start)) = (command.find("pkill"), command.find("forwarden serve")) else {
                continue;
            };
            restarts += 1;
            let between = &command[stop..start];
            assert!(
                between.contains(wait),
                "{}: a restart that does not wait for the old server: {command}",
                path.display()
            );
        }
    }
    assert!(
        restarts >= 2,
        "the sessions and API-client guides restart forwarden"
    );
}
