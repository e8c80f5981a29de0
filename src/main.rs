//! The `forwarden` command: parses the arguments and runs the library's command
//! ([`forwarden::cli`]) with standard output and error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use forwarden::cli::{self, CommandError, Out};

#[derive(Parser)]
#[command(
    name = "forwarden",
    version,
    about = "Forward-auth sidecar: OpenID Connect login and YAML policies for nginx, Traefik, Caddy, HAProxy and Envoy (ext_authz)"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the auth server.
    Serve {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Validate the configuration and every policy file; print every problem.
    Check {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Exit 0 when the server of this configuration answers /healthz (for container health checks).
    Healthcheck {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Decide one request: first line allow, forbidden or login; then the route and the rule.
    Explain(Box<cli::ExplainArgs>),
    /// The sessions in the session store (session_store), and revoking them.
    Sessions {
        #[command(subcommand)]
        action: cli::SessionsAction,
    },
}

/// mimalloc gives memory freed by a large policy reload back to the operating system; glibc's
/// allocator kept it (fragmented across its per-thread arenas: RSS stayed at 140 MB after going
/// from 100,000 routes back to one, and grew with every such reload).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr());
    let mut o = Out {
        out: &mut stdout,
        err: &mut stderr,
    };
    let ran = match cli.command {
        Command::Check { config } => cli::check(&config, &mut o),
        Command::Explain(args) => cli::explain(*args, &mut o),
        Command::Sessions { action } => cli::sessions(action, &mut o),
        Command::Healthcheck { config } => cli::healthcheck(&config, &mut o),
        Command::Serve { config } => cli::serve(&config, &mut o).map(|()| true),
    };
    match ran {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader of our output has what it wanted: exit quietly, as cat and grep do.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(2)
        }
    }
}

/// The error that stopped a command, on standard error (its message names its cause).
fn report(e: &CommandError) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "forwarden: {e}");
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal, not in files or container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
