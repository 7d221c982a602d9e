//! Server functions of the runs pages (everyone signed in; changing a run is for its
//! submitter, leads and admins, checked on the server).

use std::collections::BTreeMap;

use leptos::prelude::*;
use uuid::Uuid;

use super::{RunDetail, RunFilter, RunsView, TemplateForm, TemplateSource, TemplateVersions};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api", endpoint = "runs_view")]
pub async fn get_runs(filter: RunFilter) -> Result<RunsView, AppError> {
    answer(
        async {
            let actor = caller::<GetRuns>()?;
            services()?.pipelines.runs(&actor, filter).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "run_detail")]
pub async fn get_run(id: Uuid) -> Result<RunDetail, AppError> {
    answer(
        async {
            let actor = caller::<GetRun>()?;
            services()?.pipelines.run(&actor, id).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "template_form")]
pub async fn get_template_form(
    name: String,
    #[server(default)] from: Option<Uuid>,
) -> Result<TemplateForm, AppError> {
    answer(
        async {
            let actor = caller::<GetTemplateForm>()?;
            services()?
                .pipelines
                .template_form(&actor, &name, from)
                .await
        }
        .await,
    )
}

/// Submits from the form: every value as text, converted by its parameter's type.
#[server(prefix = "/api", endpoint = "submit_run")]
pub async fn submit_run(
    template: String,
    #[server(default)] params: BTreeMap<String, String>,
    #[server(default)] lists: BTreeMap<String, Vec<String>>,
    #[server(default)] priority: i32,
) -> Result<Uuid, AppError> {
    answer(
        async {
            let actor = caller::<SubmitRun>()?;
            services()?
                .pipelines
                .submit_form(&actor, &template, params, lists, priority)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "cancel_run")]
pub async fn cancel_run(id: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<CancelRun>()?;
            services()?.pipelines.cancel(&actor, id).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "retry_stage")]
pub async fn retry_stage(id: Uuid, stage: String) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<RetryStage>()?;
            services()?.pipelines.retry(&actor, id, &stage).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "resubmit_run")]
pub async fn resubmit_run(id: Uuid) -> Result<Uuid, AppError> {
    answer(
        async {
            let actor = caller::<ResubmitRun>()?;
            services()?.pipelines.resubmit(&actor, id).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "pipeline_templates")]
pub async fn get_template_versions() -> Result<Vec<TemplateVersions>, AppError> {
    answer(
        async {
            caller::<GetTemplateVersions>()?;
            services()?.pipelines.template_versions().await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "pipeline_source")]
pub async fn get_template_source(
    name: String,
    version: Option<i32>,
    against: Option<i32>,
) -> Result<TemplateSource, AppError> {
    answer(
        async {
            caller::<GetTemplateSource>()?;
            services()?
                .pipelines
                .template_source(&name, version, against)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "save_pipeline")]
pub async fn save_template(source: String) -> Result<(String, i32), AppError> {
    answer(
        async {
            let actor = caller::<SaveTemplate>()?;
            services()?.pipelines.save_template(&actor, &source).await
        }
        .await,
    )
}
