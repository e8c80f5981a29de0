//! The one integration-test binary: forwarden behind real proxies, the proxy contracts, the
//! security cases (each named after its attack), the CLI, and hot reload.

mod util;

mod nginx;
mod proxies;
mod contract;
mod security;
mod cli;
mod reload;
