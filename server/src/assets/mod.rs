//! Assets: resumable uploads (tus), storage, processing into previews, and the
//! queries behind the asset library.

pub mod detect;
pub mod downloads;
pub mod events;
pub mod library;
pub mod media;
pub mod processing;
pub mod storage;
pub mod tus;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use detect::Kind;
use storage::Storage;

#[derive(Debug, Clone)]
pub struct AssetsConfig {
    pub max_upload_bytes: u64,
    /// Per-user limit on stored and in-flight bytes; `None` for no limit.
    pub quota_bytes: Option<u64>,
    /// Unfinished uploads untouched this long are removed.
    pub upload_expiry: Duration,
    /// Kinds that may be uploaded; `None` allows all.
    pub allowed_kinds: Option<Vec<Kind>>,
    pub processing_workers: usize,
}

#[derive(Clone)]
pub struct Assets {
    pub pool: PgPool,
    pub storage: Storage,
    pub config: Arc<AssetsConfig>,
    /// Partial uploads, always on local disk.
    partials: PathBuf,
    /// Scratch space for processing.
    pub scratch: PathBuf,
    /// Wakes the processing workers when an upload completes.
    pub wake: Arc<Notify>,
}

impl Assets {
    pub fn new(
        pool: PgPool,
        storage: Storage,
        data_dir: &std::path::Path,
        config: AssetsConfig,
    ) -> std::io::Result<Self> {
        let partials = data_dir.join("uploads");
        let scratch = data_dir.join("scratch");
        std::fs::create_dir_all(&partials)?;
        std::fs::create_dir_all(&scratch)?;
        Ok(Self {
            pool,
            storage,
            config: Arc::new(config),
            partials,
            scratch,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn partial_path(&self, upload: Uuid) -> PathBuf {
        self.partials.join(upload.to_string())
    }

    /// Bytes a user holds: unfinished uploads (declared length) and stored versions.
    pub async fn bytes_used(&self, owner: Uuid) -> Result<u64, sqlx::Error> {
        let used: i64 = sqlx::query_scalar(
            "select (coalesce((select sum(coalesce(length, received)) from uploads
                                where owner_id = $1 and state = 'receiving' and concat <> 'final'), 0)
                   + coalesce((select sum(v.size) from asset_versions v join assets a on a.id = v.asset_id
                                where a.owner_id = $1 and a.deleted_at is null and v.state <> 'uploading'), 0))::bigint",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(used.max(0) as u64)
    }

    /// Removes the data of unfinished uploads past their expiry.
    pub async fn sweep_expired(&self) -> Result<usize, tus::TusError> {
        let expired: Vec<tus::UploadRow> = sqlx::query_as(
            "select id, owner_id, length, received, metadata_raw, concat, state, version_id, expires_at
             from uploads where state = 'receiving' and expires_at < now() and (lease_until is null or lease_until < now())
             limit 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "listing expired uploads failed");
            tus::TusError::from_db()
        })?;
        for row in &expired {
            self.discard_upload(row, "expired").await?;
            tracing::info!(upload = %row.id, received = row.received, "expired upload removed");
        }
        Ok(expired.len())
    }
}

/// A file name as people gave it, made safe to store and show: no control characters,
/// at most 255 characters. It is never used as a path.
pub fn clean_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return "untitled".to_owned();
    }
    if cleaned.chars().count() > 255 {
        let mut short: String = cleaned.chars().take(254).collect();
        short.push('…');
        return short;
    }
    cleaned.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_but_kept_recognisable() {
        assert_eq!(clean_name("shot_010.mov"), "shot_010.mov");
        assert_eq!(clean_name("../../etc/passwd"), "../../etc/passwd");
        assert_eq!(clean_name("bad\0name\n.png"), "bad\u{FFFD}name\u{FFFD}.png");
        assert_eq!(clean_name("   "), "untitled");
        let long = clean_name(&"x".repeat(4096));
        assert_eq!(long.chars().count(), 255);
        assert!(long.ends_with('…'));
    }
}
