//! The database: which PostgreSQL to use (external or embedded), the connection pool,
//! and the migrations in `migrations/`.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};

use crate::config::Config;
use crate::embedded_pg::{EmbeddedError, EmbeddedPostgres};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error(
        "cannot reach PostgreSQL at {target} after {waited} s: {cause}.\nCheck that the server \
         is running and that DATABASE_URL is right."
    )]
    Unreachable {
        target: String,
        waited: u64,
        cause: String,
    },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Which database Slate is using; the embedded one must be stopped on exit.
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    pub fn kind(&self) -> &'static str {
        if self.embedded.is_some() {
            "embedded"
        } else {
            "external"
        }
    }

    /// Connects to `DATABASE_URL`, or starts (or attaches to) the embedded PostgreSQL.
    pub async fn open(config: &Config) -> Result<Self, DbError> {
        let wait = Duration::from_secs(config.db_wait_seconds);
        match &config.database_url {
            Some(url) => {
                let pool = connect(url, wait, config.db_max_connections).await?;
                Ok(Self {
                    pool,
                    embedded: None,
                })
            }
            None => {
                let embedded = EmbeddedPostgres::start(config).await?;
                let result = async {
                    ensure_database(&embedded.url(), wait).await?;
                    connect(&embedded.url(), wait, config.db_max_connections).await
                }
                .await;
                match result {
                    Ok(pool) => Ok(Self {
                        pool,
                        embedded: Some(embedded),
                    }),
                    Err(err) => {
                        if embedded.started_here {
                            let _ = embedded.stop().await;
                        }
                        Err(err)
                    }
                }
            }
        }
    }

    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool and stops the embedded server when `stop_embedded` says so.
    pub async fn close(self, stop_embedded: bool) {
        self.pool.close().await;
        if let Some(embedded) = self.embedded {
            if stop_embedded || embedded.started_here {
                if let Err(err) = embedded.stop().await {
                    tracing::error!(error = %err, "stopping the embedded PostgreSQL failed");
                }
            }
        }
    }
}

pub fn parse_url(url: &str) -> Result<PgConnectOptions, DbError> {
    url.parse::<PgConnectOptions>()
        .map(|o| o.log_statements(tracing::log::LevelFilter::Debug))
        .map_err(|e| DbError::BadUrl(redact_error(&e.to_string(), url)))
}

/// Host, port and database of a URL, without the credentials, for messages.
pub fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "<unparsable DATABASE_URL>".into(),
    }
}

fn redact_error(message: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "***"),
        _ => message.to_owned(),
    }
}

/// A pool that fails fast while the database is down and reconnects by itself when it
/// comes back (every connection is checked before use).
pub async fn connect(url: &str, wait: Duration, max: u32) -> Result<PgPool, DbError> {
    connect_with(parse_url(url)?, url, wait, max).await
}

async fn connect_with(
    options: PgConnectOptions,
    url: &str,
    wait: Duration,
    max: u32,
) -> Result<PgPool, DbError> {
    let started = Instant::now();
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(err) if started.elapsed() < wait && is_transient(&err) => {
                tracing::warn!(target_db = %describe(url), error = %redact_error(&err.to_string(), url), "database not ready yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                return Err(DbError::Unreachable {
                    target: describe(url),
                    waited: started.elapsed().as_secs(),
                    cause: redact_error(&err.to_string(), url),
                })
            }
        }
    }
}

fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 57P03: the database system is starting up.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Creates the `slate` database in a fresh embedded cluster.
async fn ensure_database(url: &str, wait: Duration) -> Result<(), DbError> {
    let options = parse_url(url)?;
    let name = options.get_database().unwrap_or("slate").to_owned();
    let admin = connect_with(options.database("postgres"), url, wait, 1).await?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&admin)
            .await?;
    }
    admin.close().await;
    Ok(())
}

/// The one mapping from a database error to what the person who asked is told: the
/// database being away is "try again" (503), anything else is the server's fault (500).
/// The cause is logged here, once, and never reaches the client.
pub fn app_error(err: sqlx::Error) -> app::error::AppError {
    if is_unavailable(&err) {
        tracing::warn!(error = %err, "database unavailable");
        app::error::AppError::unavailable()
    } else {
        tracing::error!(error = %err, "database query failed");
        app::error::AppError::internal()
    }
}

/// Whether an error means the database cannot be reached now (as opposed to a query it
/// refused).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

/// Whether the database refused a row because it would duplicate a unique key (23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// `result.or_app()?` in backends: the database error mapped by [`app_error`].
pub trait OrAppError<T> {
    fn or_app(self) -> Result<T, app::error::AppError>;
}

impl<T> OrAppError<T> for Result<T, sqlx::Error> {
    fn or_app(self) -> Result<T, app::error::AppError> {
        self.map_err(app_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_and_errors_hide_the_password() {
        let url = "postgres://slate:s3cret-pass@db.internal:6543/slate";
        assert_eq!(describe(url), "db.internal:6543/slate");
        assert_eq!(
            redact_error("auth failed for s3cret-pass", url),
            "auth failed for ***"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_clear_error() {
        let err = parse_url("postgres://slate@db:not-a-port/slate").unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not a valid"),
            "{err}"
        );
    }
}
