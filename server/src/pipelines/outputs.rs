//! A stage's output file becomes an asset: it is handed to the asset processing exactly
//! as a finished upload is (content hash, kind, facts, thumbnail, proxy), owned by the
//! run's submitter, and linked to the run and stage with its provenance.

use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

use super::queue::Claim;
use crate::assets::Assets;

/// Stores `file` as a new asset named `name`. The file stays where it is (later stages
/// may read it): it is hard-linked when it can be, copied otherwise.
pub async fn ingest(
    assets: &Assets,
    claim: &Claim,
    file: &Path,
    name: &str,
    provenance: &Value,
) -> Result<Uuid, String> {
    // A regular file, never a link: what is stored is what the stage wrote there.
    let meta = tokio::fs::symlink_metadata(file)
        .await
        .map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let size = meta.len();
    let (asset, version, upload) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // The bytes first, where processing looks for a finished upload's data.
    let partial = assets.partial_path(upload);
    if tokio::fs::hard_link(file, &partial).await.is_err() {
        tokio::fs::copy(file, &partial)
            .await
            .map_err(|e| e.to_string())?;
    }
    let recorded = async {
        let db = |e: sqlx::Error| e.to_string();
        let name = crate::assets::clean_name(name);
        // Under the owner's lock, as uploads are: outputs are held to the maximum
        // upload size and count toward the submitter's quota like any upload.
        let (mut tx, held) = assets
            .lock_holdings(claim.submitted_by, &[])
            .await
            .map_err(|_| "Slate could not record it; the details are in its log.".to_string())?;
        if assets.check_total(held, size).is_err() {
            let max = assets.config.max_upload_bytes;
            if size > max {
                return Err(format!(
                    "the output ({size} bytes) is larger than the maximum upload size ({max} bytes)"
                ));
            }
            let owner: String = sqlx::query_scalar("select email from users where id = $1")
                .bind(claim.submitted_by)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let quota = assets.config.quota_bytes.unwrap_or_default();
            return Err(format!(
                "the outputs would take {owner} past their quota of {quota} bytes"
            ));
        }
        sqlx::query("insert into assets (id, owner_id, name, state) values ($1, $2, $3, 'processing')")
            .bind(asset)
            .bind(claim.submitted_by)
            .bind(&name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "insert into asset_versions (id, asset_id, number, state, original_name, size, created_by)
             values ($1, $2, 1, 'processing', $3, $4, $5)",
        )
        .bind(version)
        .bind(asset)
        .bind(&name)
        .bind(size as i64)
        .bind(claim.submitted_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "insert into uploads (id, owner_id, length, received, state, version_id, expires_at, completed_at)
             values ($1, $2, $3, $3, 'complete', $4, now() + interval '1 day', now())",
        )
        .bind(upload)
        .bind(claim.submitted_by)
        .bind(size as i64)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "insert into run_outputs (id, run_id, stage_id, asset_id, version_id, provenance)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(claim.run_id)
        .bind(claim.stage_id)
        .bind(asset)
        .bind(version)
        .bind(provenance)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
    .await;
    if let Err(e) = recorded {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    assets.wake.notify_one();
    assets.changed(asset).await;
    Ok(asset)
}
