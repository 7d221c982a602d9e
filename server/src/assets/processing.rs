//! The processing worker: for each finished upload, hash and identify the bytes, store
//! them content-addressed, probe media, make a thumbnail and a web proxy. Versions are
//! claimed with `for update skip locked` under a two-minute lease kept alive while the
//! work runs, so several workers (and replicas) never process one twice, and work cut off
//! by a crash is picked up again soon after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;
use uuid::Uuid;

use super::detect::{self, Kind};
use super::media;
use super::storage::Storage;
use super::Assets;

/// A version stuck in processing after this many claims is failed rather than retried.
const MAX_ATTEMPTS: i32 = 3;

/// Starts the processing workers and the sweep of expired uploads under `tasks`.
pub fn start(assets: &Assets, tasks: &crate::tasks::Tasks) {
    for _ in 0..assets.config.processing_workers {
        let assets = assets.clone();
        tasks.keep("asset processing", move || worker(assets.clone()));
    }
    let assets = assets.clone();
    tasks.keep("expired uploads sweep", move || sweep(assets.clone()));
}

async fn sweep(assets: Assets) {
    loop {
        if let Err(err) = assets.sweep_expired().await {
            tracing::warn!(error = ?err, "sweeping expired uploads failed");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

async fn worker(assets: Assets) {
    loop {
        match claim(&assets).await {
            Ok(Some(job)) => process(&assets, job).await,
            Ok(None) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), assets.wake.notified()).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming processing work failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Job {
    id: Uuid,
    asset_id: Uuid,
    original_name: String,
    sha256: Option<String>,
    blob_key: Option<String>,
    attempts: i32,
}

async fn claim(assets: &Assets) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "update asset_versions set lease_until = now() + interval '2 minutes', attempts = attempts + 1, updated_at = now()
         where id = (select id from asset_versions
                     where state = 'processing' and (lease_until is null or lease_until < now())
                     order by created_at limit 1 for update skip locked)
         returning id, asset_id, original_name, sha256, blob_key, attempts",
    )
    .fetch_optional(&assets.pool)
    .await
}

#[tracing::instrument(skip_all, fields(version = %job.id, asset = %job.asset_id))]
async fn process(assets: &Assets, job: Job) {
    let scratch: Vec<PathBuf> = ["orig", "thumb.jpg", "proxy.mp4"]
        .iter()
        .map(|s| assets.scratch.join(format!("{}-{s}", job.id)))
        .collect();
    // Keep the claim alive while working: a crashed worker's claim lapses within two
    // minutes and another worker (or this one after a restart) takes the version up.
    let heartbeat = {
        let pool = assets.pool.clone();
        let id = job.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let renewed = sqlx::query("update asset_versions set lease_until = now() + interval '2 minutes' where id = $1")
                    .bind(id)
                    .execute(&pool)
                    .await;
                if let Err(err) = renewed {
                    tracing::warn!(error = %err, "renewing a processing claim failed");
                }
            }
        })
    };
    let outcome = if job.attempts > MAX_ATTEMPTS {
        Err(format!(
            "processing was interrupted {MAX_ATTEMPTS} times; upload the file again"
        ))
    } else {
        run(assets, &job, &scratch).await
    };
    heartbeat.abort();
    let result = match outcome {
        Ok(()) => finish(assets, job.id, job.asset_id).await,
        Err(reason) => {
            tracing::info!(%reason, "processing failed");
            fail(assets, job.id, job.asset_id, &reason).await
        }
    };
    assets.changed(job.asset_id).await;
    match result {
        // Done either way: the original is in storage (or was refused), so the partial
        // upload file can go.
        Ok(()) => {
            if let Some(upload) = upload_of(assets, job.id).await {
                let _ = tokio::fs::remove_file(assets.partial_path(upload)).await;
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "recording the processing result failed; it will be retried")
        }
    }
    for file in scratch {
        let _ = tokio::fs::remove_file(file).await;
    }
}

async fn upload_of(assets: &Assets, version: Uuid) -> Option<Uuid> {
    sqlx::query_scalar(
        "select id from uploads where version_id = $1 order by created_at desc limit 1",
    )
    .bind(version)
    .fetch_optional(&assets.pool)
    .await
    .ok()
    .flatten()
}

