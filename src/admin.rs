//! The offline administration commands: `rgsd user …`, `rgsd check --database`, `rgsd export`
//! and `rgsd import`. They open the configured database directly (no server needed); the
//! command line (`cli`) parses their arguments and calls them here, so that `cli` itself never
//! reaches the store.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{EXIT_CONFIG, print_diagnostics};

/// Runs `fut` to completion on a new multi-threaded runtime (every command that does I/O).
pub(crate) fn with_runtime(fut: impl Future<Output = ExitCode>) -> ExitCode {
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

/// `rgsd user …`. Exit status as `rgsd token create`: 0 done, 78 configuration error, 1 any
/// other failure (refused password, unknown or duplicate user, database), with the reason on
/// stderr.
pub(crate) fn user_main(config: PathBuf, name: String, action: UserAction) -> ExitCode {
    use crate::store::users::{PasswordError, PasswordHash};
    // The password is read (and hashed) before the runtime starts: a terminal prompt must not
    // sit on an async thread, and a refused password needs no database.
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

/// What `rgsd user` does; the role is named as the store spells it (`admin`, `manager`, `agent`).
pub(crate) enum UserAction {
    Add(&'static str, Option<PathBuf>),
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
                let role: crate::store::Role = role
                    .parse()
                    .map_err(|_| anyhow::anyhow!("unknown role {role:?}"))?;
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
pub(crate) async fn check_with_database(
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
pub(crate) async fn export(path: PathBuf) -> ExitCode {
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
pub(crate) async fn import(path: PathBuf, file: PathBuf) -> ExitCode {
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
