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

use app::assets::UploadState;
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
    /// Per-user limit on unfinished uploads; `None` for no limit.
    pub max_pending: Option<u64>,
    /// Unfinished uploads untouched this long are removed.
    pub upload_expiry: Duration,
    /// Kinds that may be uploaded; `None` allows all.
    pub allowed_kinds: Option<Vec<Kind>>,
    pub processing_workers: usize,
}

/// A person's share of storage, as [`Assets::holdings`] counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    pub bytes: u64,
    pub pending: u64,
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

    /// What a person holds, apart from the uploads in `except`: the bytes of unfinished
    /// uploads (declared length; for a deferred length what arrived or was granted to a
    /// PATCH in flight), of finished partials not yet joined, and of stored versions; and
    /// how many uploads are unfinished. A final upload is not counted: its parts are.
    pub async fn holdings(
        conn: &mut sqlx::PgConnection,
        owner: Uuid,
        except: &[Uuid],
    ) -> Result<Holdings, sqlx::Error> {
        let (bytes, pending): (i64, i64) = sqlx::query_as(
            "with held as (
                 select case when state = 'receiving' then coalesce(length, greatest(received, reserved))
                             else received end as bytes
                 from uploads
                 where owner_id = $1 and concat <> 'final' and id <> all($2)
                   and (state = 'receiving' or (state = 'complete' and concat = 'partial'))
             )
             select (coalesce((select sum(bytes) from held), 0)
                   + coalesce((select sum(v.size) from asset_versions v join assets a on a.id = v.asset_id
                                where a.owner_id = $1 and a.deleted_at is null and v.state <> 'uploading'), 0))::bigint,
                    (select count(*) from held)",
        )
        .bind(owner)
        .bind(except)
        .fetch_one(conn)
        .await?;
        Ok(Holdings {
            bytes: bytes.max(0) as u64,
            pending: pending.max(0) as u64,
        })
    }

    /// Removes the data of unfinished uploads past their expiry.
    pub async fn sweep_expired(&self) -> Result<usize, tus::TusError> {
        let expired: Vec<tus::UploadRow> = sqlx::query_as(
            &format!("select {} from uploads
                      where state = 'receiving' and expires_at < now() and (lease_until is null or lease_until < now())
                      limit 100", tus::UPLOAD_COLUMNS),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(tus::db_error)?;
        for row in &expired {
            self.discard_upload(row, UploadState::Expired).await?;
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
