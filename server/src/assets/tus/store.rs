//! The `uploads` table and the rows it touches: finding an upload, its lease, its
//! offset, the owner's quota and pending cap, creation, completion and discarding.

use app::assets::UploadState;
use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::error::{db, io, TusError, TusResult};
use super::{Concat, UploadRow, LEASE, UPLOAD_COLUMNS};
use crate::assets::{clean_name, Assets, Holdings};
use crate::audit::{self, Who};

/// Finds an upload of this owner: someone else's is "not found", never "forbidden".
pub(super) async fn load(assets: &Assets, id: &str, owner: Uuid) -> TusResult<UploadRow> {
    let not_found = || TusError::new(404, "No such upload.");
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let row: Option<UploadRow> = sqlx::query_as(&format!(
        "select {UPLOAD_COLUMNS} from uploads where id = $1 and owner_id = $2"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(&assets.pool)
    .await
    .map_err(db)?;
    let row = row.ok_or_else(not_found)?;
    match row.state {
        UploadState::Terminated => Err(not_found()),
        UploadState::Expired => Err(TusError::new(410, "This upload expired; start it again.")),
        UploadState::Receiving if row.expires_at < Utc::now() => {
            Err(TusError::new(410, "This upload expired; start it again."))
        }
        _ => Ok(row),
    }
}

/// The durable offset: what the partial file holds (never beyond the length).
pub(super) async fn stored_offset(assets: &Assets, row: &UploadRow) -> TusResult<u64> {
    if row.state != UploadState::Receiving {
        return Ok(row.received as u64);
    }
    let on_disk = match tokio::fs::metadata(assets.partial_path(row.id)).await {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(io(err)),
    };
    Ok(match row.length {
        Some(len) => on_disk.min(len as u64),
        None => on_disk,
    })
}

impl Assets {
    /// Takes the upload for one PATCH, with its length as it stands now; `None` when
    /// another request holds it.
    pub(super) async fn take_lease(&self, id: Uuid) -> TusResult<Option<(Uuid, Option<i64>)>> {
        let token = Uuid::now_v7();
        let taken: Option<Option<i64>> = sqlx::query_scalar(
            "update uploads set lease_token = $3, lease_until = now() + make_interval(secs => $2), reserved = 0
             where id = $1 and (lease_until is null or lease_until < now()) returning length",
        )
        .bind(id)
        .bind(LEASE.as_secs_f64())
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(taken.map(|length| (token, length)))
    }

    /// Extends the lease; fails when it was lost (the writer must stop).
    pub(super) async fn renew_lease(&self, id: Uuid, token: Uuid) -> TusResult<()> {
        let renewed = sqlx::query(
            "update uploads set lease_until = now() + make_interval(secs => $2) where id = $1 and lease_token = $3",
        )
        .bind(id)
        .bind(LEASE.as_secs_f64())
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if renewed.rows_affected() == 1 {
            Ok(())
        } else {
            Err(TusError::lease_lost())
        }
    }

    pub(super) async fn release_lease(&self, id: Uuid, token: Uuid) -> TusResult<()> {
        sqlx::query("update uploads set lease_until = null, lease_token = null, reserved = 0 where id = $1 and lease_token = $2")
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Records the offset reached, extends the expiry, and releases the PATCH's lease.
    pub(super) async fn record_offset(
        &self,
        row: &mut UploadRow,
        offset: u64,
        lease: Uuid,
    ) -> TusResult<()> {
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.upload_expiry)
                .unwrap_or(chrono::Duration::hours(24));
        sqlx::query(
            "update uploads set received = $2, expires_at = $3, updated_at = now(), lease_until = null, lease_token = null, reserved = 0
             where id = $1 and lease_token = $4",
        )
        .bind(row.id)
        .bind(offset as i64)
        .bind(expires)
        .bind(lease)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        row.received = offset as i64;
        row.expires_at = expires;
        Ok(())
    }

    /// Refuses a total size over the maximum, or one that would take the owner past
    /// their quota beside what they already hold.
    pub(crate) fn check_total(&self, held: Holdings, size: u64) -> TusResult<()> {
        let max = self.config.max_upload_bytes;
        if size > max {
            return Err(TusError::new(
                413,
                format!(
                    "The file ({size} bytes) is larger than the maximum upload size ({max} bytes)."
                ),
            ));
        }
        if let Some(quota) = self.config.quota_bytes {
            if held.bytes.saturating_add(size) > quota {
                return Err(TusError::new(
                    413,
                    format!(
                        "This upload would exceed your storage quota: {} of {quota} bytes are in use.",
                        held.bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Starts a transaction that holds the owner's upload accounting: creations, declared
    /// lengths, grants and joins of one person run one at a time, so requests sent at
    /// once cannot together pass the quota or the cap. Returns what the owner holds
    /// apart from `except`.
    pub(crate) async fn lock_holdings(
        &self,
        owner: Uuid,
        except: &[Uuid],
    ) -> TusResult<(sqlx::Transaction<'static, sqlx::Postgres>, Holdings)> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // `no key update` leaves rows that reference the user (audit, uploads) insertable.
        sqlx::query("select 1 from users where id = $1 for no key update")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let held = Assets::holdings(&mut tx, owner, except).await.map_err(db)?;
        Ok((tx, held))
    }

    /// Lets a PATCH of a deferred-length upload, which holds `lease`, write up to `need`
    /// bytes in all, counted toward the quota before they are written; returns the end
    /// it may write to (up to `step` beyond `need` when the quota allows, to save queries).
    pub(super) async fn grant(
        &self,
        row: &UploadRow,
        lease: Uuid,
        start: u64,
        need: u64,
        step: u64,
    ) -> TusResult<u64> {
        let kept = |err: TusError| {
            TusError(
                err.0,
                format!(
                    "{} This request's bytes were not kept; the {start} bytes stored before it are.",
                    err.1
                ),
            )
        };
        let max = self.config.max_upload_bytes;
        if need > max {
            return Err(kept(TusError::new(
                413,
                format!("The upload would reach {need} bytes, more than the maximum upload size ({max} bytes)."),
            )));
        }
        let Some(quota) = self.config.quota_bytes else {
            return Ok(max);
        };
        let (mut tx, held) = self.lock_holdings(row.owner_id, &[row.id]).await?;
        self.check_total(held, need).map_err(kept)?;
        let granted = need.saturating_add(step).min(max).min(quota - held.bytes);
        let updated =
            sqlx::query("update uploads set reserved = $3 where id = $1 and lease_token = $2")
                .bind(row.id)
                .bind(lease)
                .bind(granted as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        if updated.rows_affected() != 1 {
            return Err(TusError::lease_lost());
        }
        tx.commit().await.map_err(db)?;
        Ok(granted)
    }

    /// Sets a deferred length (`Upload-Length` on a PATCH) once it fits the maximum and
    /// the quota; anything refused changes nothing.
    pub(super) async fn declare_length(&self, row: &mut UploadRow, len: u64) -> TusResult<()> {
        self.check_total(Holdings::default(), len)?;
        let (mut tx, held) = self.lock_holdings(row.owner_id, &[row.id]).await?;
        let (length, writing): (Option<i64>, bool) = sqlx::query_as(
            "select length, coalesce(lease_until > now(), false) from uploads where id = $1 for update",
        )
        .bind(row.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        match length {
            Some(existing) if existing as u64 != len => {
                return Err(TusError::new(400, "Upload-Length cannot change once set."))
            }
            Some(_) => {}
            None => {
                if writing {
                    return Err(TusError::new(
                        423,
                        "Another request is writing to this upload; try again shortly.",
                    ));
                }
                if len < stored_offset(self, row).await? {
                    return Err(TusError::new(
                        400,
                        "Upload-Length is smaller than what is already stored.",
                    ));
                }
                self.check_total(held, len)?;
                sqlx::query("update uploads set length = $2, updated_at = now() where id = $1")
                    .bind(row.id)
                    .bind(len as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
        }
        row.length = Some(len as i64);
        Ok(())
    }

    pub(super) async fn create_upload(
        &self,
        who: &Who,
        uploader: &app::accounts::Principal,
        length: Option<u64>,
        metadata: &BTreeMap<String, String>,
        metadata_raw: Option<&str>,
        concat: Concat<'_>,
    ) -> TusResult<UploadRow> {
        let owner = uploader.user_id;
        let id = Uuid::now_v7();
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.upload_expiry)
                .unwrap_or(chrono::Duration::hours(24));
        let name = clean_name(
            metadata
                .get("filename")
                .or_else(|| metadata.get("name"))
                .map(String::as_str)
                .unwrap_or(""),
        );
        let parts = match concat {
            Concat::Final(parts) => parts,
            Concat::None | Concat::Partial => &[],
        };
        if let Some(len) = length {
            self.check_total(Holdings::default(), len)?;
        }
        // The parts of a final are counted already; the joined file takes their place.
        let (mut tx, held) = self.lock_holdings(owner, parts).await?;
        if let (Some(cap), Concat::None | Concat::Partial) = (self.config.max_pending, concat) {
            if held.pending >= cap {
                return Err(TusError::new(
                    429,
                    format!(
                        "You have {} unfinished uploads, the most one person may have at once; \
                         finish or cancel one first.",
                        held.pending
                    ),
                ));
            }
        }
        if let Some(len) = length {
            self.check_total(held, len)?;
        }
        let partial = matches!(concat, Concat::Partial);
        let version_id = if partial {
            None
        } else {
            let target = match metadata.get("asset") {
                Some(asset) => {
                    let asset = Uuid::parse_str(asset.trim()).map_err(|_| {
                        TusError::new(400, "The \"asset\" metadata is not an asset id.")
                    })?;
                    // Locked until commit: versions of one asset are numbered one at a
                    // time, whoever adds them.
                    let found: Option<(Uuid,)> = sqlx::query_as(
                        "select owner_id from assets where id = $1 and deleted_at is null for update",
                    )
                    .bind(asset)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    let (asset_owner,) = found.ok_or_else(|| {
                        TusError::new(404, "The asset for this new version does not exist.")
                    })?;
                    if asset_owner != owner && !uploader.has(app::accounts::Role::Lead) {
                        return Err(TusError::new(
                            403,
                            "Only the asset's owner, a lead or an admin can add a version.",
                        ));
                    }
                    Some(asset)
                }
                None => None,
            };
            let asset_id = match target {
                Some(asset) => asset,
                None => {
                    let asset = Uuid::now_v7();
                    sqlx::query("insert into assets (id, owner_id, name, state) values ($1, $2, $3, 'uploading')")
                        .bind(asset)
                        .bind(owner)
                        .bind(&name)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    asset
                }
            };
            let version = Uuid::now_v7();
            sqlx::query(
                "insert into asset_versions (id, asset_id, number, state, original_name, created_by)
                 values ($1, $2, (select coalesce(max(number), 0) + 1 from asset_versions where asset_id = $2), 'uploading', $3, $4)",
            )
            .bind(version)
            .bind(asset_id)
            .bind(&name)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Some(version)
        };
        // PostgreSQL's jsonb cannot hold NUL characters; people's metadata can.
        let cleaned: BTreeMap<&String, String> = metadata
            .iter()
            .map(|(k, v)| (k, v.replace('\0', "\u{FFFD}")))
            .collect();
        let metadata_json = serde_json::to_value(cleaned).unwrap_or_default();
        let row: UploadRow = sqlx::query_as(&format!(
            "insert into uploads (id, owner_id, length, metadata, metadata_raw, concat, state, version_id, expires_at)
             values ($1, $2, $3, $4, $5, $6, 'receiving', $7, $8) returning {UPLOAD_COLUMNS}"
        ))
        .bind(id)
        .bind(owner)
        .bind(length.map(|l| l as i64))
        .bind(metadata_json)
        .bind(metadata_raw)
        .bind(concat.column())
        .bind(version_id)
        .bind(expires)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if !parts.is_empty() {
            let claimed = sqlx::query(
                "update uploads set final_id = $1, updated_at = now()
                 where id = any($2) and owner_id = $3 and concat = 'partial' and state = 'complete'
                   and final_id is null",
            )
            .bind(id)
            .bind(parts)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if claimed.rows_affected() != parts.len() as u64 {
                return Err(TusError::new(
                    409,
                    "A partial upload listed is already being joined into another upload.",
                ));
            }
        }
        audit::record(
            &mut *tx,
            who,
            "upload.create",
            Some(format!("upload:{id}")),
            json!({ "name": name, "length": length, "concat": concat.column(), "parts": parts }),
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tokio::fs::File::create(self.partial_path(id))
            .await
            .map_err(io)?;
        Ok(row)
    }

    /// Marks an upload complete and hands its version to processing.
    pub(super) async fn complete(&self, id: Uuid, size: i64) -> TusResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let version: Option<Option<Uuid>> = sqlx::query_scalar(
            "update uploads set state = 'complete', received = $2, completed_at = now(), updated_at = now()
             where id = $1 and state = 'receiving' returning version_id",
        )
        .bind(id)
        .bind(size)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(Some(version)) = version {
            sqlx::query("update asset_versions set state = 'processing', size = $2, updated_at = now() where id = $1")
                .bind(version)
                .bind(size)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "update assets set state = 'processing', updated_at = now()
                 where id = (select asset_id from asset_versions where id = $1) and current_version_id is null",
            )
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        self.wake.notify_one();
        if let Some(Some(version)) = version {
            if let Ok(asset) =
                sqlx::query_scalar::<_, Uuid>("select asset_id from asset_versions where id = $1")
                    .bind(version)
                    .fetch_one(&self.pool)
                    .await
            {
                self.changed(asset).await;
            }
        }
        Ok(())
    }

    /// Removes an unfinished upload's data and the placeholder asset it created.
    pub(in crate::assets) async fn discard_upload(
        &self,
        row: &UploadRow,
        new_state: UploadState,
    ) -> TusResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A partial being joined keeps its data until the join ends.
        let discarded = sqlx::query(
            "update uploads set state = $2, version_id = null, updated_at = now()
             where id = $1 and final_id is null",
        )
        .bind(row.id)
        .bind(new_state)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if discarded.rows_affected() != 1 {
            return Err(TusError::new(
                409,
                "This partial upload is being joined into another upload.",
            ));
        }
        // A final that ends unfinished gives its parts back.
        sqlx::query(
            "update uploads set final_id = null where final_id = $1 and state = 'complete'",
        )
        .bind(row.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(version) = row.version_id {
            let asset: Option<Uuid> = sqlx::query_scalar("delete from asset_versions where id = $1 and state = 'uploading' returning asset_id")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(asset) = asset {
                sqlx::query("delete from assets where id = $1 and not exists (select 1 from asset_versions where asset_id = $1)")
                    .bind(asset)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        match tokio::fs::remove_file(self.partial_path(row.id)).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(err)),
        }
    }

    /// Ends the partials joined into a finished final and removes their data.
    pub(super) async fn retire_joined(&self, final_id: Uuid) -> TusResult<()> {
        let joined: Vec<Uuid> = sqlx::query_scalar(
            "update uploads set state = 'terminated', updated_at = now()
             where final_id = $1 and state = 'complete' returning id",
        )
        .bind(final_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for part in joined {
            let _ = tokio::fs::remove_file(self.partial_path(part)).await;
        }
        Ok(())
    }
}
