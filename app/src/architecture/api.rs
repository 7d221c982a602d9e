//! Server functions of the architecture page (leads and admins).

use leptos::prelude::*;

use super::{NodeDetail, Topology};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

/// The current topology (live, last known, or desired from the manifests).
#[server(prefix = "/api/lead", endpoint = "topology")]
pub async fn get_topology() -> Result<Topology, AppError> {
    answer(
        async {
            caller::<GetTopology>()?;
            Ok(services()?.cluster.topology())
        }
        .await,
    )
}

/// Pods, conditions, recent events and containers of one box.
#[server(prefix = "/api/lead", endpoint = "topology_node")]
pub async fn get_node_detail(id: String) -> Result<NodeDetail, AppError> {
    answer(
        async {
            caller::<GetNodeDetail>()?;
            if id.len() > 400 || !id.contains('/') {
                return Err(AppError::Invalid(
                    "A node id looks like Kind/name, e.g. Deployment/slate.".into(),
                ));
            }
            services()?.cluster.node_detail(&id)
        }
        .await,
    )
}
