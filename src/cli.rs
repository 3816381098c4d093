//! The command line: `rgsd serve | check | migrate | token create | user … | export | import`.
//!
//! `serve` and `check` load the file through one function (`daemon::load_config`), so their
//! messages cannot drift apart. `cli` only parses arguments: the commands themselves are in
//! `daemon` and `admin`.

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
        /// Check the file together with the objects created through the API (read from the
        /// file's database): the model `serve` runs.
        #[arg(long, alias = "with-database")]
        database: bool,
    },
    /// Print the objects created through the API (stored in the database) as TOML, in the
    /// configuration file's shape.
    Export {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load the agent groups, queues, hours, holiday sets and workflows of FILE into the
    /// database, as if created through the API. Refuses names that exist, in the file or the
    /// database, and a result that does not check (the whole import is checked before
    /// anything is written).
    Import {
        #[arg(long, short)]
        config: PathBuf,
        /// A TOML file with `[[agent_group]]`, `[[queue]]`, `[[hours]]`, `[[holiday_set]]` and
        /// `[[workflow]]` tables (other tables are ignored).
        file: PathBuf,
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
    /// Manage the people who sign in to the web pages with a password.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// The password rule, shown in the help of the commands that set one.
const PASSWORD_HELP: &str = "The password is read from standard input (first line; on a terminal it is asked for twice, \
     without echo) or from --password-file, never from the command line. It must have at least \
     12 characters (at most 1024 bytes).";

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user who signs in with a password.
    #[command(after_help = PASSWORD_HELP)]
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// What the user may do (the same roles as API tokens).
        #[arg(long, value_enum)]
        role: TokenRole,
        /// Read the password from the first line of this file instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The user name: their SIP URI, as in `managers` and agent groups.
        name: String,
    },
    /// Set a user's password; their sessions end.
    #[command(after_help = PASSWORD_HELP)]
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
        name: String,
    },
    /// Remove a user; their sessions end.
    Remove {
        #[arg(long, short)]
        config: PathBuf,
        name: String,
    },
    /// Stop a user from signing in (their sessions end) without removing them.
    Disable {
        #[arg(long, short)]
        config: PathBuf,
        name: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long, short)]
        config: PathBuf,
        name: String,
    },
    /// List the users: name, role, created, disabled.
    List {
        #[arg(long, short)]
        config: PathBuf,
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
            database: false,
        } => check(&config, deny_warnings, !no_environment),
        Command::Check {
            config,
            deny_warnings,
            no_environment,
            database: true,
        } => crate::admin::with_runtime(crate::admin::check_with_database(
            config,
            deny_warnings,
            !no_environment,
        )),
        Command::Export { config } => crate::admin::with_runtime(crate::admin::export(config)),
        Command::Import { config, file } => {
            crate::admin::with_runtime(crate::admin::import(config, file))
        }
        Command::Serve { config } => crate::admin::with_runtime(crate::daemon::serve_main(config)),
        Command::Migrate { config } => {
            crate::admin::with_runtime(crate::daemon::migrate_main(config))
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    role,
                    subject,
                },
        } => crate::admin::with_runtime(crate::daemon::token_create_main(
            config,
            role.as_str(),
            subject,
        )),
        Command::User { command } => user(command),
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
            if let Some(id) = &loaded.config.server.tls.identity {
                println!(
                    "TLS certificate {}: names {}; expires {}",
                    id.certificate.display(),
                    id.names.join(", "),
                    id.not_after.to_rfc3339()
                );
            }
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `rgsd user …`: the arguments as [`crate::admin::UserAction`].
fn user(command: UserCommand) -> ExitCode {
    use crate::admin::UserAction;
    let (config, name, action) = match command {
        UserCommand::Add {
            config,
            role,
            password_file,
            name,
        } => (config, name, UserAction::Add(role.as_str(), password_file)),
        UserCommand::Passwd {
            config,
            password_file,
            name,
        } => (config, name, UserAction::Passwd(password_file)),
        UserCommand::Remove { config, name } => (config, name, UserAction::Remove),
        UserCommand::Disable { config, name } => (config, name, UserAction::Disable(true)),
        UserCommand::Enable { config, name } => (config, name, UserAction::Disable(false)),
        UserCommand::List { config } => (config, String::new(), UserAction::List),
    };
    crate::admin::user_main(config, name, action)
}
