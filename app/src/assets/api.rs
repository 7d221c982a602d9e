//! Server functions of the asset library (anyone signed in; edits are checked against
//! ownership by the server).

use leptos::prelude::*;
use uuid::Uuid;

use super::{AssetDetail, LibraryPage};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api", endpoint = "list_assets")]
pub async fn list_assets(
    search: Option<String>,
    kind: Option<String>,
    owner: Option<String>,
    tag: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    after: Option<String>,
) -> Result<LibraryPage, AppError> {
    answer(
        async {
            let actor = caller::<ListAssets>()?;
            let nonempty =
                |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
            let query = super::LibraryQuery {
                search: nonempty(search),
                kind: nonempty(kind),
                owner: nonempty(owner),
                tag: nonempty(tag).map(|t| t.to_lowercase()),
                state: nonempty(state),
                sort: super::Sort::parse(sort.as_deref().unwrap_or_default()),
                after: nonempty(after),
            };
            services()?.assets.library(&actor.principal, query).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "get_asset")]
pub async fn get_asset(id: Uuid) -> Result<AssetDetail, AppError> {
    answer(
        async {
            let actor = caller::<GetAsset>()?;
            services()?.assets.asset(&actor.principal, id).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "set_asset_tags")]
pub async fn set_asset_tags(id: Uuid, tags: String) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetAssetTags>()?;
            let tags = super::parse_tags(&tags)?;
            services()?.assets.set_tags(&actor, id, tags).await
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "delete_asset")]
pub async fn delete_asset(id: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<DeleteAsset>()?;
            services()?.assets.delete(&actor, id).await
        }
        .await,
    )
}
