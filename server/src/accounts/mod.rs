//! Accounts on PostgreSQL: users, sign-in with throttling, API tokens, the audit log
//! queries, and the dashboard figures. Implements `app::backend::AccountsBackend`.

pub mod passwords;
pub mod tokens;

use std::net::IpAddr;
use std::time::Duration;

use app::accounts::{
    validate_password, validate_token_name, AdminCounts, AuditEntry, AuditPage, AuditQuery,
    CreatedToken, CreatedUser, Dashboard, Email, Principal, Role, ServerInfo, TokenRef, TokenScope,
    TokenView, UserView, AUDIT_PAGE_SIZE,
};
use app::backend::{AccountsBackend, Actor};
use app::error::AppError;
use async_trait::async_trait;
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

fn last_admin() -> AppError {
    AppError::Conflict("Slate needs at least one active admin.".into())
}

fn who(actor: &Actor) -> Who {
    Who::principal(&actor.principal, actor.client_addr)
}

fn audit_entry(row: AuditRow) -> AuditEntry {
    AuditEntry {
        id: row.id,
        at: row.at,
        actor: row.actor_label,
        action: row.action,
        target: row.target,
        detail: row.detail.to_string(),
        client_addr: row.client_addr,
    }
}

#[async_trait]
impl AccountsBackend for Accounts {
    #[tracing::instrument(skip_all, fields(client = ?client_addr))]
    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client_addr: Option<IpAddr>,
    ) -> Result<Principal, AppError> {
        // Something that is not an email address has no account (and may be too long or
        // hold bytes that cannot be stored): it is counted under its digest and looked up
        // nowhere, but checked against the dummy hash all the same.
        let parsed = Email::parse(email);
        let account_key = match &parsed {
            Ok(email) => format!("account:{}", email.as_str()),
            Err(_) => format!(
                "account:#{}",
                hex::encode(tokens::digest(&email.trim().to_lowercase()))
            ),
        };
        let mut keys = vec![account_key];
        if let Some(addr) = client_addr {
            keys.push(format!("client:{addr}"));
        }
        let Some(reserved) = self.reserve_attempt(&keys).await? else {
            tracing::warn!("sign-in refused: too many recent failures");
            return Err(AppError::TooManyRequests(SIGN_IN_FAILED.into()));
        };
        let row: Option<SignInRow> = match &parsed {
            Ok(email) => sqlx::query_as(
                "select id, role, password_hash, disabled_at from users where lower(email) = $1",
            )
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .or_app()?,
            Err(_) => None,
        };
        let stored = row.as_ref().map(|r| r.password_hash.clone());
        let password_ok = passwords::verify_async(password.to_owned(), stored).await;
        match row {
            Some(SignInRow {
                id,
                role,
                disabled_at: None,
                ..
            }) if password_ok => {
                let principal = Principal {
                    user_id: id,
                    email: email.trim().to_lowercase(),
                    role,
                    token: None,
                };
                // The account's failures are forgiven; the address keeps its others.
                sqlx::query("delete from login_failures where key = $1 or id = any($2)")
                    .bind(&keys[0])
                    .bind(&reserved)
                    .execute(&self.pool)
                    .await
                    .or_app()?;
                audit::record(
                    &self.pool,
                    &Who::principal(&principal, client_addr),
                    "session.sign_in",
                    None,
                    json!({}),
                )
                .await
                .or_app()?;
                Ok(principal)
            }
            _ => {
                // The reservation stays: it is the record of this failure.
                tracing::info!(known_account = row.is_some(), "sign-in failed");
                Err(AppError::Unauthenticated(SIGN_IN_FAILED.into()))
            }
        }
    }

    async fn record_sign_out(&self, actor: &Actor) -> Result<(), AppError> {
        audit::record(&self.pool, &who(actor), "session.sign_out", None, json!({}))
            .await
            .or_app()
    }

    async fn dashboard(&self, me: &Principal) -> Result<Dashboard, AppError> {
        let my_recent = sqlx::query_as::<_, AuditRow>(
            "select id, at, actor_label, action, target, detail, client_addr from audit_log
             where actor_user_id = $1 order by at desc, id desc limit 8",
        )
        .bind(me.user_id)
        .fetch_all(&self.pool)
        .await
        .or_app()?
        .into_iter()
        .map(audit_entry)
        .collect();
        let admin = if me.has(Role::Admin) {
            let row: CountsRow = sqlx::query_as(
                "select
                   (select count(*) from users where disabled_at is null) as active_users,
                   (select count(*) from users where disabled_at is not null) as disabled_users,
                   (select count(*) from api_tokens t join users u on u.id = t.user_id
                     where t.revoked_at is null and u.disabled_at is null) as active_tokens,
                   (select count(*) from audit_log where at > now() - interval '1 day') as audit_last_day",
            )
            .fetch_one(&self.pool)
            .await
            .or_app()?;
            Some(AdminCounts {
                active_users: row.active_users,
                disabled_users: row.disabled_users,
                active_tokens: row.active_tokens,
                audit_last_day: row.audit_last_day,
            })
        } else {
            None
        };
        Ok(Dashboard {
            server: self.info.clone(),
            my_recent,
            admin,
        })
    }

    async fn list_users(&self) -> Result<Vec<UserView>, AppError> {
        let rows: Vec<UserListRow> = sqlx::query_as(
            "select id, email, role, disabled_at, created_at from users order by lower(email)",
        )
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        Ok(rows
            .into_iter()
            .map(|r| UserView {
                id: r.id,
                email: r.email,
                role: r.role,
                disabled: r.disabled_at.is_some(),
                created_at: r.created_at,
            })
            .collect())
    }

    async fn create_user(
        &self,
        actor: &Actor,
        email: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<CreatedUser, AppError> {
        self.create_user_as(&who(actor), email, role, password)
            .await
    }

    async fn set_role(&self, actor: &Actor, user: Uuid, role: Role) -> Result<(), AppError> {
        if user == actor.principal.user_id {
            return Err(AppError::Forbidden(
                "You cannot change your own role.".into(),
            ));
        }
        let mut tx = self.pool.begin().await.or_app()?;
        let target = Self::lock_for_change(&mut tx, actor.principal.user_id, user).await?;
        if target.role == role {
            return Ok(());
        }
        if target.role == Role::Admin && !target.disabled && target.other_active_admins == 0 {
            return Err(last_admin());
        }
        sqlx::query("update users set role = $2, updated_at = now() where id = $1")
            .bind(user)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .or_app()?;
        audit::record(
            &mut *tx,
            &who(actor),
            "user.set_role",
            Some(format!("user:{}", target.email)),
            json!({ "id": user, "from": target.role.as_str(), "to": role.as_str() }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()
    }

    async fn set_disabled(
        &self,
        actor: &Actor,
        user: Uuid,
        disabled: bool,
    ) -> Result<(), AppError> {
        if user == actor.principal.user_id {
            return Err(AppError::Forbidden(
                "You cannot disable your own account.".into(),
            ));
        }
        let mut tx = self.pool.begin().await.or_app()?;
        let target = Self::lock_for_change(&mut tx, actor.principal.user_id, user).await?;
        if target.disabled == disabled {
            return Ok(());
        }
        if disabled && target.role == Role::Admin && target.other_active_admins == 0 {
            return Err(last_admin());
        }
        sqlx::query(
            "update users set disabled_at = case when $2 then now() else null end, updated_at = now()
             where id = $1",
        )
        .bind(user)
        .bind(disabled)
        .execute(&mut *tx)
        .await
        .or_app()?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        audit::record(
            &mut *tx,
            &who(actor),
            action,
            Some(format!("user:{}", target.email)),
            json!({ "id": user }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenView>, AppError> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "select t.id, t.name, t.scope, t.prefix, u.email, t.created_at, t.last_used_at, t.revoked_at
             from api_tokens t join users u on u.id = t.user_id
             order by t.revoked_at is not null, t.created_at desc",
        )
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        Ok(rows
            .into_iter()
            .map(|row| TokenView {
                id: row.id,
                name: row.name,
                scope: row.scope,
                prefix: row.prefix,
                owner_email: row.email,
                created_at: row.created_at,
                last_used_at: row.last_used_at,
                revoked_at: row.revoked_at,
            })
            .collect())
    }

    async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        scope: TokenScope,
        owner_email: Option<&str>,
    ) -> Result<CreatedToken, AppError> {
        let owner = owner_email.unwrap_or(&actor.principal.email);
        self.create_token_as(&who(actor), name, scope, owner).await
    }

    async fn revoke_token(&self, actor: &Actor, token: Uuid) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await.or_app()?;
        let row: Option<TokenState> =
            sqlx::query_as("select name, revoked_at from api_tokens where id = $1 for update")
                .bind(token)
                .fetch_optional(&mut *tx)
                .await
                .or_app()?;
        let TokenState { name, revoked_at } =
            row.ok_or_else(|| AppError::NotFound("That token does not exist.".into()))?;
        if revoked_at.is_some() {
            return Ok(());
        }
        sqlx::query("update api_tokens set revoked_at = now() where id = $1")
            .bind(token)
            .execute(&mut *tx)
            .await
            .or_app()?;
        audit::record(
            &mut *tx,
            &who(actor),
            "token.revoke",
            Some(format!("token:{name}")),
            json!({ "id": token }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage, AppError> {
        let like = |s: Option<String>| {
            s.map(|s| {
                format!(
                    "%{}%",
                    s.trim()
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            })
        };
        let action_prefix = query.action.map(|a| {
            format!(
                "{}%",
                a.trim()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        let rows: Vec<AuditRow> = sqlx::query_as(
            "select id, at, actor_label, action, target, detail, client_addr from audit_log
             where ($1::text is null or actor_label ilike $1)
               and ($2::text is null or action like $2)
               and ($3::bigint is null or id < $3)
             order by id desc
             limit $4",
        )
        .bind(like(query.actor))
        .bind(action_prefix)
        .bind(query.before)
        .bind(AUDIT_PAGE_SIZE + 1)
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let mut entries: Vec<AuditEntry> = rows.into_iter().map(audit_entry).collect();
        let next_before = if entries.len() as i64 > AUDIT_PAGE_SIZE {
            entries.truncate(AUDIT_PAGE_SIZE as usize);
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_before,
        })
    }
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

#[derive(sqlx::FromRow)]
struct SignInRow {
    id: Uuid,
    role: Role,
    password_hash: String,
    disabled_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct UserListRow {
    id: Uuid,
    email: String,
    role: Role,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
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

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    scope: TokenScope,
    prefix: String,
    email: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Whether a token is revoked, read before revoking it.
#[derive(sqlx::FromRow)]
struct TokenState {
    name: String,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor_label: String,
    action: String,
    target: Option<String>,
    detail: serde_json::Value,
    client_addr: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CountsRow {
    active_users: i64,
    disabled_users: i64,
    active_tokens: i64,
    audit_last_day: i64,
}
