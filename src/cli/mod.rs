//! The commands behind `forwarden`'s command line: `check`, `explain`, `sessions`,
//! `healthcheck` and `serve`. `main.rs` parses the arguments and calls these; each writes its
//! report to the writers it is given (standard output and error in `main.rs`, buffers in
//! tests) and returns whether it succeeded, or a [`CommandError`] for what stops it.

mod explain;
mod serve;
mod sessions;

use std::io::Write;
use std::path::Path;

pub use explain::{ExplainArgs, explain};
pub use serve::{healthcheck, serve};
pub use sessions::{SessionsAction, sessions};

use crate::config::Config;
use crate::diag::Diagnostic;
use crate::policy::PolicySet;

/// What stops a command (a configuration with problems is a report, not an error: the command
/// prints them and returns `Ok(false)`, except `serve`, which does not start).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Standard output or error could not be written (a closed pipe, a full disk).
    #[error("cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
    /// An argument that cannot be used as given.
    #[error("{0}")]
    Argument(String),
    /// The configuration has problems (each already printed): `serve` does not start.
    #[error("{0} problem(s) in the configuration; not starting")]
    Invalid(usize),
    /// A listener could not be opened.
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Which setting, besides `listen`.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// A part the configuration names could not be set up.
    #[error(transparent)]
    State(#[from] crate::http::StateError),
    /// The session store refused or failed.
    #[error("the session store: {0}")]
    Store(#[from] crate::store::redis::StoreError),
    /// The server stopped with an error.
    #[error("the server stopped: {0}")]
    Server(std::io::Error),
}

impl CommandError {
    /// Whether it is standard output's reader going away (`forwarden check | head -n 1`): the
    /// reader has what it wanted, so the command exits quietly, as cat and grep do.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CommandError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Where a command writes: its report, and its problems.
pub struct Out<'a> {
    /// The report (standard output).
    pub out: &'a mut dyn Write,
    /// Problems and warnings about the command itself (standard error); failures to write
    /// here are ignored, there is nowhere left to report them.
    pub err: &'a mut dyn Write,
}

impl Out<'_> {
    /// Print each problem.
    fn problems(&mut self, diags: &[Diagnostic]) {
        for d in diags {
            let _ = writeln!(self.err, "{d}");
        }
    }
}

/// The environment, for `${VAR}` in configuration files.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Config and policies, or every problem of both.
pub fn load(config: &Path) -> Result<(Config, PolicySet), Vec<Diagnostic>> {
    let cfg = match Config::load(config, &env) {
        Ok(c) => c,
        Err(mut diags) => {
            // Every problem of one run: the policy files the config names are read too.
            let files = Config::policy_files_named(config);
            if let Err(more) = PolicySet::load(&files, crate::config::Limits::default().max_policy_bytes) {
                diags.extend(more);
            }
            return Err(diags);
        }
    };
    let set = PolicySet::load(&cfg.policy_files, cfg.limits.max_policy_bytes)?;
    let (sign_in, bearer) = cfg.provider_names();
    let problems = set.provider_problems(&sign_in, &bearer);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((cfg, set))
}

/// `1 route`, `2 routes`; `1 named policy`, `3 named policies`.
fn count(n: usize, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {one}s"),
    }
}

/// `forwarden check`: every problem of the configuration and its policy files at once, or the
/// notes, warnings and redirect URIs of a valid one. Returns whether it is valid.
pub fn check(config: &Path, o: &mut Out<'_>) -> Result<bool, CommandError> {
    use crate::config::report;
    let (cfg, set) = match load(config) {
        Ok(x) => x,
        Err(diags) => {
            o.problems(&diags);
            let _ = writeln!(
                o.err,
                "{} problem(s); {} is not valid",
                diags.len(),
                config.display()
            );
            return Ok(false);
        }
    };
    for n in &set.notes {
        writeln!(o.out, "{n}")?;
    }
    let warnings = set.lint();
    for w in &warnings {
        writeln!(o.out, "{w}")?;
    }
    let mut scheme = report::cookie_scheme_warnings(&cfg, &set);
    scheme.extend(report::cookie_domain_warnings(&cfg, &set));
    // A route's idp_client_secret read from the environment at sign-in: say when it is unset
    // here (the sign-in through that app registration would be refused).
    for r in set.routes() {
        let Some(c) = &r.sign_in.client else { continue };
        let written = c.secret.expose();
        if let Some(var) = written.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            if env(var).is_none_or(|v| v.is_empty()) {
                scheme.push(format!(
                    "warning: {} ({}): idp_client_secret is ${{{var}}}, which is not set here; sign-in through {} would be refused",
                    r.label, r.from, c.id
                ));
            }
        }
    }
    for line in scheme
        .iter()
        .chain(&report::store_warnings(&cfg))
        .chain(&report::proxy_header_notes(&cfg))
    {
        writeln!(o.out, "{line}")?;
    }
    if !cfg.providers.is_empty() {
        for line in report::redirect_uris(&cfg, &set) {
            writeln!(o.out, "{line}")?;
        }
    }
    writeln!(
        o.out,
        "ok: {} is valid ({}, {}, {}{})",
        config.display(),
        count(set.routes().len(), "route"),
        count(set.policy_names().len(), "named policy"),
        count(cfg.policy_files.len(), "policy file"),
        match warnings.len() + scheme.len() {
            0 => String::new(),
            n => format!(", {}", count(n, "warning")),
        }
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "route"), "1 route");
        assert_eq!(count(2, "route"), "2 routes");
        assert_eq!(count(3, "named policy"), "3 named policies");
    }
}
