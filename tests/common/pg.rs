//! PostgreSQL scratch databases for the store and API suites.

use sqlx::Connection;

/// A PostgreSQL database of the test's own, dropped (even after a failed assertion) on `Drop`.
pub struct ScratchDatabase {
    admin_url: String,
    pub name: String,
    /// The URL of the scratch database.
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str) -> ScratchDatabase {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!("rgsd_test_{}", hex::encode(random));
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        // `name` is made of [a-z0-9_] only, so it needs no quoting.
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        ScratchDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot be async: a thread with a runtime of its own does the work.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}

/// `url` with its database (path) replaced by `database`, query string kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}
