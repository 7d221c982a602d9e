//! Server functions of the workflow pages (listing and showing for everyone signed in;
//! adding and binding for leads and admins, under `/api/lead`). Their endpoints are not
//! under `/api/workflows`, which is the JSON API for scripts (server/src/comfyui/workflows).

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::workflow::{Binding, WorkflowDetail, WorkflowSummary};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api", endpoint = "workflow_list")]
pub async fn list_workflows() -> Result<Vec<WorkflowSummary>, AppError> {
    answer(
        async {
            let actor = caller::<ListWorkflows>()?;
            services()?.workflows.list(&actor).await
        }
        .await,
    )
}

/// One version of a workflow; the latest when `version` is left out.
#[server(prefix = "/api", endpoint = "workflow_detail")]
pub async fn show_workflow(
    name: String,
    #[server(default)] version: Option<i32>,
) -> Result<WorkflowDetail, AppError> {
    answer(
        async {
            let actor = caller::<ShowWorkflow>()?;
            services()?.workflows.show(&actor, &name, version).await
        }
        .await,
    )
}

/// Adds a workflow (or a new version of it) from its API-format JSON; its name and the
/// version made.
#[server(prefix = "/api/lead", endpoint = "add_workflow")]
pub async fn add_workflow(
    name: String,
    title: String,
    #[server(default)] description: Option<String>,
    json: String,
) -> Result<(String, i32), AppError> {
    answer(
        async {
            let actor = caller::<AddWorkflow>()?;
            let name = name.trim().to_owned();
            let description = description.filter(|d| !d.trim().is_empty());
            let version = services()?
                .workflows
                .add(&actor, &name, title.trim(), description, &json)
                .await?;
            Ok((name, version))
        }
        .await,
    )
}

/// Saves a workflow's bindings as its next version; the version made. Sent as JSON: a
/// binding's parameter type is a tagged enum that form encoding cannot carry.
#[server(prefix = "/api/lead", endpoint = "bind_workflow", input = Json)]
pub async fn bind_workflow(name: String, bindings: Vec<Binding>) -> Result<i32, AppError> {
    answer(
        async {
            let actor = caller::<BindWorkflow>()?;
            services()?.workflows.bind(&actor, &name, bindings).await
        }
        .await,
    )
}
