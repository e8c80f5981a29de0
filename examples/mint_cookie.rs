//! Prints a Cookie header value for a test session sealed with the given secret, for the
//! benchmark and for trying forwarden by hand before login is configured.
//! `cargo run --example mint_cookie -- <secret> [email] [groups]`

use forwarden::identity::Identity;
use forwarden::session::{Keys, Session, seal};

#[allow(clippy::disallowed_methods)]
fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mint_cookie <secret> [email] [number of GUID groups]";
    let secret = match args.next() {
        Some(a) if a == "--help" || a == "-h" => {
            println!("{usage}");
            return;
        }
        Some(secret) => secret,
        None => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let email = args.next().unwrap_or_else(|| "alice@example.com".into());
    let groups: usize = args.next().and_then(|g| g.parse().ok()).unwrap_or(3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let identity = Identity {
        subject: "bench-user".into(),
        email: Some(email.clone()),
        preferred_username: Some(email),
        groups: (0..groups)
            .map(|i| format!("{i:08x}-aaaa-4bbb-8ccc-000000000000"))
            .collect(),
        ..Identity::default()
    };
    let session = Session {
        identity,
        issued_at: now,
        expires_at: now + 24 * 3600,
        refresh_token: None,
    };
    let cookies = seal(&session, &Keys::new(&[secret]), "_forwarden", rand::random());
    let header: Vec<String> = cookies.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    println!("{}", header.join("; "));
}
