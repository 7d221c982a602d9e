//! Server functions of the Colab page (admins; refreshing the inventory also leads).

use leptos::prelude::*;
use uuid::Uuid;

use super::{ColabOverview, RotatedSecret};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api/admin", endpoint = "colab_overview")]
pub async fn get_colab_overview() -> Result<ColabOverview, AppError> {
    answer(
        async {
            let actor = caller::<GetColabOverview>()?;
            services()?.colab.overview(&actor).await
        }
        .await,
    )
}

/// The whole URL of one endpoint (audited: the URL is a credential).
#[server(prefix = "/api/admin", endpoint = "colab_reveal")]
pub async fn reveal_endpoint(id: Uuid) -> Result<String, AppError> {
    answer(
        async {
            let actor = caller::<RevealEndpoint>()?;
            services()?.colab.reveal(&actor, id).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "colab_set_endpoint")]
pub async fn set_endpoint(url: String) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetEndpoint>()?;
            services()?.colab.set_endpoint(&actor, url.trim()).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "colab_set_fallback")]
pub async fn set_fallback(url: String) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetFallback>()?;
            let url = Some(url.trim().to_owned()).filter(|u| !u.is_empty());
            services()?.colab.set_fallback(&actor, url).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "colab_reverify")]
pub async fn reverify() -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<Reverify>()?;
            services()?.colab.reverify(&actor).await
        }
        .await,
    )
}

/// Fetches the endpoint's nodes and models again (`/api/lead`: leads may too).
#[server(prefix = "/api/lead", endpoint = "colab_refresh_inventory")]
pub async fn refresh_inventory(id: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<RefreshInventory>()?;
            services()?.colab.refresh_inventory(&actor, id).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "colab_rotate_secret")]
pub async fn rotate_secret() -> Result<RotatedSecret, AppError> {
    answer(
        async {
            let actor = caller::<RotateSecret>()?;
            services()?.colab.rotate_secret(&actor).await
        }
        .await,
    )
}
