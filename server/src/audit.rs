//! The audit log: one row per state change made by a person, a token or Slate itself.

use std::net::IpAddr;

use app::accounts::Principal;
use serde_json::Value;
use uuid::Uuid;

/// Who did it, as recorded.
#[derive(Clone, Debug)]
pub struct Who {
    pub user_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub label: String,
    pub client_addr: Option<IpAddr>,
}

impl Who {
    pub fn principal(p: &Principal, client_addr: Option<IpAddr>) -> Self {
        Self {
            user_id: Some(p.user_id),
            token_id: p.token.as_ref().map(|t| t.id),
            label: p.label(),
            client_addr,
        }
    }

    /// A change made from the command line on the server's machine.
    pub fn cli() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Self {
            user_id: None,
            token_id: None,
            label: format!("cli ({user})"),
            client_addr: None,
        }
    }

    /// A change Slate made by itself (e.g. the first admin from the environment).
    pub fn system() -> Self {
        Self {
            user_id: None,
            token_id: None,
            label: "system".into(),
            client_addr: None,
        }
    }
}

pub async fn record<'e, E>(
    db: E,
    who: &Who,
    action: &str,
    target: Option<String>,
    detail: Value,
) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "insert into audit_log (actor_user_id, actor_token_id, actor_label, action, target, detail, client_addr)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(who.user_id)
    .bind(who.token_id)
    .bind(&who.label)
    .bind(action)
    .bind(target)
    .bind(detail)
    .bind(who.client_addr.map(|a| a.to_string()))
    .execute(db)
    .await?;
    Ok(())
}
