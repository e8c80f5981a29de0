//! The README's first command, `scripts/demo`, as a visitor uses it: started as it is (on
//! ports chosen here), walked through in chromium, stopped with Ctrl-C (SIGINT to its process
//! group, as a terminal sends it), after which nothing it started is still listening.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Sends SIGINT to a process group when dropped.
struct StopGroup(u32);

impl Drop for StopGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.0)])
            .status();
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn demo_starts_shows_the_whole_story_and_stops_on_ctrl_c() {
    for component in ["nginx", "node", "chromium", "redis-server"] {
        if require(component).is_none() {
            return;
        }
    }
    let state = tempfile::TempDir::new().unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    // `env --default-signal=INT`: as from a terminal, SIGINT is not ignored, even when this
    // test runs in the background (where the shell that started it ignores SIGINT).
    let mut child = Command::new("env")
        .arg("--default-signal=INT")
        .arg(repo().join("scripts/demo"))
        .env("DEMO_PORT", ports[0].to_string())
        .env("DEMO_IDP_PORT", ports[1].to_string())
        .env("DEMO_FORWARDEN_PORT", ports[2].to_string())
        .env("DEMO_APP_PORT", ports[3].to_string())
        .env("DEMO_METRICS_PORT", ports[4].to_string())
        // Sessions on Redis (DEMO_REDIS=1), as docs/sessions.md offers it.
        .env("DEMO_REDIS", "1")
        .env("DEMO_REDIS_PORT", ports[5].to_string())
        .env("DEMO_DIR", state.path())
        .env("FORWARDEN_BIN", env!("CARGO_BIN_EXE_forwarden"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(state.path().join("terminal-stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Whatever happens below, the demo's process group is stopped (a failed assertion must not
    // leave its servers running).
    let _stop = StopGroup(pid);
    // The banner, then forwarden's audit lines, on stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = String::new();
    let start = Instant::now();
    while !banner.contains("Ctrl-C stops everything") {
        match rx.recv_timeout(Duration::from_secs(60).saturating_sub(start.elapsed())) {
            Ok(l) => {
                banner.push_str(&l);
                banner.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the demo never said it was ready:\n{banner}\n{}",
                    std::fs::read_to_string(state.path().join("terminal-stderr.log")).unwrap_or_default()
                );
            }
        }
    }
    let app = format!("http://app.localhost:{}/", ports[0]);
    assert!(banner.contains(&format!("open {app}")), "{banner}");
    assert!(banner.contains("alice@contoso.com"), "{banner}");

    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = tokio::task::spawn_blocking({
        let (app, artifacts) = (app.clone(), artifacts.clone());
        move || {
            Command::new("node")
                .arg(repo().join("tests/e2e/demo.mjs"))
                .env("APP_URL", &app)
                .env("ARTIFACTS", &artifacts)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let walked = String::from_utf8_lossy(&out.stdout).to_string();
    let logs = || {
        ["idp.log", "whoami.log", "nginx-error.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(state.path().join(f)).unwrap_or_default()
                )
            })
            .collect::<String>()
    };
    assert!(
        out.status.success(),
        "{walked}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let seen: serde_json::Value = serde_json::from_str(walked.lines().last().unwrap()).unwrap();
    let idp = format!("http://127.0.0.1:{}/", ports[1]);
    assert!(seen["sign_in_url"].as_str().unwrap().starts_with(&idp), "{seen}");
    let text = seen["app_text"].as_str().unwrap();
    assert!(text.contains("Hello, alice@contoso.com"), "{text}");
    assert!(
        text.contains("000003e9-aaaa-4bbb-8ccc-0000000003e9"),
        "her group: {text}"
    );
    assert!(text.contains("Signed identity: verified"), "{text}");
    assert_eq!(seen["admin_status"], 403);
    let admin = seen["admin_text"].as_str().unwrap();
    assert!(
        admin.contains("Access denied") && admin.contains("alice@contoso.com"),
        "{admin}"
    );
    assert!(seen["sign_out_url"].as_str().unwrap().starts_with(&idp), "{seen}");
    assert!(
        seen["after_sign_out_visit"].as_str().unwrap().starts_with(&idp),
        "signed out, the app asks to sign in again: {seen}"
    );

    // Every user the banner names signs in: bob reaches /admin, carol only the app, and dave's
    // 250 groups come from the Graph stand-in (overage).
    let user = |u: &str| seen["users"][u].clone();
    assert!(
        user("bob")["text"]
            .as_str()
            .unwrap()
            .contains("Hello, bob@contoso.com"),
        "{seen}"
    );
    assert_eq!(user("bob")["admin_status"], 200, "{seen}");
    assert!(
        user("carol")["text"]
            .as_str()
            .unwrap()
            .contains("Hello, carol@contoso.com"),
        "{seen}"
    );
    assert_eq!(user("carol")["admin_status"], 403, "{seen}");
    let dave = user("dave")["text"]
        .as_str()
        .unwrap_or_else(|| panic!("dave: {}\n{}", user("dave"), logs()))
        .to_string();
    assert!(dave.contains("Hello, dave@contoso.com"), "{dave}");
    for group in [
        "000007d1-aaaa-4bbb-8ccc-0000000007d1",
        "000008ca-aaaa-4bbb-8ccc-0000000008ca",
    ] {
        assert!(
            dave.contains(group),
            "dave's overage groups from Graph: {dave}\n{}",
            logs()
        );
    }

    // The demo's configuration works from any shell: its secrets are in files beside it, where
    // `forwarden sessions list --config .demo/forwarden.yaml` finds them.
    let listed = Command::new(env!("CARGO_BIN_EXE_forwarden"))
        .args(["sessions", "list", "--config"])
        .arg(state.path().join("forwarden.yaml"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert_ran(&listed, "sessions list --config .demo/forwarden.yaml");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("@contoso.com"),
        "the demo's sessions are listed: {}",
        String::from_utf8_lossy(&listed.stdout)
    );

    // Ctrl-C: SIGINT to the whole process group.
    let killed = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the demo exits cleanly on Ctrl-C: {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the demo did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in &ports {
        assert!(!listening(*p), "port {p} is still listening after Ctrl-C");
    }
    let mut rest = String::new();
    while let Ok(l) = rx.try_recv() {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(rest.contains("demo: stopped"), "{rest}");
    let terminal = std::fs::read_to_string(state.path().join("terminal-stderr.log")).unwrap();
    assert!(
        terminal.contains("forwarden::audit") && terminal.contains("result=\"forbidden\""),
        "the terminal shows the audit log: {terminal}"
    );
}
