//! Accounts on PostgreSQL: users, tokens and principals as the server needs them (sign-in
//! throttling, bearer tokens, the last-admin rule); `backend` serves the UI.

mod backend;
pub mod passwords;
pub mod tokens;

use std::time::Duration;

use app::accounts::{
    validate_password, validate_token_name, CreatedToken, CreatedUser, Email, Principal, Role,
    ServerInfo, TokenRef, TokenScope, TokenView, UserView,
};
use app::error::AppError;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Who};
use crate::db::{self, OrAppError as _};

/// The one answer to every failed sign-in, whatever the reason.
pub const SIGN_IN_FAILED: &str = "Sign-in failed. Check your email and password; after many \
     failed attempts, wait a few minutes before trying again.";

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    max_failures: i64,
    window: Duration,
    info: ServerInfo,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Malformed,
    Unknown,
    Revoked,
    OwnerDisabled,
}

impl TokenRefusal {
    pub fn message(self) -> &'static str {
        match self {
            TokenRefusal::Malformed => "The bearer token is malformed.",
            TokenRefusal::Unknown | TokenRefusal::Revoked | TokenRefusal::OwnerDisabled => {
                "The bearer token is not valid (unknown or revoked)."
            }
        }
    }
}

impl Accounts {
    /// Accounts on `db`, with the sign-in limits of `config`.
    pub fn open(db: &crate::db::Database, config: &crate::config::Config) -> Self {
        let info = ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Utc::now(),
            database: db.kind().to_owned(),
        };
        Self {
            pool: db.pool.clone(),
            max_failures: i64::from(config.login_max_failures.max(1)),
            window: Duration::from_secs(u64::from(config.login_window_seconds)),
            info,
        }
    }

    /// When this process started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.info.started_at
    }

    pub async fn create_user_as(
        &self,
        who: &Who,
        email: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<CreatedUser, AppError> {
        let email = Email::parse(email)?;
        let (password, generated) = match password {
            Some(p) => {
                validate_password(&p)?;
                (p, false)
            }
            None => (passwords::generate(), true),
        };
        let hash = passwords::hash_async(password.clone()).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            AppError::internal()
        })?;
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.or_app()?;
        let inserted = sqlx::query_scalar(
            "insert into users (id, email, role, password_hash) values ($1, $2, $3, $4)
             returning created_at",
        )
        .bind(id)
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await;
        let created_at: DateTime<Utc> = match inserted {
            Ok(created_at) => created_at,
            Err(err) if db::is_unique_violation(&err) => {
                return Err(AppError::Conflict(format!(
                    "There is already a user with the email {}.",
                    email.as_str()
                )))
            }
            Err(err) => return Err(db::app_error(err)),
        };
        audit::record(
            &mut *tx,
            who,
            "user.create",
            Some(format!("user:{}", email.as_str())),
            json!({ "id": id, "email": email.as_str(), "role": role.as_str() }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        Ok(CreatedUser {
            user: UserView {
                id,
                email: email.as_str().to_owned(),
                role,
                disabled: false,
                created_at,
            },
            generated_password: generated.then_some(password),
        })
    }

    /// Creates the first admin from the environment when the database has no users.
    pub async fn bootstrap_admin(&self, email: &str, password: &str) -> Result<bool, AppError> {
        let any: bool = sqlx::query_scalar("select exists(select 1 from users)")
            .fetch_one(&self.pool)
            .await
            .or_app()?;
        if any {
            return Ok(false);
        }
        match self
            .create_user_as(
                &Who::system(),
                email,
                Role::Admin,
                Some(password.to_owned()),
            )
            .await
        {
            Ok(_) => Ok(true),
            // Another replica created it first.
            Err(AppError::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub async fn create_token_as(
        &self,
        who: &Who,
        name: &str,
        scope: TokenScope,
        owner_email: &str,
    ) -> Result<CreatedToken, AppError> {
        let name = validate_token_name(name)?;
        let owner_email = Email::parse(owner_email)?;
        let owner: Option<UserState> =
            sqlx::query_as("select id, disabled_at from users where lower(email) = $1")
                .bind(owner_email.as_str())
                .fetch_optional(&self.pool)
                .await
                .or_app()?;
        let owner_id = match owner {
            None => {
                return Err(AppError::NotFound(format!(
                    "No user has the email {}.",
                    owner_email.as_str()
                )))
            }
            Some(UserState {
                disabled_at: Some(_),
                ..
            }) => {
                return Err(AppError::invalid(format!(
                    "{} is disabled; tokens cannot be made for disabled users.",
                    owner_email.as_str()
                )))
            }
            Some(UserState {
                id,
                disabled_at: None,
            }) => id,
        };
        let secret = tokens::generate();
        let prefix = secret[..tokens::DISPLAY_PREFIX_LEN].to_owned();
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.or_app()?;
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "insert into api_tokens (id, user_id, name, scope, prefix, secret_hash, created_by)
             values ($1, $2, $3, $4, $5, $6, $7) returning created_at",
        )
        .bind(id)
        .bind(owner_id)
        .bind(&name)
        .bind(scope.as_str())
        .bind(&prefix)
        .bind(tokens::digest(&secret))
        .bind(who.user_id)
        .fetch_one(&mut *tx)
        .await
        .or_app()?;
        audit::record(
            &mut *tx,
            who,
            "token.create",
            Some(format!("token:{name}")),
            json!({ "id": id, "name": name, "scope": scope.as_str(), "owner": owner_email.as_str() }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        Ok(CreatedToken {
            token: TokenView {
                id,
                name,
                scope,
                prefix,
                owner_email: owner_email.as_str().to_owned(),
                created_at,
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        })
    }

    /// The principal of a signed-in session; `None` when the user is gone or disabled.
    pub async fn principal_for_user(&self, user_id: Uuid) -> Result<Option<Principal>, AppError> {
        let row: Option<UserRow> =
            sqlx::query_as("select id, email, role, disabled_at from users where id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .or_app()?;
        Ok(match row {
            Some(UserRow {
                email,
                role,
                disabled_at: None,
                ..
            }) => Some(Principal {
                user_id,
                email,
                role,
                token: None,
            }),
            _ => None,
        })
    }

    /// The principal behind a bearer token, or why it is refused.
    pub async fn principal_for_token(
        &self,
        secret: &str,
    ) -> Result<Result<Principal, TokenRefusal>, AppError> {
        if !tokens::well_formed(secret) {
            return Ok(Err(TokenRefusal::Malformed));
        }
        let row: Option<TokenPrincipalRow> = sqlx::query_as(
            "select t.id, t.name, t.scope, t.revoked_at, t.last_used_at, u.id as user_id, u.email,
                    u.role, u.disabled_at
             from api_tokens t join users u on u.id = t.user_id
             where t.secret_hash = $1",
        )
        .bind(tokens::digest(secret))
        .fetch_optional(&self.pool)
        .await
        .or_app()?;
        let Some(row) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if row.revoked_at.is_some() {
            return Ok(Err(TokenRefusal::Revoked));
        }
        if row.disabled_at.is_some() {
            return Ok(Err(TokenRefusal::OwnerDisabled));
        }
        let id = row.id;
        // Record use at most once a minute: a busy script should not write on every call.
        let last_used = row.last_used_at;
        if last_used.is_none_or(|at| Utc::now() - at > chrono::Duration::minutes(1)) {
            sqlx::query("update api_tokens set last_used_at = now() where id = $1")
                .bind(id)
                .execute(&self.pool)
                .await
                .or_app()?;
        }
        Ok(Ok(Principal {
            user_id: row.user_id,
            email: row.email,
            role: row.role,
            token: Some(TokenRef {
                id,
                name: row.name,
                scope: row.scope,
            }),
        }))
    }

    /// Deletes failure records older than the window; run periodically.
    pub async fn sweep_login_failures(&self) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query("delete from login_failures where at < now() - make_interval(secs => $1)")
                .bind(self.window.as_secs_f64())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    /// Reserves one sign-in attempt on every key (account, client address) unless one of
    /// them already holds the maximum within the window, and returns the reserved rows.
    /// Attempts on a key queue on a lock for the count and the insert, so a burst cannot
    /// all be checked before any of them is counted. A reservation stays as the record of
    /// a failure; a success takes its own back.
    async fn reserve_attempt(&self, keys: &[String]) -> Result<Option<Vec<i64>>, AppError> {
        let mut tx = self.pool.begin().await.or_app()?;
        // The same order for everybody, so that two attempts never wait on each other.
        let mut ordered: Vec<&String> = keys.iter().collect();
        ordered.sort();
        for key in ordered {
            sqlx::query("select pg_advisory_xact_lock(hashtextextended('login:' || $1, 0))")
                .bind(key)
                .execute(&mut *tx)
                .await
                .or_app()?;
        }
        let full: bool = sqlx::query_scalar(
            "select exists(
               select 1 from login_failures
               where key = any($1) and at > now() - make_interval(secs => $2)
               group by key having count(*) >= $3)",
        )
        .bind(keys)
        .bind(self.window.as_secs_f64())
        .bind(self.max_failures)
        .fetch_one(&mut *tx)
        .await
        .or_app()?;
        if full {
            return Ok(None);
        }
        let reserved: Vec<i64> = sqlx::query_scalar(
            "insert into login_failures (key) select unnest($1::text[]) returning id",
        )
        .bind(keys)
        .fetch_all(&mut *tx)
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        Ok(Some(reserved))
    }

    /// Locks the users a change of `target` by `actor` depends on (every active admin,
    /// the target and the actor, in id order so that concurrent changes queue rather than
    /// deadlock) and checks that the actor is still an active admin. The rule about the
    /// last admin is then judged on rows nobody else can change until the commit.
    async fn lock_for_change(
        tx: &mut sqlx::PgConnection,
        actor: Uuid,
        target: Uuid,
    ) -> Result<LockedUsers, AppError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "select id, email, role, disabled_at from users
             where (role = 'admin' and disabled_at is null) or id = any($1)
             order by id for update",
        )
        .bind([actor, target])
        .fetch_all(&mut *tx)
        .await
        .or_app()?;
        let active_admin = |r: &&UserRow| r.role == Role::Admin && r.disabled_at.is_none();
        if !rows.iter().filter(active_admin).any(|r| r.id == actor) {
            return Err(AppError::Forbidden(
                "Only an active admin can change users.".into(),
            ));
        }
        let found = rows
            .iter()
            .find(|r| r.id == target)
            .ok_or_else(|| AppError::NotFound("That user does not exist.".into()))?;
        Ok(LockedUsers {
            email: found.email.clone(),
            role: found.role,
            disabled: found.disabled_at.is_some(),
            other_active_admins: rows
                .iter()
                .filter(active_admin)
                .filter(|r| r.id != target)
                .count(),
        })
    }
}

/// The target of a change to a user, read under [`Accounts::lock_for_change`].
struct LockedUsers {
    email: String,
    role: Role,
    disabled: bool,
    other_active_admins: usize,
}

/// A user as the sign-in and change checks read it.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    role: Role,
    disabled_at: Option<DateTime<Utc>>,
}

/// Whether a user (a token's owner-to-be) is enabled.
#[derive(sqlx::FromRow)]
struct UserState {
    id: Uuid,
    disabled_at: Option<DateTime<Utc>>,
}

/// A bearer token with its owner, as authentication reads it.
#[derive(sqlx::FromRow)]
struct TokenPrincipalRow {
    id: Uuid,
    name: String,
    scope: TokenScope,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    user_id: Uuid,
    email: String,
    role: Role,
    disabled_at: Option<DateTime<Utc>>,
}
