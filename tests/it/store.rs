//! Sessions on Redis (Debian's redis-server and redis-sentinel, started per test on free
//! loopback ports): two replicas behind one nginx upstream, revocation reaching every replica,
//! sign-out everywhere, the provider's back-channel and front-channel logout, a user in 1,000
//! groups, Redis going away and coming back, and a Sentinel failover under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::CookieStore;

use crate::util::*;

const POLICY: &str = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /big
  allowed_groups: [00001770-aaaa-4bbb-8ccc-000000001770]
";

fn store_config(redis: &str) -> String {
    format!("session_store:\n  redis:\n    {redis}\n    cache_ttl: 30s\n")
}

/// A browser (cookie jar we can read) for app.test on nginx's port.
fn jar_browser(port: u16) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .resolve("app.test", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .no_proxy()
        .build()
        .unwrap();
    (http, jar)
}

fn cookie_header(jar: &reqwest::cookie::Jar, port: u16) -> String {
    let url: url::Url = app_at(port, "/").parse().unwrap();
    jar.cookies(&url)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Ask a replica directly whether this cookie may see the app.
async fn status(fw: &Fw, cookie: &str) -> u16 {
    client(&[])
        .get(fw.url("/oauth2/auth"))
        .forwarded("http", "app.test", "/")
        .header("cookie", cookie)
        .sent()
        .await
        .status()
        .as_u16()
}

async fn until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// A replica's `/readyz` text.
async fn readyz(fw: &Fw) -> String {
    client(&[])
        .get(fw.url("/readyz"))
        .sent()
        .await
        .text()
        .await
        .unwrap()
}

/// `forwarden <args> --config <config>`: its exit code, standard output and standard error.
fn sessions_cli(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A browser in which `user` signed in to /docs through nginx, and its session cookie.
async fn signed_in(s: &Setup, user: &str) -> (reqwest::Client, String) {
    let (http, jar) = jar_browser(s.port);
    let start = format!("http://app.test:{}/docs", s.port);
    let (r, path) = browse(&http, &start, &s.idp.issuer, user).await;
    assert_eq!(r.status(), 200, "{path:#?}\n{}", s.nginx.logs());
    let cookie = cookie_header(&jar, s.port);
    (http, cookie)
}

/// `/oauth2/userinfo` through nginx.
async fn userinfo(http: &reqwest::Client, port: u16) -> serde_json::Value {
    http.get(app_at(port, "/oauth2/userinfo"))
        .sent()
        .await
        .json()
        .await
        .unwrap()
}

struct Setup {
    idp: Idp,
    fws: Vec<Fw>,
    _redis: Proc,
    nginx: Proc,
    port: u16,
}

/// The ACL line `docs/sessions.md` gives, as `ACL SETUSER` arguments, with this password.
fn documented_acl(password: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/sessions.md")).unwrap();
    let line = doc
        .split('`')
        .find(|part| part.starts_with("ACL SETUSER forwarden "))
        .expect("docs/sessions.md gives the ACL line");
    line.split_whitespace()
        .skip(2)
        .map(|t| {
            if t == ">password" {
                format!(">{password}")
            } else {
                t.to_string()
            }
        })
        .collect()
}

/// `redis-cli` against the test's Redis as its default (administrative) user.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new(require("redis-cli").unwrap())
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The password of the documented ACL user in the tests.
const ACL_PASSWORD: &str = "acl-test-password-0123";

async fn setup(replicas: usize) -> Option<Setup> {
    setup_with(replicas, &[]).await
}

async fn setup_with(replicas: usize, redis_args: &[&str]) -> Option<Setup> {
    let redis = redis_server(redis_args).await?;
    // forwarden runs as the ACL user the docs give, with nothing more.
    let acl = documented_acl(ACL_PASSWORD);
    let mut args = vec!["ACL", "SETUSER"];
    args.extend(acl.iter().map(String::as_str));
    assert_eq!(redis_cli(redis.port, &args).trim(), "OK");
    let port = free_port();
    let backchannel = format!("http://127.0.0.1:{port}/oauth2/backchannel-logout");
    let idp = idp_with(
        &[app_at(port, "/oauth2/callback")],
        &[("BACKCHANNEL_LOGOUT_URI", backchannel.as_str())],
    )
    .await?;
    // Group overage goes to the test provider's Graph.
    let graph = idp
        .issuer
        .split(&format!("/{IDP_TENANT}"))
        .next()
        .unwrap()
        .to_string()
        + "/graph";
    let tenant = format!("{}    graph_url: {graph}\n", home_tenant());
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &tenant)
        + &store_config(&format!(
            "url: redis://forwarden:{ACL_PASSWORD}@127.0.0.1:{}/0",
            redis.port
        ));
    let mut fws = Vec::new();
    for _ in 0..replicas {
        let fw = Fw::start_with(POLICY, &extra).await;
        fw.discovered().await;
        fws.push(fw);
    }
    let up = echo_upstream().await;
    let addrs: Vec<_> = fws.iter().map(|f| f.addr).collect();
    let nginx = nginx_on_many(port, &addrs, up, "").await?;
    Some(Setup {
        idp,
        fws,
        _redis: redis,
        nginx,
        port,
    })
}

#[tokio::test]
async fn two_replicas_share_sessions_and_sign_out_everywhere_reaches_both_within_a_second() {
    let Some(s) = setup(2).await else { return };
    let (http, cookie) = signed_in(&s, "alice").await;
    // The cookie is a ticket: small, whatever the session holds.
    assert!(cookie.len() < 200, "{} bytes: {cookie}", cookie.len());
    // Both replicas accept it (nginx alternates between them, and each is asked directly).
    for fw in &s.fws {
        assert_eq!(status(fw, &cookie).await, 200);
    }
    // A second browser of the same user.
    let (_other, other_cookie) = signed_in(&s, "alice").await;
    assert_ne!(cookie, other_cookie);
    // Sign out everywhere through nginx (one of the replicas): both replicas refuse both
    // sessions within a second, though each had them cached.
    // A third-party page cannot do it: a cross-site GET only shows the page that asks, and a
    // cross-site POST is refused; both sessions still work.
    let url = format!("http://app.test:{}/oauth2/sign_out?everywhere=1", s.port);
    let r = http.get(&url).header("sec-fetch-site", "cross-site").sent().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.text().await.unwrap().contains("<form method=\"post\""));
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let r = http.post(&url).header(name, value).sent().await;
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    let r = http.post(&url).sent().await;
    assert_eq!(r.status(), 403, "neither Sec-Fetch-Site nor Origin");
    for fw in &s.fws {
        assert_eq!(status(fw, &cookie).await, 200);
        assert_eq!(status(fw, &other_cookie).await, 200);
    }
    // The user's own confirmation (a same-origin POST from the page).
    let r = http
        .post(&url)
        .header("sec-fetch-site", "same-origin")
        .sent()
        .await;
    assert_eq!(r.status(), 302);
    let took = until(
        "revocation on every replica",
        Duration::from_secs(1),
        async || {
            let mut all = true;
            for fw in &s.fws {
                all &= status(fw, &cookie).await == 401 && status(fw, &other_cookie).await == 401;
            }
            all
        },
    )
    .await;
    eprintln!("sign-out everywhere reached both replicas in {took:?}");
}

