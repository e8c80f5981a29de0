//! The benchmark's Redis mode: writes a session for `email` into a Redis session store and
//! prints its ticket's Cookie header value; with `misses`, also writes that many more sessions
//! and times reading each once with an empty cache (the cost of a cache miss).
//! `cargo run --release --example mint_ticket -- <redis-url> <secret> <email> [misses]`

use std::time::{Duration, Instant};

use forwarden::config::{RedisConfig, RedisServer};
use forwarden::identity::Identity;
use forwarden::metrics::Metrics;
use forwarden::session::{Keys, Session};
use forwarden::store::Ticket;
use forwarden::store::redis::RedisStore;

#[allow(clippy::disallowed_methods)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(secret), Some(email)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: mint_ticket <redis-url> <secret> <email> [misses]");
        std::process::exit(2);
    };
    let misses: usize = args.get(3).and_then(|m| m.parse().ok()).unwrap_or(0);
    let config = RedisConfig {
        server: RedisServer::Url(url.clone()),
        password: None,
        key_prefix: "forwarden:".into(),
        cache_ttl: Duration::from_secs(10),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let session = |n: usize| Session {
        identity: Identity {
            subject: format!("bench-user-{n}"),
            email: Some(email.clone()),
            preferred_username: Some(email.clone()),
            groups: (0..3)
                .map(|i| format!("{i:08x}-aaaa-4bbb-8ccc-000000000000"))
                .collect(),
            ..Identity::default()
        },
        issued_at: now,
        expires_at: now + 24 * 3600,
        refresh_token: None,
    };
    let entropy = forwarden::clock::Entropy::system();
    let store = RedisStore::new(&config, Metrics::new())?;
    let ticket = Ticket::new(entropy.bytes());
    store.save(&ticket, &session(0), now, rand::random()).await?;
    let keys = Keys::new(&[secret]);
    println!("_forwarden={}", ticket.seal(&keys, "_forwarden", rand::random()));
    if misses > 0 {
        let mut tickets = Vec::with_capacity(misses);
        for n in 0..misses {
            let t = Ticket::new(entropy.bytes());
            store.save(&t, &session(n + 1), now, rand::random()).await?;
            tickets.push(t);
        }
        // A fresh store: an empty cache, so every read goes to Redis.
        let cold = RedisStore::new(&config, Metrics::new())?;
        cold.load(&tickets[0], now).await?;
        let start = Instant::now();
        for t in &tickets[1..] {
            cold.load(t, now).await?.ok_or("a session was not found")?;
        }
        let per = start.elapsed() / u32::try_from(misses.saturating_sub(1).max(1))?;
        eprintln!(
            "cache miss (read from Redis, opened, sequential on one connection): {per:?} each over {} reads",
            misses - 1
        );
    }
    Ok(())
}
