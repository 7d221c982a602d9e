//! Writing a PATCH body into the partial file under the upload's lease: the offset
//! check, the length or quota limit, checksums, and truncation when a chunk is refused.

use app::assets::UploadState;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use futures::StreamExt as _;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use super::error::{io, TusError, TusResult};
use super::headers::{number, parse_checksum, Checksum};
use super::store::stored_offset;
use super::{UploadRow, GRANT_STEP, LEASE};
use crate::assets::Assets;

/// How far a PATCH may write.
#[derive(Clone, Copy)]
enum Limit {
    /// The upload's declared length.
    Length(u64),
    /// Deferred length: the end the owner's quota granted this PATCH so far; more is
    /// asked for, before it is written, as the body goes past it.
    Granted(u64),
}

/// Appends the request body at the stored offset, which must be `expected`, and returns
/// the new offset. Holds the upload's lease meanwhile (a second PATCH gets 423).
pub(super) async fn append(
    state: &Assets,
    row: &mut UploadRow,
    headers: &HeaderMap,
    body: Body,
    expected: u64,
) -> TusResult<u64> {
    let assets = &state;
    let mut checksum = parse_checksum(headers)?;
    let declared = number(headers, header::CONTENT_LENGTH.as_str())?;
    let Some((lease, length)) = assets.take_lease(row.id).await? else {
        return Err(TusError::new(
            423,
            "Another request is writing to this upload; try again shortly.",
        ));
    };
    // Everything that touches the file happens under the lease; the last step records
    // the new offset and lets go in one statement.
    let outcome = async {
        // Read under the lease: no other request moves the offset or sets the length now.
        row.length = length;
        let start = stored_offset(assets, row).await?;
        if start != expected {
            return Err(TusError::new(
                409,
                format!("Upload-Offset {expected} does not match the stored offset {start}."),
            ));
        }
        let limit = match row.length {
            Some(len) => {
                if let Some(body_len) = declared {
                    if start + body_len > len as u64 {
                        return Err(TusError::new(
                            413,
                            format!("The body would go past the upload's length ({len} bytes)."),
                        ));
                    }
                }
                Limit::Length(len as u64)
            }
            // A body of known size is granted whole before a byte is written.
            None => Limit::Granted(match declared {
                Some(body_len) => assets.grant(row, lease, start, start + body_len, 0).await?,
                None => start,
            }),
        };
        let new_offset =
            write_body(assets, row, lease, start, limit, body, checksum.as_mut()).await?;
        if let Some(sum) = checksum {
            let ok = match sum {
                Checksum::Sha1(h, want) => h.finalize().as_slice() == want.as_slice(),
                Checksum::Sha256(h, want) => h.finalize().as_slice() == want.as_slice(),
            };
            if !ok {
                truncate(assets, row.id, start).await?;
                return Err(TusError::new(
                    460,
                    "Checksum mismatch: the chunk was discarded.",
                ));
            }
        }
        let complete = row.length.is_some_and(|len| new_offset == len as u64);
        if complete {
            let done = tokio::fs::File::open(assets.partial_path(row.id))
                .await
                .map_err(io)?;
            done.sync_all().await.map_err(io)?;
        }
        Ok((new_offset, complete))
    }
    .await;
    let (new_offset, complete) = match outcome {
        Ok(done) => done,
        Err(err) => {
            assets.release_lease(row.id, lease).await?;
            return Err(err);
        }
    };
    assets.record_offset(row, new_offset, lease).await?;
    if complete {
        assets.complete(row.id, new_offset as i64).await?;
        row.state = UploadState::Complete;
    }
    Ok(new_offset)
}

async fn truncate(assets: &Assets, id: Uuid, to: u64) -> TusResult<()> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(assets.partial_path(id))
        .await
        .map_err(io)?;
    file.set_len(to).await.map_err(io)?;
    file.sync_all().await.map_err(io)
}

/// Streams the body into the partial file. Returns the offset reached. A body cut off
/// by the client keeps what arrived (unless a checksum was promised).
async fn write_body(
    assets: &Assets,
    row: &UploadRow,
    lease: Uuid,
    start: u64,
    mut limit: Limit,
    body: Body,
    mut checksum: Option<&mut Checksum>,
) -> TusResult<u64> {
    let path = assets.partial_path(row.id);
    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .await
        .map_err(io)?;
    // Network chunks are small; write to disk in large blocks.
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let mut stream = body.into_data_stream();
    let mut offset = start;
    let mut lease_renewed = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(err) => {
                tracing::info!(upload = %row.id, error = %err, kept = offset - start, "upload body interrupted");
                file.flush().await.map_err(io)?;
                if checksum.is_some() {
                    truncate(assets, row.id, start).await?;
                    return Err(TusError::new(
                        400,
                        "The body was cut off before its checksum could be verified.",
                    ));
                }
                return Ok(offset);
            }
        };
        let end = offset + chunk.len() as u64;
        match limit {
            Limit::Length(len) if end > len => {
                drop(file);
                truncate(assets, row.id, start).await?;
                return Err(TusError::new(
                    413,
                    "The body goes past the upload's length; nothing was kept.",
                ));
            }
            Limit::Granted(granted) if end > granted => {
                match assets.grant(row, lease, start, end, GRANT_STEP).await {
                    Ok(more) => limit = Limit::Granted(more),
                    Err(err) => {
                        drop(file);
                        truncate(assets, row.id, start).await?;
                        return Err(err);
                    }
                }
            }
            _ => {}
        }
        // Never write without a live lease: renew well before it can lapse.
        if lease_renewed.elapsed() > LEASE / 3 {
            assets.renew_lease(row.id, lease).await?;
            lease_renewed = Instant::now();
        }
        if let Err(err) = file.write_all(&chunk).await {
            let _ = file.flush().await;
            return Err(io(err));
        }
        match checksum.as_deref_mut() {
            Some(Checksum::Sha1(h, _)) => h.update(&chunk),
            Some(Checksum::Sha256(h, _)) => h.update(&chunk),
            None => {}
        }
        offset += chunk.len() as u64;
    }
    // No fsync per PATCH: the file's size is the offset, and a killed process loses
    // nothing the kernel has. The finished file is synced once, before processing.
    file.flush().await.map_err(io)?;
    Ok(offset)
}
