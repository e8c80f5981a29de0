//! OpenID Connect login: the flow logic without I/O.
//!
//! Built so far: [`flow`], the code flow with PKCE, state and nonce and the pending-login
//! cookie; [`redirect`], the allow-list for where a login or sign-out may send the browser.
//! The code flow (PKCE, state, nonce), ID-token verification, Entra rules and the one transport
//! module come next (issue 3).

pub mod flow;
pub mod redirect;
