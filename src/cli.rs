//! The command line: `rgsd serve | check | migrate | token create | user … | export | import`.
//!
//! `serve` and `check` share one `config::load`, so their messages cannot drift apart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit status for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

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
        } => with_runtime(check_with_database(config, deny_warnings, !no_environment)),
        Command::Export { config } => with_runtime(export(config)),
        Command::Import { config, file } => with_runtime(import(config, file)),
        Command::Serve { config } => with_runtime(crate::daemon::serve_main(config)),
        Command::Migrate { config } => with_runtime(crate::daemon::migrate_main(config)),
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    role,
                    subject,
                },
        } => with_runtime(token_create(config, role, subject)),
        Command::User { command } => user(command),
    }
}

impl From<TokenRole> for crate::store::Role {
    fn from(r: TokenRole) -> Self {
        match r {
            TokenRole::Admin => Self::Admin,
            TokenRole::Manager => Self::Manager,
            TokenRole::Agent => Self::Agent,
        }
    }
}

/// `rgsd user …`. Exit status as `rgsd token create`: 0 done, 78 configuration error, 1 any
/// other failure (refused password, unknown or duplicate user, database), with the reason on
/// stderr.
fn user(command: UserCommand) -> ExitCode {
    use crate::store::users::{PasswordError, PasswordHash};
    // The password is read (and hashed) before the runtime starts: a terminal prompt must not
    // sit on an async thread, and a refused password needs no database.
    let (config, name, action) = match command {
        UserCommand::Add {
            config,
            role,
            password_file,
            name,
        } => (config, name, UserAction::Add(role.into(), password_file)),
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
    if !matches!(action, UserAction::List) && !crate::store::users::is_user_name(&name) {
        eprintln!("rgsd: user name {name:?} is not a SIP URI; write \"sip:user@host\"");
        return ExitCode::FAILURE;
    }
    let hash = match &action {
        UserAction::Add(_, file) | UserAction::Passwd(file) => {
            let password = match read_password(file.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("rgsd: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            match PasswordHash::new(&password) {
                Ok(h) => Some(h),
                Err(e @ (PasswordError::TooShort | PasswordError::TooLong)) => {
                    eprintln!("rgsd: password refused: {e}");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("rgsd: {:#}", anyhow::Error::from(e));
                    return ExitCode::FAILURE;
                }
            }
        }
        UserAction::Remove | UserAction::Disable(_) | UserAction::List => None,
    };
    let opts = crate::config::LoadOptions {
        check_environment: false,
    };
    let loaded = match crate::config::load(&config, &opts) {
        Ok(loaded) => loaded.config,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    with_runtime(user_in_store(loaded.server.database, name, action, hash))
}

enum UserAction {
    Add(crate::store::Role, Option<PathBuf>),
    Passwd(Option<PathBuf>),
    Remove,
    Disable(bool),
    List,
}

/// The password from the first line of `file`, or of standard input (asked for twice, without
/// echo, on a terminal). Only the line ending is trimmed: spaces are part of a password.
fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::io::{BufRead as _, IsTerminal as _};
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?,
        None if std::io::stdin().is_terminal() => {
            let first =
                rpassword::prompt_password("Password: ").context("cannot read the password")?;
            let again = rpassword::prompt_password("Password again: ")
                .context("cannot read the password")?;
            anyhow::ensure!(first == again, "the two passwords differ");
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line
        }
    };
    let line = text.lines().next().unwrap_or_default();
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

async fn user_in_store(
    database: crate::config::model::DatabaseUrl,
    name: String,
    action: UserAction,
    hash: Option<crate::store::PasswordHash>,
) -> ExitCode {
    use anyhow::Context as _;
    const ACTOR: &str = "rgsd user";
    let result = async {
        let store = crate::store::Store::connect(&database)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("migration failed")?;
        let audit = |action: &'static str, detail: serde_json::Value| {
            let store = store.clone();
            let name = name.clone();
            async move {
                store
                    .audit(ACTOR, action, &name, &detail)
                    .await
                    .context("cannot write the audit log")
            }
        };
        let message = match (action, hash) {
            (UserAction::Add(role, _), Some(hash)) => {
                let user = store
                    .create_user(&name, role, &hash)
                    .await
                    .with_context(|| format!("cannot add user {name}"))?;
                audit("user.create", serde_json::json!({ "role": role.as_str() })).await?;
                format!("user {} added ({})", user.name, role.as_str())
            }
            (UserAction::Passwd(_), Some(hash)) => {
                store
                    .set_password(&name, &hash)
                    .await
                    .with_context(|| format!("cannot set the password of {name}"))?;
                audit("user.password", serde_json::json!({})).await?;
                format!("password of {name} changed; their sessions ended")
            }
            (UserAction::Remove, _) => {
                store
                    .delete_user(&name)
                    .await
                    .with_context(|| format!("cannot remove user {name}"))?;
                audit("user.delete", serde_json::json!({})).await?;
                format!("user {name} removed")
            }
            (UserAction::Disable(disabled), _) => {
                store
                    .set_user_disabled(&name, disabled)
                    .await
                    .with_context(|| format!("cannot change user {name}"))?;
                let (action, word) = if disabled {
                    ("user.disable", "disabled")
                } else {
                    ("user.enable", "enabled")
                };
                audit(action, serde_json::json!({})).await?;
                format!("user {name} {word}")
            }
            (UserAction::List, _) => {
                let mut out = String::new();
                for u in store.list_users().await.context("cannot list the users")? {
                    let disabled = u
                        .disabled_at
                        .map_or_else(|| "-".to_owned(), |d| d.to_rfc3339());
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        u.name,
                        u.role.as_str(),
                        u.created_at.to_rfc3339(),
                        disabled
                    ));
                }
                out.pop();
                out
            }
            (UserAction::Add(..) | UserAction::Passwd(_), None) => {
                anyhow::bail!("no password")
            }
        };
        store.close().await;
        anyhow::Ok(message)
    }
    .await;
    match result {
        Ok(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rgsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rgsd token create`: migrates the database if needed, issues the token, audits it.
async fn token_create(path: PathBuf, role: TokenRole, subject: String) -> ExitCode {
    use anyhow::Context as _;
    let opts = crate::config::LoadOptions {
        check_environment: false,
    };
    let config = match crate::config::load(&path, &opts) {
        Ok(loaded) => loaded.config,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let role = match role {
        TokenRole::Admin => crate::store::Role::Admin,
        TokenRole::Manager => crate::store::Role::Manager,
        TokenRole::Agent => crate::store::Role::Agent,
    };
    let result = async {
        let store = crate::store::Store::connect(&config.server.database)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("migration failed")?;
        let issued = store
            .create_token(role, &subject)
            .await
            .context("cannot create the token")?;
        store
            .audit(
                "rgsd token create",
                "token.create",
                &subject,
                &serde_json::json!({ "id": issued.info.id.0, "role": role.as_str() }),
            )
            .await
            .context("cannot write the audit log")?;
        store.close().await;
        anyhow::Ok(issued)
    }
    .await;
    match result {
        Ok(issued) => {
            println!(
                "token {} created for {} ({}); it is shown only once:",
                issued.info.id.0,
                issued.info.subject,
                role.as_str()
            );
            println!("{}", issued.token.expose());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rgsd: {e:#}");
            ExitCode::FAILURE
        }
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
    match crate::config::load(path, &opts) {
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

/// Opens the database the configuration file names (migrated), or says why not.
async fn open_store(
    path: &std::path::Path,
) -> Result<(crate::config::model::Config, crate::store::Store), ExitCode> {
    use anyhow::Context as _;
    let opts = crate::config::LoadOptions {
        check_environment: false,
    };
    let config = match crate::config::load(path, &opts) {
        Ok(loaded) => loaded.config,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    let store = async {
        let store = crate::store::Store::connect(&config.server.database)
            .await
            .context("cannot open the database")?;
        store.migrate().await.context("migration failed")?;
        anyhow::Ok(store)
    }
    .await
    .map_err(|e| {
        eprintln!("rgsd: {e:#}");
        ExitCode::FAILURE
    })?;
    Ok((config, store))
}

/// `rgsd check --database`: the file plus the database's objects.
async fn check_with_database(
    path: PathBuf,
    deny_warnings: bool,
    check_environment: bool,
) -> ExitCode {
    let (_, store) = match open_store(&path).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = crate::config::LoadOptions { check_environment };
    let result = crate::api::objects::load_with_database(path.clone(), &store, opts).await;
    store.close().await;
    match result {
        Ok(merged) => {
            let warnings = &merged.loaded.warnings;
            for w in warnings {
                eprintln!("{w}");
            }
            if deny_warnings && !warnings.is_empty() {
                eprintln!(
                    "rgsd: {} warning(s) and --deny-warnings: configuration refused",
                    warnings.len()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let stored = merged
                .origins
                .values()
                .filter(|o| matches!(o, crate::config::Origin::Database { .. }))
                .count();
            println!(
                "{} with {stored} object(s) from the database: ok ({})",
                path.display(),
                crate::config::summary(&merged.loaded.config)
            );
            ExitCode::SUCCESS
        }
        Err(crate::api::objects::LoadError::Config(diagnostics)) => {
            print_diagnostics(&diagnostics);
            ExitCode::from(EXIT_CONFIG)
        }
        Err(crate::api::objects::LoadError::Store(e)) => {
            eprintln!("rgsd: cannot read the objects from the database: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rgsd export`: the database's objects as TOML on stdout.
async fn export(path: PathBuf) -> ExitCode {
    let (_, store) = match open_store(&path).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let objects = store.list_objects().await;
    store.close().await;
    let objects: Vec<_> = match objects {
        Ok(o) => o.into_iter().map(|o| o.object).collect(),
        Err(e) => {
            eprintln!("rgsd: cannot read the objects from the database: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::config::merge::export_toml(&objects) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rgsd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rgsd import FILE`: the file's objects into the database, checked as a whole first.
async fn import(path: PathBuf, file: PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rgsd: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let incoming = match crate::config::merge::objects_of_toml(&text) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rgsd: {}: {e}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (_, store) = match open_store(&path).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = import_into(&path, &store, incoming).await;
    store.close().await;
    code
}

async fn import_into(
    path: &std::path::Path,
    store: &crate::store::Store,
    incoming: Vec<(crate::config::ObjectKind, String, serde_json::Value)>,
) -> ExitCode {
    use crate::config::DbObject;
    let opts = crate::config::LoadOptions {
        check_environment: false,
    };
    let mut objects: Vec<DbObject> = match store.list_objects().await {
        Ok(o) => o.into_iter().map(|o| o.object).collect(),
        Err(e) => {
            eprintln!("rgsd: cannot read the objects from the database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let existing = match crate::config::load_merged(path, &objects, &opts) {
        Ok(m) => m.origins,
        Err(diagnostics) => {
            eprintln!("rgsd: the configuration does not check before the import:");
            print_diagnostics(&diagnostics);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let taken: Vec<String> = incoming
        .iter()
        .filter(|(kind, name, _)| existing.contains_key(&(*kind, name.clone())))
        .map(|(kind, name, _)| format!("{kind} {name:?}"))
        .collect();
    if !taken.is_empty() {
        eprintln!(
            "rgsd: import refused: these names exist already: {}",
            taken.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut bodies = Vec::new();
    for (kind, name, mut body) in incoming {
        if let Some(map) = body.as_object_mut() {
            map.remove("name");
        }
        objects.push(DbObject {
            kind,
            name: name.clone(),
            body: body.clone(),
            version: 1,
        });
        bodies.push((kind, name, body));
    }
    if let Err(diagnostics) = crate::config::load_merged(path, &objects, &opts) {
        eprintln!("rgsd: import refused:");
        print_diagnostics(&diagnostics);
        return ExitCode::from(EXIT_CONFIG);
    }
    for (kind, name, body) in &bodies {
        let result = async {
            store
                .create_object(*kind, name, body, "rgsd import")
                .await?;
            store
                .audit(
                    "rgsd import",
                    &format!("{}.create", kind.table()),
                    name,
                    &serde_json::json!({ "before": null, "after": body }),
                )
                .await
        }
        .await;
        if let Err(e) = result {
            eprintln!("rgsd: cannot store {kind} {name:?}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "imported {} object(s); a running rgsd picks them up on SIGHUP",
        bodies.len()
    );
    ExitCode::SUCCESS
}

/// Prints every diagnostic on stderr, then a count.
pub fn print_diagnostics(diagnostics: &[crate::config::Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
    eprintln!("rgsd: configuration has {} problem(s)", diagnostics.len());
}
