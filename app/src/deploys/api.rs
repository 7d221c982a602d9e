//! Server functions of the deploys page: leads read history and restart, admins roll
//! back (the URL prefix carries the role; see the server's policy).

use leptos::prelude::*;

use super::{DeployFilter, DeploysView, RollbackPreview, TemplateDiff};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api/lead", endpoint = "deploys_view")]
pub async fn get_deploys(filter: DeployFilter) -> Result<DeploysView, AppError> {
    answer(
        async {
            let actor = caller::<GetDeploys>()?;
            services()?.deploys.view(&actor, filter).await
        }
        .await,
    )
}

#[server(prefix = "/api/lead", endpoint = "deploy_diff")]
pub async fn get_diff(
    kind: String,
    name: String,
    revision: i64,
    against: Option<i64>,
) -> Result<TemplateDiff, AppError> {
    answer(
        async {
            caller::<GetDiff>()?;
            services()?
                .deploys
                .diff(&kind, &name, revision, against)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/lead", endpoint = "deploy_restart")]
pub async fn restart(kind: String, name: String, reason: String) -> Result<String, AppError> {
    answer(
        async {
            let actor = caller::<Restart>()?;
            services()?
                .deploys
                .restart(&actor, &kind, &name, reason.trim())
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "deploy_rollback_preview")]
pub async fn preview_rollback(name: String, revision: i64) -> Result<RollbackPreview, AppError> {
    answer(
        async {
            caller::<PreviewRollback>()?;
            services()?.deploys.rollback_preview(&name, revision).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "deploy_rollback")]
pub async fn rollback(name: String, revision: i64, reason: String) -> Result<String, AppError> {
    answer(
        async {
            let actor = caller::<Rollback>()?;
            services()?
                .deploys
                .rollback(&actor, &name, revision, reason.trim())
                .await
        }
        .await,
    )
}