async fn run(assets: &Assets, job: &Job, scratch: &[PathBuf]) -> Result<(), String> {
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "processing step failed");
        format!("Slate could not process the file: {e}")
    };
    // The data: the finished partial file, or the stored original after a restart.
    let partial = match upload_of(assets, job.id).await {
        Some(upload) => Some(assets.partial_path(upload)).filter(|p| p.exists()),
        None => None,
    };
    let input = match (&partial, &job.blob_key) {
        (Some(path), _) => path.clone(),
        (None, Some(key)) => assets
            .storage
            .local_copy(key, &scratch[0])
            .await
            .map_err(|e| internal(&e))?,
        (None, None) => return Err("the uploaded data is missing".into()),
    };

    let (kind, size) = if job.sha256.is_none() {
        let (sha, size, head) = hash_file(&input).await.map_err(|e| internal(&e))?;
        let found = detect::detect(&head, &job.original_name);
        if let Some(allowed) = &assets.config.allowed_kinds {
            if !allowed.contains(&found.kind) {
                return Err(format!(
                    "{} files are not accepted here",
                    found.kind.as_str()
                ));
            }
        }
        let key = Storage::blob_key(&sha);
        if !assets
            .storage
            .exists(&key)
            .await
            .map_err(|e| internal(&e))?
        {
            assets
                .storage
                .put_file(&key, &input)
                .await
                .map_err(|e| internal(&e))?;
        }
        sqlx::query(
            "update asset_versions set sha256 = $2, blob_key = $3, size = $4, mime = $5, kind = $6, updated_at = now()
             where id = $1",
        )
        .bind(job.id)
        .bind(&sha)
        .bind(&key)
        .bind(size as i64)
        .bind(found.mime)
        .bind(found.kind.as_str())
        .execute(&assets.pool)
        .await
        .map_err(|e| internal(&e))?;
        (found.kind, size)
    } else {
        let kind: Option<String> =
            sqlx::query_scalar("select kind from asset_versions where id = $1")
                .bind(job.id)
                .fetch_one(&assets.pool)
                .await
                .map_err(|e| internal(&e))?;
        let kind = match kind.as_deref() {
            Some("image") => Kind::Image,
            Some("video") => Kind::Video,
            Some("audio") => Kind::Audio,
            Some("scene") => Kind::Scene,
            Some("model") => Kind::Model,
            _ => Kind::Other,
        };
        (
            kind,
            tokio::fs::metadata(&input)
                .await
                .map(|m| m.len())
                .unwrap_or(0),
        )
    };
    tracing::debug!(kind = kind.as_str(), size, "identified");

    if !matches!(kind, Kind::Image | Kind::Video | Kind::Audio) {
        return Ok(());
    }
    let (info, _) = media::probe(&input).await?;
    sqlx::query("update asset_versions set probe = $2 where id = $1")
        .bind(job.id)
        .bind(serde_json::to_value(&info).unwrap_or_default())
        .execute(&assets.pool)
        .await
        .map_err(|e| internal(&e))?;
    if matches!(kind, Kind::Image | Kind::Video) {
        let duration = if kind == Kind::Video {
            info.duration_seconds
        } else {
            None
        };
        media::thumbnail(&input, duration, &scratch[1])
            .await
            .map_err(|e| format!("making the thumbnail failed: {e}"))?;
        let key = Storage::derived_key(job.id, "thumb.jpg");
        assets
            .storage
            .put_file(&key, &scratch[1])
            .await
            .map_err(|e| internal(&e))?;
        sqlx::query("update asset_versions set thumbnail_key = $2 where id = $1")
            .bind(job.id)
            .bind(&key)
            .execute(&assets.pool)
            .await
            .map_err(|e| internal(&e))?;
    }
    if kind == Kind::Video {
        media::proxy(&input, info.audio_codec.is_some(), &scratch[2])
            .await
            .map_err(|e| format!("making the web proxy failed: {e}"))?;
        let key = Storage::derived_key(job.id, "proxy.mp4");
        assets
            .storage
            .put_file(&key, &scratch[2])
            .await
            .map_err(|e| internal(&e))?;
        sqlx::query("update asset_versions set proxy_key = $2 where id = $1")
            .bind(job.id)
            .bind(&key)
            .execute(&assets.pool)
            .await
            .map_err(|e| internal(&e))?;
    }
    Ok(())
}

/// sha256, size and the first bytes of a file, read in bounded chunks.
async fn hash_file(path: &Path) -> std::io::Result<(String, u64, Vec<u8>)> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(detect::SNIFF_LEN);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if head.len() < detect::SNIFF_LEN {
            let take = (detect::SNIFF_LEN - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size, head))
}

async fn finish(assets: &Assets, version: Uuid, asset: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = assets.pool.begin().await?;
    sqlx::query("update asset_versions set state = 'ready', failure = null, lease_until = null, updated_at = now() where id = $1")
        .bind(version)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update assets set current_version_id = $2, state = 'ready', failure = null,
                kind = coalesce((select kind from asset_versions where id = $2), kind), updated_at = now()
         where id = $1",
    )
    .bind(asset)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn fail(
    assets: &Assets,
    version: Uuid,
    asset: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = assets.pool.begin().await?;
    sqlx::query("update asset_versions set state = 'failed', failure = $2, lease_until = null, updated_at = now() where id = $1")
        .bind(version)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    // An asset with an earlier good version keeps showing it; a new one shows the reason.
    sqlx::query(
        "update assets set state = 'failed', failure = $2,
                kind = coalesce((select kind from asset_versions where id = $3), kind), updated_at = now()
         where id = $1 and current_version_id is null",
    )
    .bind(asset)
    .bind(reason)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
