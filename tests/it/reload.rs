//! Hot reload with the real binary: a valid policy takes effect without a restart or a dropped
//! request; an invalid one is rejected and the last good policy stays; SIGHUP reloads at once.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forwarden::session::Keys;

use crate::util::*;

const DENY: &str = "- from: https://app.example.com\n  allowed_users: [nobody@example.com]\n";
const ALLOW: &str = "- from: https://app.example.com\n  allowed_users: [alice@example.com]\n";

struct Server {
    proc: Proc,
    policy: std::path::PathBuf,
    config: std::path::PathBuf,
}

async fn server(interval: &str) -> Server {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, DENY).unwrap();
    std::fs::write(
        dir.path().join("forwarden.yaml"),
        format!("listen: 127.0.0.1:{port}\ncookie:\n  secrets: ['{SECRET}']\npolicy_files: [policy.yaml]\nreload_interval: {interval}\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forwarden"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.path().join("forwarden.yaml"))
        .stdout(Stdio::null());
    let config = dir.path().join("forwarden.yaml");
    Server {
        proc: spawn("forwarden", cmd, dir, port).await,
        policy,
        config,
    }
}

async fn status(http: &reqwest::Client, port: u16, cookie: &str) -> Result<u16, reqwest::Error> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/oauth2/auth"))
        .forwarded("https", "app.example.com", "/")
        .header("cookie", cookie)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

async fn wait_for(http: &reqwest::Client, port: u16, cookie: &str, want: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if status(http, port, cookie).await.ok() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("status never became {want}");
}

/// Write a file the way editors and ConfigMaps do: a new file renamed over the old one.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_policy_takes_effect_without_restart_or_dropped_request() {
    let s = server("1s").await;
    let port = s.proc.port;
    let http = client(&[]);
    let cookie = cookie_with(&Keys::new(&[SECRET]), &alice(), now(), now() + 3600);
    assert_eq!(status(&http, port, &cookie).await.unwrap(), 403);

    // Requests keep flowing during reloads; every one gets an answer (200 or 403).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed, http, cookie) = (
            stop.clone(),
            sent.clone(),
            failed.clone(),
            http.clone(),
            cookie.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                match status(&http, port, &cookie).await {
                    Ok(200) | Ok(403) => {}
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };

    replace(&s.policy, ALLOW);
    wait_for(&http, port, &cookie, 200).await;

    // An invalid version is rejected with its errors logged; the last good policy stays.
    replace(
        &s.policy,
        "- from: https://app.example.com\n  allowed_users: [alice@example.com\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&http, port, &cookie).await.unwrap(), 200);
    let logs = s.proc.logs();
    assert!(logs.contains("policy reload rejected"), "{logs}");
    assert!(
        logs.contains("policy.yaml:"),
        "errors carry file:line:column\n{logs}"
    );

    replace(&s.policy, DENY);
    wait_for(&http, port, &cookie, 403).await;

    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) > 10);
    assert_eq!(failed.load(Ordering::SeqCst), 0, "requests dropped during reload");
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    let s = server("1h").await;
    let port = s.proc.port;
    let http = client(&[]);
    let cookie = cookie_with(&Keys::new(&[SECRET]), &alice(), now(), now() + 3600);
    assert_eq!(status(&http, port, &cookie).await.unwrap(), 403);
    // The container health check: exit 0 while the server answers /healthz.
    let health = Command::new(env!("CARGO_BIN_EXE_forwarden"))
        .arg("healthcheck")
        .arg("--config")
        .arg(&s.config)
        .status()
        .unwrap();
    assert!(health.success());
    replace(&s.policy, ALLOW);
    let kill = Command::new("kill")
        .arg("-HUP")
        .arg(s.proc.child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for(&http, port, &cookie, 200).await;
}

/// A mounted ConfigMap, updated the way the kubelet's atomic writer does it: the files live in a
/// timestamped folder, `..data` links to it, and each key is a link through `..data`; an update
/// writes a new folder, points `..data_tmp` at it, renames `..data_tmp` over `..data` and
/// removes the old folder. The policy path in the configuration is the key's link.
#[tokio::test]
async fn configmap_update_by_the_kubelet_symlink_swap_takes_effect() {
    use std::os::unix::fs::symlink;
    let s = server("1s").await;
    let port = s.proc.port;
    let http = client(&[]);
    let cookie = cookie_with(&Keys::new(&[SECRET]), &alice(), now(), now() + 3600);
    assert_eq!(status(&http, port, &cookie).await.unwrap(), 403);
    // The server started on a plain file; the mount replaces it with the kubelet's layout.
    let dir = s.policy.parent().unwrap();
    let first = dir.join("..2026_12_01_17_00_00.000000001");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("policy.yaml"), DENY).unwrap();
    symlink("..2026_12_01_17_00_00.000000001", dir.join("..data")).unwrap();
    symlink("..data/policy.yaml", dir.join("policy.tmp")).unwrap();
    std::fs::rename(dir.join("policy.tmp"), &s.policy).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&http, port, &cookie).await.unwrap(), 403);
    // The update.
    let second = dir.join("..2026_12_01_17_05_00.000000002");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("policy.yaml"), ALLOW).unwrap();
    symlink("..2026_12_01_17_05_00.000000002", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    wait_for(&http, port, &cookie, 200).await;
    assert!(s.proc.logs().contains("reloaded"), "{}", s.proc.logs());
}