#[tokio::test]
async fn a_thousand_groups_pass_group_rules_with_a_small_cookie() {
    let Some(s) = setup(1).await else { return };
    let (http, jar) = jar_browser(s.port);
    // Frank is in 1,000 groups (through Graph); /big needs the last one.
    let start = format!("http://app.test:{}/big/x", s.port);
    let (r, path) = browse(&http, &start, &s.idp.issuer, "frank").await;
    let code = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(code, 200, "{text}\n{path:#?}\n{}", s.nginx.logs());
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let groups = body["headers"]["x-auth-request-groups"].as_str().unwrap();
    assert_eq!(groups.split(',').count(), 1000);
    let cookie = cookie_header(&jar, s.port);
    assert!(cookie.len() < 200, "{} bytes", cookie.len());
    let info = userinfo(&http, s.port).await;
    assert_eq!(info["groups"].as_array().unwrap().len(), 1000);
    assert!(info["groups_reduced"].is_null(), "{}", info["groups_reduced"]);
}

#[tokio::test]
async fn back_channel_logout_from_the_provider_revokes_the_session() {
    let Some(s) = setup(2).await else { return };
    let (http, cookie) = signed_in(&s, "alice").await;
    // The user signs out at the provider (its own page, with the provider's session cookie in
    // the same browser): the provider posts a logout token to forwarden.
    let status_code = sign_out_at_provider(&http, &s.idp.issuer).await;
    assert!(
        status_code.is_redirection() || status_code.is_success(),
        "{status_code}"
    );

    until("back-channel logout", Duration::from_secs(3), async || {
        status(&s.fws[0], &cookie).await == 401 && status(&s.fws[1], &cookie).await == 401
    })
    .await;
}

