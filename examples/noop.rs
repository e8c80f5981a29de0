//! The benchmark's baseline: an axum server that answers 200 to everything, nothing else.
//! `cargo run --release --example noop -- 127.0.0.1:4181`

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4181".into());
    let app = axum::Router::new().fallback(|| async { "" });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
