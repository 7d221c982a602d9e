//! `app::backend::AccountsBackend` for [`Accounts`]: sign-in, the dashboard, users,
//! tokens and the audit log as the UI asks for them.

use std::net::IpAddr;

use app::accounts::{
    AdminCounts, AuditEntry, AuditPage, AuditQuery, CreatedToken, CreatedUser, Dashboard, Email,
    Principal, Role, TokenScope, TokenView, UserView, AUDIT_PAGE_SIZE,
};
use app::backend::{AccountsBackend, Actor};
use app::error::AppError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Who};
use crate::db::OrAppError as _;

use super::{passwords, tokens, Accounts, SIGN_IN_FAILED};

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
