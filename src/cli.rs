//! The command line: `rgsd serve | check | migrate | token create`.
//!
//! `serve` and `check` share one `config::load`, so their messages cannot drift apart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::print_diagnostics;

pub use crate::config::EXIT_CONFIG;

#[derive(Debug, Parser)]
#[command(name = "rgsd", version, about = "SIP response-group server (ACD)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `human` (default) or `json`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `rgsd=debug,sqlx=warn`). Default: `RUST_LOG`, else
    /// `info`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and exit: 0 when valid, 78 with every error otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Skip checks that depend on this machine (text-to-speech engine, secrets in the
        /// environment).
        #[arg(long)]
        no_environment: bool,
    },
    /// Create or upgrade the database schema and exit.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it once (the database keeps only its hash); the token is the
    /// last word of the last line.
    Create {
        #[arg(long, short)]
        config: PathBuf,
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Whom it speaks for: the agent's or manager's SIP URI, an administrator's name.
        #[arg(long)]
        subject: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Admin,
    Manager,
    Agent,
}

impl TokenRole {
    /// The role's name as the store spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Agent => "agent",
        }
    }
}

/// Sets up tracing: human format on a terminal, JSON with `--log-format json`.
pub fn init_tracing(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|e| {
            eprintln!("rgsd: bad --log-level {l:?} ({e}); using info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format, cli.log_level.as_deref());
    match cli.command {
        Command::Check {
            config,
            deny_warnings,
            no_environment,
        } => check(&config, deny_warnings, !no_environment),
        Command::Serve { config } => with_runtime(crate::daemon::serve_main(config)),
        Command::Migrate { config } => with_runtime(crate::daemon::migrate_main(config)),
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    role,
                    subject,
                },
        } => with_runtime(crate::daemon::token_create_main(
            config,
            role.as_str(),
            subject,
        )),
    }
}

fn with_runtime(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("rgsd: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path, deny_warnings: bool, check_environment: bool) -> ExitCode {
    let opts = crate::config::LoadOptions { check_environment };
    match crate::daemon::load_config(path, &opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            if deny_warnings && !loaded.warnings.is_empty() {
                eprintln!(
                    "rgsd: {} warning(s) and --deny-warnings: configuration refused",
                    loaded.warnings.len()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "{}: ok ({})",
                path.display(),
                crate::config::summary(&loaded.config)
            );
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
