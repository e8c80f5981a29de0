//! Redis and Sentinel, started per test.

use std::process::Command;

use tempfile::TempDir;

use super::*;

/// A Redis server (Debian's redis-server) on a free loopback port, with nothing saved to disk;
/// `extra` are more `--option value` arguments (a replica's `--replicaof`).
pub async fn redis_server(extra: &[&str]) -> Option<Proc> {
    let bin = require("redis-server")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(dir.path())
    .args(extra);
    Some(spawn("redis-server", cmd, dir, port).await)
}

/// A Redis Sentinel watching the master `mymaster` at `master` (quorum 1, failover after one
/// second without an answer).
pub async fn redis_sentinel(master: u16) -> Option<Proc> {
    let bin = require("redis-sentinel")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(&conf);
    Some(spawn("redis-sentinel", cmd, dir, port).await)
}