#[tokio::test]
async fn back_channel_logout_token_replay_and_forgery_are_refused() {
    let Some(s) = setup(1).await else { return };
    let post = |token: &str| {
        client(&[])
            .post(s.fws[0].url("/oauth2/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
    };
    let r = post("e30.e30.e30").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = client(&[])
        .post(s.fws[0].url("/oauth2/backchannel-logout"))
        .body(vec![b'a'; 64 * 1024])
        .sent()
        .await;
    assert_eq!(r.status(), 413, "the body is bounded");
}

#[tokio::test]
async fn front_channel_logout_by_sid_ends_the_session_only_from_the_users_own_browser() {
    let Some(s) = setup(1).await else { return };
    let (http, cookie) = signed_in(&s, "alice").await;
    let info = userinfo(&http, s.port).await;
    let sid = info["claims"]["forwarden:sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid: {info}"))
        .to_string();
    // Another issuer's word is not taken.
    let r = client(&[])
        .get(s.fws[0].url(&format!(
            "/oauth2/frontchannel-logout?iss=https%3A%2F%2Fevil.example%2F&sid={sid}"
        )))
        .sent()
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(status(&s.fws[0], &cookie).await, 200);
    // The attack: anyone who knows the sid (it is in every relying party's ID token of that
    // login) sends the provider's request without the victim's cookie. Nothing ends.
    let iss =
        percent_encoding::utf8_percent_encode(&s.idp.issuer, percent_encoding::NON_ALPHANUMERIC).to_string();
    let url = format!("/oauth2/frontchannel-logout?iss={iss}&sid={sid}");
    let r = client(&[]).get(s.fws[0].url(&url)).sent().await;
    assert_eq!(r.status(), 200);
    assert_eq!(status(&s.fws[0], &cookie).await, 200);
    // Another user's session with the victim's sid: nothing ends either.
    let (_bob, bob_cookie) = signed_in(&s, "bob").await;
    let front = async |cookie: &str| {
        let r = client(&[]).get(s.fws[0].url(&url)).header("cookie", cookie);
        r.sent().await.status()
    };
    assert_eq!(front(&bob_cookie).await, 200);
    assert_eq!(status(&s.fws[0], &cookie).await, 200);
    assert_eq!(status(&s.fws[0], &bob_cookie).await, 200);
    // From the user's own browser (its cookie): the sessions of that sid end.
    assert_eq!(front(&cookie).await, 200);
    assert_eq!(status(&s.fws[0], &cookie).await, 401);
}

#[tokio::test]
async fn sessions_list_and_revoke_from_the_command_line() {
    let Some(s) = setup(1).await else { return };
    for user in ["alice", "bob"] {
        let (http, _) = jar_browser(s.port);
        let (r, _) = browse(
            &http,
            &format!("http://app.test:{}/docs", s.port),
            &s.idp.issuer,
            user,
        )
        .await;
        assert!(r.status() == 200 || r.status() == 403, "{}", r.status());
    }
    let config = s.fws[0].dir.path().join("forwarden.yaml");
    let run = |args: &[&str]| {
        let (code, out, err) = sessions_cli(&config, args);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    let all = run(&["sessions", "list"]);
    assert!(
        all.contains("alice@contoso.com") && all.contains("bob@contoso.com") && all.ends_with("2 sessions\n"),
        "{all}"
    );
    let alice = run(&["sessions", "list", "--user", "ALICE@contoso.com"]);
    assert!(
        alice.ends_with("1 session\n") && !alice.contains("bob@"),
        "{alice}"
    );
    assert_eq!(
        run(&["sessions", "revoke", "--user", "alice@contoso.com"]),
        "revoked 1 session\n"
    );
    assert!(run(&["sessions", "list"]).ends_with("1 session\n"));
    assert_eq!(run(&["sessions", "revoke", "--all"]), "revoked 1 session\n");
}

#[tokio::test]
async fn damaged_session_record_neither_blocks_revocation_nor_passes_the_auth_check() {
    let Some(s) = setup(1).await else { return };
    let (_a, alice) = signed_in(&s, "alice").await;
    let (_c, carol) = signed_in(&s, "carol").await;
    let (_d, dave) = signed_in(&s, "dave").await;
    let config = s.fws[0].dir.path().join("forwarden.yaml");
    let run = |args: &[&str]| sessions_cli(&config, args);
    let redis_port = s._redis.port;
    let ids = |user: &str| -> Vec<String> {
        let (_, out, _) = run(&["sessions", "list", "--user", user]);
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|id| id.len() == 32)
            .map(str::to_string)
            .collect()
    };
    let (carol_id, dave_id) = (
        ids("carol@contoso.com")[0].clone(),
        ids("dave@contoso.com")[0].clone(),
    );
    // The damage: carol's sign-in time is not a number; dave's record lost its user id.
    redis_cli(
        redis_port,
        &["HSET", &format!("forwarden:s:{carol_id}"), "i", "yesterday"],
    );
    redis_cli(redis_port, &["HDEL", &format!("forwarden:s:{dave_id}"), "u"]);
    // Neither passes the auth check once the replica reads them from Redis again (the
    // channel message drops them from its cache).
    redis_cli(
        redis_port,
        &["PUBLISH", "forwarden:revoked", &format!("{carol_id} {dave_id}")],
    );
    until(
        "the damaged records refused",
        Duration::from_secs(2),
        async || status(&s.fws[0], &carol).await == 401 && status(&s.fws[0], &dave).await == 401,
    )
    .await;
    assert_eq!(status(&s.fws[0], &alice).await, 200);
    // Listing reports them and goes on; the others are listed.
    let (code, out, err) = run(&["sessions", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("alice@contoso.com") && out.ends_with("1 session\n"),
        "{out}"
    );
    assert!(err.contains(&carol_id) && err.contains("(i)"), "{err}");
    assert!(err.contains(&dave_id) && err.contains("(u)"), "{err}");
    // Revoking another user's sessions works.
    let (code, out, err) = run(&["sessions", "revoke", "--user", "alice@contoso.com"]);
    assert_eq!((code, out.as_str()), (Some(0), "revoked 1 session\n"), "{err}");
    assert_eq!(status(&s.fws[0], &alice).await, 401);
    // The damaged ones go with --damaged (or --all).
    let (code, out, err) = run(&["sessions", "revoke", "--damaged"]);
    assert_eq!((code, out.as_str()), (Some(0), "revoked 2 sessions\n"), "{err}");
    let (_, out, err) = run(&["sessions", "list"]);
    assert!(out.ends_with("0 sessions\n") && err.is_empty(), "{out}{err}");
}

#[tokio::test]
async fn redis_stopped_then_back_cached_sessions_pass_nothing_else_does_and_sign_in_recovers() {
    if require("redis-server").is_none() {
        return;
    }
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let data = tempfile::TempDir::new().unwrap();
    let redis_port = free_port();
    let redis = redis_keeping(data.path(), redis_port).await;
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant())
        + &store_config(&format!("url: redis://127.0.0.1:{redis_port}/0"));
    let fw = Fw::start_with(POLICY, &extra).await;
    let cold = Fw::start_with(POLICY, &extra).await;
    let Some(_nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let (http, jar) = jar_browser(port);
    let start = app_at(port, "/docs");
    let (r, _) = browse(&http, &start, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    let cookie = cookie_header(&jar, port);
    // Redis goes away.
    drop(redis);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replica that has the session cached lets it pass (for its cache time); a replica that
    // never read it cannot know it and answers "not signed in", within the auth contract.
    assert_eq!(status(&fw, &cookie).await, 200);
    assert_eq!(status(&cold, &cookie).await, 401);
    let ready = readyz(&cold).await;
    assert!(ready.contains("session store is unavailable"), "{ready}");
    // Sign-in says why it cannot finish.
    let (other, _) = jar_browser(port);
    let (r, _) = browse(&other, &start, &idp.issuer, "bob").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("session store is unavailable"));
    // Redis is back, with its data: the session works on every replica, sign-in too.
    let redis = redis_keeping(data.path(), redis_port).await;
    until("recovery", Duration::from_secs(5), async || {
        status(&cold, &cookie).await == 200
    })
    .await;
    let (r, _) = browse(&other, &start, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_loses_no_acknowledged_session() {
    let Some(master) = redis_server(&[]).await else {
        return;
    };
    let replicaof = format!("127.0.0.1 {}", master.port);
    let Some(r1) = redis_server(&["--replicaof", &replicaof]).await else {
        return;
    };
    let Some(r2) = redis_server(&["--replicaof", &replicaof]).await else {
        return;
    };
    let Some(sentinel) = redis_sentinel(master.port).await else {
        return;
    };
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let sentinel_cfg = format!(
        "sentinel: {{master: mymaster, nodes: [\"127.0.0.1:{}\"]}}",
        sentinel.port
    );
    let extra =
        oidc_config(&idp.issuer, "openid, profile, email", &home_tenant()) + &store_config(&sentinel_cfg);
    let fw = Fw::start_with(POLICY, &extra).await;
    // A replica that reads the session from Redis every time (a cache of one second).
    let reader = Fw::start_with(POLICY, &extra.replace("cache_ttl: 30s", "cache_ttl: 1s")).await;
    let Some(_nginx) = fw.behind_nginx(port).await else {
        return;
    };
    // Wait until the replicas are in sync, so WAIT sees them.
    until("replication", Duration::from_secs(10), async || {
        let (http, _) = jar_browser(port);
        let (r, _) = browse(&http, &app_at(port, "/"), &idp.issuer, "carol").await;
        r.status() == 200 || r.status() == 403
    })
    .await;
    let (http, jar) = jar_browser(port);
    let (r, _) = browse(&http, &app_at(port, "/docs"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "sign-in acknowledged by a replica");
    let cookie = cookie_header(&jar, port);
    // Load on the reading replica while the master dies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    let reader_url = reader.url("/oauth2/auth");
    let load = {
        let (stop, sent, failed, cookie) = (stop.clone(), sent.clone(), failed.clone(), cookie.clone());
        tokio::spawn(async move {
            let http = client(&[]);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let r = http
                    .get(&reader_url)
                    .forwarded("http", "app.test", "/")
                    .header("cookie", &cookie)
                    .send()
                    .await;
                if !matches!(r.map(|r| r.status().as_u16()), Ok(200)) {
                    failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    drop(master);
    // After the failover, the acknowledged session is on the new master, and sign-in works.
    let took = until("failover", Duration::from_secs(30), async || {
        let (h, _) = jar_browser(port);
        let (r, _) = browse(&h, &app_at(port, "/docs"), &idp.issuer, "alice").await;
        r.status() == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await.unwrap();
    assert_eq!(
        status(&reader, &cookie).await,
        200,
        "the session acknowledged before the failover"
    );
    let (sent, failed) = (
        sent.load(std::sync::atomic::Ordering::SeqCst),
        failed.load(std::sync::atomic::Ordering::SeqCst),
    );
    eprintln!(
        "sentinel failover: sign-in worked again {took:?} after the master was killed; {failed} of {sent} checks on the reading replica (cache_ttl 1s) failed during the switch"
    );
    let _ = killed;
    assert!(sent > 50);
    drop((r1, r2, sentinel));
}

#[test]
fn redis_example_is_valid_once_its_placeholders_are_filled() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("redis")).unwrap();
    std::fs::create_dir(dir.path().join("nginx")).unwrap();
    let text = std::fs::read_to_string(repo().join("examples/redis/forwarden.yaml"))
        .unwrap()
        .replace("<tenant-id>", IDP_TENANT)
        .replace("<application-client-id>", "11111111-2222-3333-4444-555555555555");
    std::fs::write(dir.path().join("redis/forwarden.yaml"), text).unwrap();
    std::fs::copy(
        repo().join("examples/nginx/policy.yaml"),
        dir.path().join("nginx/policy.yaml"),
    )
    .unwrap();
    let env = |k: &str| match k {
        "FORWARDEN_COOKIE_SECRET" => Some(SECRET.to_string()),
        "FORWARDEN_CLIENT_SECRET" | "REDIS_PASSWORD" => Some("a-password".to_string()),
        _ => None,
    };
    let cfg = forwarden::config::Config::load(&dir.path().join("redis/forwarden.yaml"), &env).unwrap();
    let redis = cfg.session_store.unwrap();
    assert_eq!(
        redis.server,
        forwarden::config::RedisServer::Url("redis://127.0.0.1:6379/0".into())
    );
    assert_eq!(redis.cache_ttl, Duration::from_secs(10));
    assert_eq!(redis.password.unwrap().expose(), "a-password");
}

/// A session whose cache entry expires between its read and the decision is still the
/// session read (the decision never looks the cache up a second time): no spurious 401.
#[tokio::test]
async fn cache_expiry_between_read_and_decision_never_signs_out() {
    let Some(redis) = redis_server(&[]).await else {
        return;
    };
    let Some(idp) = idp(&["http://app.test/oauth2/callback".to_string()]).await else {
        return;
    };
    let extra = oidc_config(&idp.issuer, "openid", &home_tenant())
        + &store_config(&format!("url: redis://127.0.0.1:{}/0", redis.port))
            .replace("cache_ttl: 30s", "cache_ttl: 1s");
    let fw = Fw::start_with(POLICY, &extra).await;
    let store = fw.state.sessions.store().cloned().unwrap();
    let now = now();
    let entropy = forwarden::clock::Entropy::system();
    let ticket = forwarden::store::Ticket::new(entropy.bytes());
    let session = forwarden::session::Session {
        identity: alice_at_contoso(),
        issued_at: now,
        expires_at: now + 3600,
        refresh_token: None,
    };
    store.save(&ticket, &session, now, entropy.bytes()).await.unwrap();
    let keys = forwarden::session::Keys::new(&[SECRET]);
    let cookie = format!("_forwarden={}", ticket.seal(&keys, "_forwarden", entropy.bytes()));
    let start = Instant::now();
    let mut answers = std::collections::BTreeMap::new();
    while start.elapsed() < Duration::from_millis(2500) {
        *answers.entry(status(&fw, &cookie).await).or_insert(0) += 1;
    }
    assert_eq!(answers.keys().copied().collect::<Vec<_>>(), [200], "{answers:?}");
}

fn alice_at_contoso() -> forwarden::identity::Identity {
    forwarden::identity::Identity {
        subject: "alice-oid".into(),
        email: Some("alice@contoso.com".into()),
        ..Default::default()
    }
}

/// forwarden starts without Redis, says so, answers within the auth contract, and picks Redis
/// up when it appears.
#[tokio::test]
async fn starts_without_redis_says_so_and_connects_when_it_appears() {
    if require("redis-server").is_none() {
        return;
    }
    let redis_port = free_port();
    let extra = store_config(&format!("url: redis://127.0.0.1:{redis_port}/0"));
    let fw = Fw::start_with(
        POLICY,
        &format!("trusted_proxies: [127.0.0.1/32]\nmetrics_listen: 127.0.0.1:0\n{extra}"),
    )
    .await;
    let get = |url: String| async move { client(&[]).get(url).sent().await.text().await.unwrap() };
    let ready = || get(fw.url("/readyz"));
    let metrics = || get(format!("http://{}/metrics", fw.metrics.unwrap()));
    // The store's error is given.
    let text = ready().await;
    assert!(
        text.starts_with("ready; the session store is unavailable"),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
    assert!(metrics().await.contains("forwarden_session_store_up 0"));
    let entropy = forwarden::clock::Entropy::system();
    let ticket = forwarden::store::Ticket::new(entropy.bytes());
    let keys = forwarden::session::Keys::new(&[SECRET]);
    let cookie = format!("_forwarden={}", ticket.seal(&keys, "_forwarden", entropy.bytes()));
    assert_eq!(status(&fw, &cookie).await, 401, "not signed in, never a 500");
    let data = tempfile::TempDir::new().unwrap();
    let _redis = redis_keeping(data.path(), redis_port).await;
    until("the store is up", Duration::from_secs(5), async || {
        ready().await == "ready\n"
    })
    .await;
    assert!(metrics().await.contains("forwarden_session_store_up 1"));
}

/// `DEBUG SLEEP <secs>` in the background: Redis answers nothing (not even a new connection's
/// handshake) until it wakes.
fn stall_redis(port: u16, secs: u32) -> std::process::Child {
    let child = std::process::Command::new(require("redis-cli").unwrap())
        .args(["-p", &port.to_string(), "DEBUG", "SLEEP", &secs.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[tokio::test]
async fn stalled_redis_answers_every_check_within_its_bound_instead_of_queueing_them() {
    let Some(s) = setup_with(1, &["--enable-debug-command", "yes"]).await else {
        return;
    };
    let (_http, cookie) = signed_in(&s, "alice").await;
    let id = {
        let out = redis_cli(s._redis.port, &["KEYS", "forwarden:s:*"]);
        out.trim().trim_start_matches("forwarden:s:").to_string()
    };
    // The replica has not cached it (as for a ticket it never saw).
    redis_cli(s._redis.port, &["PUBLISH", "forwarden:revoked", &id]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sleeper = stall_redis(s._redis.port, 8);
    // A first check meets the stall alone (its call times out).
    assert_eq!(status(&s.fws[0], &cookie).await, 401);
    // Then 20 checks at once while Redis still sleeps: each gets the documented outage answer
    // (not signed in) within its bound of a second plus the queue, not one reconnect after
    // another.
    let started = Instant::now();
    let checks: Vec<_> = (0..20).map(|_| status(&s.fws[0], &cookie)).collect();
    let answers = futures_util::future::join_all(checks).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|a| *a == 401), "{answers:?}");
    assert!(
        took < Duration::from_secs(5),
        "20 checks took {took:?} while Redis slept"
    );
    eprintln!("20 checks during the stall answered in {took:?}");
    let _ = sleeper.wait();
    // Once Redis is back, the session passes again.
    until("the session back", Duration::from_secs(5), async || {
        status(&s.fws[0], &cookie).await == 200
    })
    .await;
}

#[tokio::test]
async fn sign_out_while_redis_is_stalled_revokes_the_ticket_once_it_is_back() {
    let Some(s) = setup_with(1, &["--enable-debug-command", "yes"]).await else {
        return;
    };
    let (http, cookie) = signed_in(&s, "alice").await;
    assert_eq!(status(&s.fws[0], &cookie).await, 200);
    let mut sleeper = stall_redis(s._redis.port, 4);
    // The user is told that the server's session is not ended yet; the cookie goes.
    let r = http
        .get(format!("http://app.test:{}/oauth2/sign_out", s.port))
        .sent()
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("signed out in this browser") && page.contains("keeps trying"),
        "{page}"
    );
    let _ = sleeper.wait();
    // The attack this stops: the old cookie (copied before sign-out) works no longer, on this
    // replica and for any other, once the retried revocation is written.
    until(
        "the pending revocation written",
        Duration::from_secs(10),
        async || {
            status(&s.fws[0], &cookie).await == 401
                && redis_cli(s._redis.port, &["KEYS", "forwarden:s:*"])
                    .trim()
                    .is_empty()
        },
    )
    .await;
}

/// `password: ${REDIS_PASSWORD}` left empty, against a Redis that has a password: `check`
/// warns, `/readyz` and the log give the store's error, and the sign-in page says sign-in is out
/// of service (no "try again").
#[tokio::test]
async fn empty_redis_password_is_warned_about_and_sign_in_says_it_is_out_of_service() {
    let Some(redis) = redis_server(&["--requirepass", "the-real-password-0123"]).await else {
        return;
    };
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant())
        + &store_config(&format!(
            "url: redis://127.0.0.1:{}/0\n    password: \"\"",
            redis.port
        ));
    let fw = Fw::start_with(POLICY, &extra).await;
    fw.discovered().await;
    let config = fw.dir.path().join("forwarden.yaml");
    let (code, out, err) = sessions_cli(&config, &["check"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("session_store.redis.password is empty"), "{out}");
    until(
        "the store's error on /readyz",
        Duration::from_secs(5),
        async || {
            readyz(&fw)
                .await
                .contains("ready; the session store refuses forwarden's credentials")
        },
    )
    .await;
    let up = echo_upstream().await;
    let Some(_nginx) = nginx_on(port, fw.addr, up, "").await else {
        return;
    };
    let (http, _) = jar_browser(port);
    let (r, _) = browse(&http, &app_at(port, "/docs"), &idp.issuer, "alice").await;
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("out of service") && !page.contains("Try again"),
        "{page}"
    );
}
