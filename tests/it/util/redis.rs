//! Redis and Sentinel, started per test.

use std::process::Command;

use tempfile::TempDir;

use super::*;

/// A Redis server (Debian's redis-server) on a free loopback port, with nothing saved to disk;
/// `extra` are more `--option value` arguments (a replica's `--replicaof`).
pub async fn redis_server(extra: &[&str]) -> Option<Proc> {
    require("redis-server")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = redis_command(dir.path(), port, false);
    cmd.args(extra);
    Some(spawn("redis-server", cmd, dir, port).await)
}

/// A Redis server on `port` whose data in `dir` survives a restart (see [`redis_command`]).
pub async fn redis_keeping(dir: &std::path::Path, port: u16) -> Proc {
    let cmd = redis_command(dir, port, true);
    spawn("redis-server", cmd, TempDir::new().unwrap(), port).await
}

/// The command of a Redis server on loopback `port` with its files in `dir`: nothing saved,
/// or with `persist` an append-only file written with fsync on every write (its data survives
/// a restart).
pub fn redis_command(dir: &std::path::Path, port: u16, persist: bool) -> Command {
    let mut cmd = Command::new(require("redis-server").unwrap());
    let aof: &[&str] = if persist {
        &["yes", "--appendfsync", "always"]
    } else {
        &["no"]
    };
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--appendonly")
        .args(aof)
        .arg("--dir")
        .arg(dir);
    cmd
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
