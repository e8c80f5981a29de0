//! `forwarden sessions list|revoke`: the session store's sessions, from the command line.

use std::path::PathBuf;

use super::{CommandError, Out, count, env};
use crate::config::Config;
use crate::store::redis::RedisStore;

/// What to do with the sessions.
#[derive(clap::Subcommand, Debug)]
pub enum SessionsAction {
    /// List sessions: id, user, email, signed in (or refreshed), ends.
    List {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
        /// Only this user's: an email or a user id, as /oauth2/userinfo shows them.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke sessions: every replica refuses them at once.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["user", "all", "damaged"])))]
    Revoke {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
        /// This user's sessions: an email or a user id.
        #[arg(long)]
        user: Option<String>,
        /// Every session, damaged records included.
        #[arg(long)]
        all: bool,
        /// Only the records `list` reports as damaged.
        #[arg(long)]
        damaged: bool,
    },
}

/// A Unix time as `2026-12-01 17:04:05 UTC`.
fn time(t: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(t).unwrap_or(i64::MAX), 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// List or revoke. Returns whether the configuration has a session store it could use.
pub fn sessions(action: SessionsAction, o: &mut Out<'_>) -> Result<bool, CommandError> {
    // What to do: list (a user's), or revoke a user's, every record, or the damaged ones.
    let (config, user, revoke, all, only_damaged) = match action {
        SessionsAction::List { config, user } => (config, user, false, false, false),
        SessionsAction::Revoke {
            config,
            user,
            all,
            damaged,
        } => (config, user, true, all, damaged),
    };
    let cfg = match Config::load(&config, &env) {
        Ok(c) => c,
        Err(diags) => {
            o.problems(&diags);
            return Ok(false);
        }
    };
    let Some(redis) = &cfg.session_store else {
        let _ = writeln!(
            o.err,
            "{}: no session_store: sessions are kept in the browsers' cookies, and none can be listed or revoked from here",
            config.display()
        );
        return Ok(false);
    };
    let store = RedisStore::new(redis, crate::metrics::Metrics::new())?;
    let rt = tokio::runtime::Runtime::new().map_err(CommandError::Runtime)?;
    rt.block_on(async {
        let (sessions, damaged) = store.list().await?;
        let mine: Vec<_> = sessions
            .into_iter()
            .filter(|m| user.as_deref().is_none_or(|u| m.is_user(u)))
            .collect();
        if revoke {
            let ids: Vec<String> = match (all, only_damaged) {
                (true, _) => mine.iter().map(|m| m.id.clone()).chain(damaged.iter().map(|d| d.id.clone())).collect(),
                (_, true) => damaged.iter().map(|d| d.id.clone()).collect(),
                _ => mine.iter().map(|m| m.id.clone()).collect(),
            };
            let n = store.revoke(&ids).await?;
            writeln!(o.out, "revoked {}", count(n, "session"))?;
        } else {
            for m in &mine {
                writeln!(
                    o.out,
                    "{}  {}  {}  signed in {}  ends {}",
                    m.id,
                    m.subject,
                    if m.email.is_empty() { "-" } else { &m.email },
                    time(m.issued_at),
                    time(m.expires_at)
                )?;
            }
            writeln!(o.out, "{}", count(mine.len(), "session"))?;
        }
        // Reported, never fatal: nobody is admitted on them, and revoke removes them.
        if !revoke || user.is_some() {
            for d in &damaged {
                let _ = writeln!(
                    o.err,
                    "damaged session record {}: {}; the auth check refuses it (remove it with `forwarden sessions revoke --damaged`)",
                    d.id,
                    d.why
                );
            }
        }
        Ok(true)
    })
}
