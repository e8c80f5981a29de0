#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

//! The one integration-test binary: forwarden behind real proxies, the proxy contracts, the
//! security cases (each named after its attack), the CLI, and hot reload.

mod util;

mod agree;
mod bearer;
mod browser;
mod cli;
mod contract;
mod demo;
mod docs;
mod envoy;
mod faults;
mod guides;
mod handoff;
mod idp;
mod image;
mod kubernetes;
mod login;
mod nginx;
mod operate;
mod providers;
mod proxies;
mod proxy_attacks;
mod reload;
mod security;
mod step_up;
mod store;
mod walkthrough;
