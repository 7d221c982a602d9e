//! Workflows in the database: every version kept, the bundled ones written at start,
//! a new graph or new bindings checked before they become a version (decision 0014).
//! Saving bindings also saves the template that runs the workflow on its own
//! (`workflow-NAME`), so a workflow runs from the ordinary run form and runs API.

pub mod http;
pub mod png;
pub mod store;

use app::accounts::{Principal, Role};
use app::backend::Actor;
use app::comfyui::backend::WorkflowsBackend;
use app::comfyui::inventory::Inventory;
use app::comfyui::workflow::{self as wf, Binding, Graph, WorkflowDetail, WorkflowSummary};
use app::error::AppError;
use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgPool;

use self::store::{New, Version};
use crate::audit::Who;

/// Largest image accepted for the workflow it holds.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;

/// The workflows service of the pages and the API.
#[derive(Clone)]
pub struct Workflows {
    pub pool: PgPool,
}

impl Workflows {
    pub fn new(pool: PgPool) -> Workflows {
        Workflows { pool }
    }
}

fn may_edit(p: &Principal) -> Result<(), AppError> {
    if p.has(Role::Lead) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only leads and admins may add workflows or change their bindings.".into(),
        ))
    }
}

/// The graph in what someone brought: a workflow's JSON, or an image ComfyUI saved.
pub fn graph_of(bytes: &[u8]) -> Result<(Graph, &'static str), AppError> {
    if png::is_png(bytes) {
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(AppError::TooLarge(format!(
                "The image is {} bytes; at most {} MiB is read for its workflow.",
                bytes.len(),
                MAX_IMAGE_BYTES / (1024 * 1024)
            )));
        }
        let found = png::embedded(bytes).map_err(AppError::invalid)?;
        return match (found.prompt, found.workflow) {
            (Some(prompt), _) => wf::parse_graph(&prompt)
                .map(|g| (g, "image"))
                .map_err(AppError::invalid),
            (None, Some(_)) => Err(AppError::invalid(format!(
                "This image holds only the editor's workflow, not the API format. {}",
                wf::UI_FORMAT
            ))),
            (None, None) => Err(AppError::invalid(
                "This image holds no workflow: only images ComfyUI saved (SaveImage) carry one.",
            )),
        };
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AppError::invalid("The file is neither JSON text nor a PNG image."))?;
    wf::parse_graph(text)
        .map(|g| (g, "json"))
        .map_err(AppError::invalid)
}

/// The inventory of the endpoint prompts go to now, when one is known.
pub async fn current_inventory(pool: &PgPool) -> Option<Inventory> {
    crate::comfyui::inventory::current(pool)
        .await
        .map(|(_, inventory, _)| inventory)
}

/// What `inventory` lacks for `graph`, in words.
pub fn gaps(graph: &Graph, inventory: &Inventory) -> Vec<String> {
    app::comfyui::inventory::preflight(graph, inventory)
        .iter()
        .map(|g| g.to_string())
        .collect()
}

/// The bindings of the version before that still fit a new graph (the same node and
/// input, still a literal), so a re-exported workflow keeps them.
fn carried(previous: Option<&Version>, graph: &Graph) -> Vec<Binding> {
    previous
        .map(|p| {
            p.bindings
                .iter()
                .filter(|b| wf::check_bindings(graph, std::slice::from_ref(b), None).is_empty())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The template that runs a workflow version on its own: one stage, each binding a
/// parameter.
pub fn generated_template(v: &Version) -> String {
    let inputs: serde_json::Map<String, Value> = v
        .bindings
        .iter()
        .map(|b| {
            (
                b.param.name.clone(),
                json!(format!("${{params.{}}}", b.param.name)),
            )
        })
        .collect();
    let parameters: Vec<&app::pipelines::template::Parameter> =
        v.bindings.iter().map(|b| &b.param).collect();
    let template = json!({
        "name": wf::template_name(&v.name),
        "title": v.title,
        "description": format!(
            "Runs the ComfyUI workflow {}@{} on the GPU endpoint{}",
            v.name,
            v.version,
            v.description.as_deref().map(|d| format!(": {d}")).unwrap_or_else(|| ".".into())
        ),
        "parameters": parameters,
        "stages": [{
            "name": "render",
            "title": v.title,
            "executor": "comfyui",
            "workflow": format!("{}@{}", v.name, v.version),
            "attempts": 2,
            "timeout_seconds": 3600,
            "inputs": inputs,
        }],
    });
    serde_yaml::to_string(&template).unwrap_or_default()
}

impl Workflows {
    /// Adds a workflow or a new version of one from what someone brought (JSON or an
    /// image); the version before's bindings are kept where they still fit.
    pub async fn import(
        &self,
        who: &Who,
        principal: &Principal,
        name: &str,
        title: &str,
        description: Option<&str>,
        bytes: &[u8],
    ) -> Result<i32, AppError> {
        may_edit(principal)?;
        if let Some(problem) = wf::name_problem(name) {
            return Err(AppError::invalid(problem));
        }
        let title = title.trim();
        let title = if title.is_empty() { name } else { title };
        if title.chars().count() > 200 || description.is_some_and(|d| d.chars().count() > 4000) {
            return Err(AppError::invalid(
                "A title is at most 200 characters and a description at most 4,000.",
            ));
        }
        let (graph, origin) = graph_of(bytes)?;
        let previous = store::find(&self.pool, name, None)
            .await
            .map_err(crate::db::app_error)?;
        if previous.as_ref().is_some_and(|p| p.origin == "bundled") && !principal.has(Role::Admin) {
            return Err(AppError::Forbidden(
                "Only admins may change a bundled workflow.".into(),
            ));
        }
        let bindings = carried(previous.as_ref(), &graph);
        let (version, _) = store::save(
            &self.pool,
            who,
            New {
                name,
                title,
                description: description.filter(|d| !d.trim().is_empty()),
                graph: &graph,
                bindings: &bindings,
                origin,
            },
        )
        .await
        .map_err(crate::db::app_error)?;
        if !bindings.is_empty() {
            self.save_template(who, name, version).await?;
        }
        Ok(version)
    }

    /// Saves new bindings on the latest graph, checked against the graph and the
    /// current endpoint's inventory.
    pub async fn save_bindings(
        &self,
        who: &Who,
        principal: &Principal,
        name: &str,
        bindings: Vec<Binding>,
    ) -> Result<i32, AppError> {
        may_edit(principal)?;
        let Some(latest) = store::find(&self.pool, name, None)
            .await
            .map_err(crate::db::app_error)?
        else {
            return Err(AppError::NotFound(format!(
                "There is no workflow \"{name}\"."
            )));
        };
        if latest.origin == "bundled" && !principal.has(Role::Admin) {
            return Err(AppError::Forbidden(
                "Only admins may change a bundled workflow.".into(),
            ));
        }
        let inventory = current_inventory(&self.pool).await;
        let mut problems = wf::check_bindings(&latest.graph, &bindings, inventory.as_ref());
        for b in &bindings {
            if let Some(default) = b.param.default.as_ref().filter(|d| !d.is_null()) {
                if let Err(e) = b.param.check(default) {
                    problems.push(format!("binding \"{}\": its default: {e}", b.param.name));
                }
            }
        }
        if !problems.is_empty() {
            return Err(AppError::invalid(problems.join("\n")));
        }
        let (version, _) = store::save(
            &self.pool,
            who,
            New {
                name,
                title: &latest.title,
                description: latest.description.as_deref(),
                graph: &latest.graph,
                bindings: &bindings,
                origin: &latest.origin,
            },
        )
        .await
        .map_err(crate::db::app_error)?;
        self.save_template(who, name, version).await?;
        Ok(version)
    }

    async fn save_template(&self, who: &Who, name: &str, version: i32) -> Result<(), AppError> {
        let Some(v) = store::find(&self.pool, name, Some(version))
            .await
            .map_err(crate::db::app_error)?
        else {
            return Ok(());
        };
        let source = generated_template(&v);
        crate::pipelines::store::save(&self.pool, who, &source, false)
            .await
            .map_err(|e| match e {
                crate::pipelines::store::SaveError::Invalid(problems) => {
                    AppError::invalid(format!(
                        "The bindings make a template Slate cannot run: {}",
                        problems
                            .iter()
                            .map(|p| p.message.clone())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                }
                crate::pipelines::store::SaveError::Database(e) => crate::db::app_error(e),
            })?;
        Ok(())
    }

    pub async fn summaries(&self) -> Result<Vec<WorkflowSummary>, AppError> {
        let all = store::latest_all(&self.pool)
            .await
            .map_err(crate::db::app_error)?;
        Ok(all.iter().map(summary).collect())
    }

    pub async fn detail(
        &self,
        principal: &Principal,
        name: &str,
        version: Option<i32>,
    ) -> Result<WorkflowDetail, AppError> {
        let Some(v) = store::find(&self.pool, name, version)
            .await
            .map_err(crate::db::app_error)?
        else {
            return Err(AppError::NotFound(match version {
                Some(n) => format!("There is no version {n} of workflow \"{name}\"."),
                None => format!("There is no workflow \"{name}\"."),
            }));
        };
        let previous = if v.version > 1 {
            store::find(&self.pool, name, Some(v.version - 1))
                .await
                .map_err(crate::db::app_error)?
        } else {
            None
        };
        let versions = store::versions(&self.pool, name)
            .await
            .map_err(crate::db::app_error)?;
        let inventory = current_inventory(&self.pool).await;
        let template = if v.bindings.is_empty() {
            None
        } else {
            let t = wf::template_name(name);
            crate::pipelines::store::find(&self.pool, &t, None)
                .await
                .map_err(crate::db::app_error)?
                .map(|_| t)
        };
        Ok(WorkflowDetail {
            summary: summary(&v),
            origin: v.origin.clone(),
            versions,
            nodes: wf::node_rows(&v.graph, inventory.as_ref()),
            proposed: wf::propose(&v.graph, inventory.as_ref()),
            changes: previous
                .map(|p| wf::diff(&p.graph, &p.bindings, &v.graph, &v.bindings))
                .unwrap_or_default(),
            gaps: inventory.as_ref().map(|i| gaps(&v.graph, i)),
            graph_json: serde_json::to_string_pretty(&v.graph).unwrap_or_default(),
            can_edit: principal.has(Role::Lead)
                && (v.origin != "bundled" || principal.has(Role::Admin)),
            bindings: v.bindings,
            template,
        })
    }
}

fn summary(v: &Version) -> WorkflowSummary {
    WorkflowSummary {
        id: v.id,
        name: v.name.clone(),
        version: v.version,
        title: v.title.clone(),
        description: v.description.clone(),
        nodes: v.graph.len(),
        bindings: v.bindings.len(),
        bundled: v.origin == "bundled",
        created_by: v.created_by.clone(),
        created_at: v.created_at,
    }
}

fn who(actor: &Actor) -> Who {
    Who::principal(&actor.principal, actor.client_addr)
}

#[async_trait]
impl WorkflowsBackend for Workflows {
    async fn list(&self, _actor: &Actor) -> Result<Vec<WorkflowSummary>, AppError> {
        self.summaries().await
    }

    async fn show(
        &self,
        actor: &Actor,
        name: &str,
        version: Option<i32>,
    ) -> Result<WorkflowDetail, AppError> {
        self.detail(&actor.principal, name, version).await
    }

    async fn add(
        &self,
        actor: &Actor,
        name: &str,
        title: &str,
        description: Option<String>,
        json: &str,
    ) -> Result<i32, AppError> {
        self.import(
            &who(actor),
            &actor.principal,
            name,
            title,
            description.as_deref(),
            json.as_bytes(),
        )
        .await
    }

    async fn bind(
        &self,
        actor: &Actor,
        name: &str,
        bindings: Vec<Binding>,
    ) -> Result<i32, AppError> {
        self.save_bindings(&who(actor), &actor.principal, name, bindings)
            .await
    }
}

/// The problems of a template's ComfyUI stages that need the stored workflows: the
/// workflow each names exists, and each input is one of its bindings, of a shape that
/// fits (an asset binding takes an asset parameter of its kind or a stage's outputs).
pub async fn check_stages(
    pool: &PgPool,
    template: &app::pipelines::template::Template,
) -> Result<Vec<String>, sqlx::Error> {
    use app::pipelines::template::{references, ParamType, Reference, StageKind};
    let mut problems = Vec::new();
    for stage in &template.stages {
        let StageKind::Comfyui(comfy) = &stage.kind else {
            continue;
        };
        let Some((name, version)) = wf::parse_reference(&comfy.workflow) else {
            continue;
        };
        let Some(v) = store::find(pool, name, version).await? else {
            problems.push(format!(
                "stage \"{}\": there is no workflow \"{}\" (add it under Workflows first)",
                stage.name, comfy.workflow
            ));
            continue;
        };
        for (input, value) in &stage.inputs {
            let Some(binding) = v.bindings.iter().find(|b| b.param.name == *input) else {
                problems.push(format!(
                    "stage \"{}\": workflow {}@{} has no binding \"{input}\" (it binds {})",
                    stage.name,
                    v.name,
                    v.version,
                    if v.bindings.is_empty() {
                        "nothing yet".to_owned()
                    } else {
                        v.bindings
                            .iter()
                            .map(|b| b.param.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
                continue;
            };
            let text = value.as_str().unwrap_or_default();
            let refs = references(text).unwrap_or_default();
            if let ParamType::Asset { kind } = &binding.param.ty {
                let fits = match refs.as_slice() {
                    [Reference::Param(p)] => matches!(
                        template.parameter(p).map(|p| &p.ty),
                        Some(ParamType::Asset { kind: k }) if k == kind
                    ),
                    [Reference::Outputs(_)] | [Reference::NodeOutputs(..)] => true,
                    _ => false,
                };
                if !fits {
                    problems.push(format!(
                        "stage \"{}\": input \"{input}\" loads {kind} files in node {} ({}): give it ${{params.NAME}} of an asset parameter of kind {kind}, or ${{stages.NAME.outputs}}",
                        stage.name,
                        binding.node,
                        wf::class_of(&v.graph, &binding.node)
                    ));
                }
            } else if let [Reference::Param(p)] = refs.as_slice() {
                // A parameter's type must fit the binding's (an integer input takes an
                // integer or a seed, never a video).
                use app::pipelines::template::Shape;
                let want = binding.param.ty.shape();
                if let Some(have) = template.parameter(p).map(|p| p.ty.shape()) {
                    let fits = want == have || (want == Shape::Number && have == Shape::Integer);
                    if !fits {
                        problems.push(format!(
                            "stage \"{}\": input \"{input}\" sets node {} ({}) {}, which takes {}, but ${{params.{p}}} is {}",
                            stage.name,
                            binding.node,
                            wf::class_of(&v.graph, &binding.node),
                            binding.input,
                            want.describe(),
                            have.describe()
                        ));
                    }
                }
            } else if let Err(e) = match (value, refs.as_slice()) {
                (Value::String(_), [_, ..]) => Ok(()),
                (literal, _) => binding.param.check(literal),
            } {
                problems.push(format!("stage \"{}\": input \"{input}\": {e}", stage.name));
            }
        }
    }
    Ok(problems)
}

/// For each ComfyUI stage of a run being submitted: the workflow version it will run
/// (fixed now) and, when an endpoint inventory is known, what the endpoint lacks for
/// the graph as bound with these values. Files to load are not checked (they are
/// uploaded just before the prompt); a model left empty takes the folder's first file,
/// as it will when it runs.
pub async fn for_submission(
    pool: &PgPool,
    template: &app::pipelines::template::Template,
    params: &serde_json::Map<String, Value>,
    again: Option<uuid::Uuid>,
) -> Result<(Vec<(String, uuid::Uuid)>, Vec<String>), AppError> {
    use app::pipelines::template::{ParamType, StageKind};
    let mut fixed = Vec::new();
    let mut gaps_found = Vec::new();
    let inventory = current_inventory(pool).await;
    // Run again exactly: the workflow versions that run had, and the model files its
    // outputs were made with, which the endpoint must still have.
    let mut pinned: Vec<(String, uuid::Uuid)> = Vec::new();
    let mut used: Vec<(String, Value)> = Vec::new();
    if let Some(run) = again {
        pinned = sqlx::query_as(
            "select name, workflow_id from run_stages where run_id = $1 and workflow_id is not null",
        )
        .bind(run)
        .fetch_all(pool)
        .await
        .map_err(crate::db::app_error)?;
        used = sqlx::query_as(
            "select distinct provenance->>'stage', provenance->'models' from run_outputs
             where run_id = $1 and provenance ? 'models'",
        )
        .bind(run)
        .fetch_all(pool)
        .await
        .map_err(crate::db::app_error)?;
    }
    if let Some(inventory) = &inventory {
        let mut said = std::collections::BTreeSet::new();
        for (stage, models) in &used {
            for m in models.as_array().into_iter().flatten() {
                let (Some(folder), Some(file)) = (m["folder"].as_str(), m["file"].as_str()) else {
                    continue;
                };
                let there = inventory
                    .models
                    .get(folder)
                    .is_some_and(|f| f.iter().any(|x| x == file));
                if !there && said.insert((folder.to_owned(), file.to_owned())) {
                    gaps_found.push(format!(
                        "stage \"{stage}\": the endpoint no longer has model file \"{file}\" in {folder}, which this run used"
                    ));
                }
            }
        }
    }
    for stage in &template.stages {
        let StageKind::Comfyui(comfy) = &stage.kind else {
            continue;
        };
        let pin = pinned
            .iter()
            .find(|(s, _)| *s == stage.name)
            .map(|(_, id)| *id);
        let version = match pin {
            Some(id) => store::by_id(pool, id)
                .await
                .map_err(crate::db::app_error)?
                .ok_or_else(AppError::internal)?,
            None => store::resolve(pool, &comfy.workflow).await?,
        };
        fixed.push((stage.name.clone(), version.id));
        let Some(inventory) = &inventory else {
            continue;
        };
        let params = Value::Object(params.clone());
        let mut values = crate::pipelines::executors::comfyui::bind_values(stage, &params);
        for b in &version.bindings {
            match &b.param.ty {
                ParamType::Asset { .. } => {
                    values.remove(&b.param.name);
                }
                ParamType::Model { folder }
                    if values
                        .get(&b.param.name)
                        .is_none_or(|v| v.is_null() || v == "") =>
                {
                    if let Some(first) = inventory.models.get(folder).and_then(|f| f.first()) {
                        values.insert(b.param.name.clone(), json!(first));
                    }
                }
                _ => {}
            }
        }
        let graph = wf::bind(&version.graph, &version.bindings, &values);
        for gap in gaps(&graph, inventory) {
            gaps_found.push(format!(
                "stage \"{}\" ({}@{}): {gap}",
                stage.name, version.name, version.version
            ));
        }
    }
    Ok((fixed, gaps_found))
}
